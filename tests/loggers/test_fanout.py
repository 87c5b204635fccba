"""logger=many_loggers end to end: one tiny training reaches TensorBoard, metrics.csv, MLflow
and W&B (offline) with the same scalars, hyperparameters and images, read back with each
library's own reader; a diverged and a stopped launch close every backend with their status."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from wandb.proto import wandb_internal_pb2

from conftest import ROOT, compose_config
from meshgnn.errors import Interrupted, UserError
from meshgnn.experiment import run
from meshgnn.loggers.base import RunInfo
from meshgnn.loggers.fanout import check_logger_packages, open_loggers
from meshgnn.training.metrics_log import read_metrics
from meshgnn.training.divergence import TrainingDiverged

TINY = ["debug=default", "data.num_samples=12", "model.hidden_dim=8", f"paths.root_dir={ROOT}"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One MLflow store for the module's runs (creating its tables takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def launch(run_dir: Path, data_cache: Path, store: str, logger: str, *args: str) -> float:
    """In-process train.py with `logger` (e.g. "logger=many_loggers"), MLflow on `store`, W&B offline."""
    chosen = {"mlflow", "wandb"} if logger == "logger=many_loggers" else set(logger.removeprefix("logger=").strip("[]").split(","))
    overrides = [*TINY, f"paths.data_dir={data_cache}", f"paths.output_dir='{run_dir}'", logger, *args]
    if "mlflow" in chosen:
        overrides.append(f"logger.mlflow.tracking_uri={store}")
    if "wandb" in chosen:
        overrides.append("logger.wandb.mode=offline")
    return run(compose_config(overrides), overrides)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_cache, store) -> Path:
    """A finished run with every backend, named like a Hydra run directory."""
    run_dir = tmp_path_factory.mktemp("loggers") / "outputs" / "2026-12-02" / "10-00-00_lr=0.001"
    launch(run_dir, data_cache, store, "logger=many_loggers", "trainer.image_every=1", "tags=[smoke,tiny]")
    return run_dir


def tensorboard(run_dir: Path) -> EventAccumulator:
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def hparams_session(events: EventAccumulator) -> tuple[plugin_data_pb2.SessionStartInfo, int | None]:
    def content(tag: str) -> plugin_data_pb2.HParamsPluginData | None:
        if tag not in events.summary_metadata:
            return None
        return plugin_data_pb2.HParamsPluginData.FromString(events.SummaryMetadata(tag).plugin_data.content)

    end = content(metadata.SESSION_END_INFO_TAG)
    return content(metadata.SESSION_START_INFO_TAG).session_start_info, end and end.session_end_info.status


def mlflow_run(run_dir: Path):
    (uri_key, run_id), = ((k, v) for k, v in json.loads((run_dir / "logger_runs.json").read_text()).items()
                          if k.startswith("mlflow"))
    client = MlflowClient(tracking_uri=uri_key.split(" ", 1)[1])
    return client, client.get_run(run_id)


def wandb_records(run_dir: Path) -> list[wandb_internal_pb2.Record]:
    """The offline run's .wandb file, read record by record: W&B's header, then LevelDB log
    records (32 KiB blocks; chunks FULL=1, FIRST=2, MIDDLE=3, LAST=4) of W&B's Record protos."""
    path, = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    data, pos, block, pending, records = path.read_bytes(), 7, 32768, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def wandb_items(records, kind: str) -> list[dict[str, str]]:
    out = []
    for record in records:
        if record.WhichOneof("record_type") == kind:
            items = record.history.item if kind == "history" else record.summary.update
            out.append({item.key or "/".join(item.nested_key): item.value_json for item in items})
    return out


