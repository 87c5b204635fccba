"""logger=mlflow on a local SQLite store: a resumed run continues its MLflow run."""

from __future__ import annotations

from mlflow import MlflowClient

from meshgnn.loggers.base import RunInfo, Status
from meshgnn.loggers.mlflow_logger import MlflowLogger


def test_a_resumed_run_continues_its_mlflow_run_and_ends_with_the_last_status(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = tmp_path / "outputs" / "2026-12-02" / "10-00-00"
    first = MlflowLogger(RunInfo(run_dir, "10-00-00", hparams={"optim.lr": 1e-3, "trainer.compile": False}),
                         uri, "meshgnn")
    first.log_metrics({"val/loss/total": 2.0}, 1)
    first.finish(Status.KILLED)
    # resumed with a changed rate: params are write-once in MLflow, the first value stays
    resumed = MlflowLogger(RunInfo(run_dir, "10-00-00", first_new_epoch=2, hparams={"optim.lr": 5e-4, "seed": 1}),
                           uri, "meshgnn")
    resumed.log_metrics({"val/loss/total": 1.0}, 2)
    resumed.finish(Status.SUCCESS)
    client = MlflowClient(uri)
    (only,) = client.search_runs([client.get_experiment_by_name("meshgnn").experiment_id])
    assert only.info.run_id == first.run_id == resumed.run_id and only.info.status == "FINISHED"
    assert only.data.params == {"optim.lr": "0.001", "trainer.compile": "False", "seed": "1"}
    assert [(m.step, m.value) for m in client.get_metric_history(only.info.run_id, "val/loss/total")] == [
        (1, 2.0), (2, 1.0)]


def test_a_local_store_keeps_its_artifacts_beside_its_database(tmp_path, monkeypatch):
    """MLflow's default artifact root is ./mlruns of whatever directory the process runs in."""
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    logger = MlflowLogger(RunInfo(tmp_path / "run", "run", hparams={"seed": 1}), uri, "meshgnn")
    logger.finish(Status.SUCCESS)
    assert (tmp_path / "store" / "mlruns").is_dir() and not (elsewhere / "mlruns").exists()
    assert any(p.name == "config.json" for p in (tmp_path / "store" / "mlruns").rglob("*"))
