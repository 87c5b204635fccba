"""logger=mlflow: one MLflow run per run directory, through MlflowClient (no global run).

`logger.mlflow.tracking_uri` is a local SQLite store by default (`sqlite:///mlflow.db` in
the directory train.py is started in, artifacts in mlruns/ beside it: no server, works offline, shared by all runs and
sweeps) or any tracking server (http://host:5000, databricks). MLflow 3 refuses its old
`file:` store unless MLFLOW_ALLOW_FILE_STORE=true is set. The run gets the readable run name,
the tags, every hparam as a param, the resolved config as an artifact, every epoch's
scalars and images at the epoch's step, the final results, and its end status (FINISHED,
FAILED, KILLED). A resumed run continues the same MLflow run (its id is kept in
logger_runs.json)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from meshgnn.loggers.base import RunInfo, Status, remembered_id

PARAMS_PER_CALL = 100  # MLflow's limits of one log_batch
METRICS_PER_CALL = 1000
PARAM_VALUE_CHARS = 6000


def artifact_location(tracking_uri: str) -> str | None:
    """A local SQLite store keeps its artifacts beside the database (<db dir>/mlruns), not in
    whatever directory the first run happened to start in (MLflow's default, ./mlruns); a
    tracking server decides for itself (None)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = Path(tracking_uri[len("sqlite:///"):]).expanduser().resolve()
    return (database.parent / "mlruns").as_uri()


class MlflowLogger:
    def __init__(self, run: RunInfo, tracking_uri: str, experiment_name: str) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.run_id = self._run_id(run, experiment_name)
        self.client.update_run(self.run_id, status="RUNNING")
        self._log_params(run.hparams)
        self.client.log_text(self.run_id, json.dumps(run.config, indent=2, default=str), "config.json")

    def _run_id(self, run: RunInfo, experiment_name: str) -> str:
        def create() -> str:
            experiment = self.client.get_experiment_by_name(experiment_name)
            experiment_id = (experiment.experiment_id if experiment is not None
                             else self.client.create_experiment(
                                 experiment_name, artifact_location=artifact_location(self.client.tracking_uri)))
            tags = {"mlflow.runName": run.name, "run_dir": str(run.run_dir),
                    **({"sweep": run.sweep} if run.sweep else {}), **{f"tag.{tag}": "true" for tag in run.tags}}
            return self.client.create_run(experiment_id, run_name=run.name, tags=tags).info.run_id

        return remembered_id(run.run_dir, f"mlflow {self.client.tracking_uri}", create)

    def _log_params(self, hparams: Mapping[str, Any]) -> None:
        """Params are write-once in MLflow: a resumed run logs only those it lacks (a value
        changed on resume is in run.json's launch record)."""
        from mlflow.entities import Param

        known = self.client.get_run(self.run_id).data.params
        params = [Param(k, str(v)[:PARAM_VALUE_CHARS]) for k, v in hparams.items() if k not in known]
        for i in range(0, len(params), PARAMS_PER_CALL):
            self.client.log_batch(self.run_id, params=params[i:i + PARAMS_PER_CALL])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(batch), METRICS_PER_CALL):
            self.client.log_batch(self.run_id, metrics=batch[i:i + METRICS_PER_CALL])

    def log_image(self, tag: str, picture: np.ndarray, step: int) -> None:
        self.client.log_image(self.run_id, picture, key=tag.replace("/", "."), step=step)

    def log_final(self, metrics: Mapping[str, float], step: int) -> None:
        self.log_metrics(metrics, step)

    def finish(self, status: Status) -> None:
        self.client.set_terminated(self.run_id, status=status.mlflow)