def test_every_backend_gets_the_same_epoch_scalars(finished):
    epochs = read_metrics(finished)
    assert [e["epoch"] for e in epochs] == [1, 2]
    tags = set(epochs[0]) - {"epoch"}
    events = tensorboard(finished)
    for tag in tags:
        assert [(s.step, pytest.approx(s.value)) for s in events.Scalars(tag)] == [(e["epoch"], e[tag]) for e in epochs]
    with (finished / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(float(r[tag]) == pytest.approx(e[tag]) for r, e in zip(rows, epochs) for tag in tags)
    client, mlrun = mlflow_run(finished)
    for tag in tags:
        history = client.get_metric_history(mlrun.info.run_id, tag)
        assert [(m.step, pytest.approx(m.value)) for m in history] == [(e["epoch"], e[tag]) for e in epochs]
    history = [h for h in wandb_items(wandb_records(finished), "history") if "val/loss/total" in h]
    assert [int(h["_step"]) for h in history] == [1, 2]
    assert [float(h["val/loss/total"]) for h in history] == pytest.approx([e["val/loss/total"] for e in epochs])
    assert tags <= set(history[0])


def test_every_backend_gets_the_hyperparameters_the_images_and_the_results(finished):
    results = json.loads((finished / "results.json").read_text())["model"]
    start, end = hparams_session(tensorboard(finished))
    assert start.hparams["trainer.compile"].WhichOneof("kind") == "bool_value"  # not 1.0000
    assert start.hparams["model.hidden_dim"].number_value == 8
    assert start.hparams["tags"].string_value == "smoke,tiny" and start.hparams["task_name"].string_value == "train"
    assert start.hparams["status"].string_value == "finished" and end == api_pb2.STATUS_SUCCESS
    events = tensorboard(finished)
    assert events.Tags()["images"] and "test/temperature/rel_l2" in events.Tags()["scalars"]
    assert metadata.EXPERIMENT_TAG not in events.summary_metadata  # each run declares only its own
    client, mlrun = mlflow_run(finished)
    assert mlrun.info.status == "FINISHED" and mlrun.info.run_name == start.group_name
    assert mlrun.data.params["trainer.compile"] == "False" and mlrun.data.params["model.hidden_dim"] == "8"
    assert mlrun.data.metrics["test/temperature/rel_l2"] == pytest.approx(results["test/temperature/rel_l2"])
    assert mlrun.data.tags["tag.smoke"] == "true"
    assert any(a.path == "images" for a in client.list_artifacts(mlrun.info.run_id))
    records = wandb_records(finished)
    runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert runs[0].display_name == start.group_name and list(runs[0].tags) == ["smoke", "tiny"]
    config = {item.key: json.loads(item.value_json) for item in runs[0].config.update}
    assert config["hparams"]["model.hidden_dim"] == 8 and config["hparams"]["trainer.compile"] is False
    images = [json.loads(h["fields/temperature/path"]) for h in wandb_items(records, "history")
              if json.loads(h.get("fields/temperature/_type", "null")) == "image-file"]
    assert len(images) == 2 and all(next((finished / "wandb").glob(f"offline-run-*/files/{p}")) for p in images)
    summary = {k: v for s in wandb_items(records, "summary") for k, v in s.items()}
    assert float(summary["test/temperature/rel_l2"]) == pytest.approx(results["test/temperature/rel_l2"])
    exits = [r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit"]
    assert exits == [0]


def test_runs_are_named_by_their_directory_most_specific_part_first(finished):
    start, _ = hparams_session(tensorboard(finished))
    assert start.group_name == "10-00-00_lr=0.001 · 2026-12-02"


def test_a_diverged_launch_closes_every_backend_as_failed(tmp_path, data_cache, store):
    run_dir = tmp_path / "diverged"
    with pytest.raises(TrainingDiverged):
        launch(run_dir, data_cache, store, "logger=many_loggers", "optim.lr=1e9", "trainer.grad_clip=0",
               "data.batch_size=16")
    start, end = hparams_session(tensorboard(run_dir))
    assert end == api_pb2.STATUS_FAILURE and start.hparams["status"].string_value == "failed"
    assert mlflow_run(run_dir)[1].info.status == "FAILED"
    assert [r.exit.exit_code for r in wandb_records(run_dir) if r.WhichOneof("record_type") == "exit"] == [1]


def test_a_stopped_launch_is_listed_as_stopped(tmp_path, data_cache, store):
    run_dir = tmp_path / "stopped"
    with pytest.raises(Interrupted):
        launch(run_dir, data_cache, store, "logger=[tensorboard,mlflow]", "trainer.max_time=1e-6")
    start, end = hparams_session(tensorboard(run_dir))
    assert end == api_pb2.STATUS_UNKNOWN and start.hparams["status"].string_value == "stopped"
    assert mlflow_run(run_dir)[1].info.status == "KILLED"


def test_a_logger_whose_package_is_missing_is_one_line_with_the_pip_command(tmp_path, data_cache, store,
                                                                             monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # what `import wandb` fails on when it is not installed
    with pytest.raises(UserError) as info:
        check_logger_packages({"tensorboard": {}, "wandb": {"mode": "offline"}})
    assert "pip install 'meshgnn[loggers]'" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UserError, match="logger=wandb needs the wandb package"):
        launch(tmp_path / "run", data_cache, store, "logger=wandb")
    assert not (tmp_path / "run" / "tb").exists()  # refused before any training


def test_wandb_online_without_a_login_is_one_line_saying_how(tmp_path, monkeypatch):
    for name in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc login
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    with pytest.raises(UserError) as info:
        open_loggers({"wandb": {"project": "meshgnn", "entity": None, "mode": "online"}}, RunInfo(tmp_path, "run"))
    assert "wandb login" in str(info.value) and "logger.wandb.mode=offline" in str(info.value)
    assert "\n" not in str(info.value)
