"""One call, every chosen backend: `open_loggers` builds them from the `logger` config
group, `Loggers` passes each scalar, image and final result on to all of them, and closes
every one with the launch's status, also when one of them fails to close."""

from __future__ import annotations

import importlib.util
from typing import Any, Mapping

import numpy as np

from meshgnn.errors import UserError
from meshgnn.loggers.base import Logger, RunInfo, Status

# Backend -> the package it needs beyond meshgnn's own dependencies.
PACKAGES = {"mlflow": "mlflow", "wandb": "wandb"}
INSTALL = "pip install 'meshgnn[loggers]'"


class Loggers:
    def __init__(self, backends: list[Logger]) -> None:
        self.backends = backends

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for backend in self.backends:
            backend.log_metrics(metrics, step)

    def log_image(self, tag: str, picture: np.ndarray, step: int) -> None:
        for backend in self.backends:
            backend.log_image(tag, picture, step)

    def log_final(self, metrics: Mapping[str, float], step: int) -> None:
        for backend in self.backends:
            backend.log_final(metrics, step)

    def finish(self, status: Status) -> None:
        """Every backend is finished; the first failure is raised after all were tried."""
        failure: BaseException | None = None
        for backend in self.backends:
            try:
                backend.finish(status)
            except Exception as exc:  # the others must still be closed
                failure = failure or exc
        self.backends = []
        if failure is not None:
            raise failure


def check_logger_packages(chosen: Mapping[str, Any]) -> None:
    """Refuse, in one line with the pip command, a backend whose package is not installed
    (before any data work, so the user loses nothing)."""
    for name, package in PACKAGES.items():
        if chosen.get(name) is not None and importlib.util.find_spec(package) is None:
            raise UserError(f"logger={name} needs the {package} package, which is not installed: "
                            f"{INSTALL} (or choose another logger, e.g. logger=tensorboard)")


def open_loggers(chosen: Mapping[str, Any], run: RunInfo) -> Loggers:
    """The backends set in the `logger` group (a None entry is not chosen), started for `run`.
    A backend that fails to start finishes those already started (as FAILED) and raises."""
    check_logger_packages(chosen)
    opened = Loggers([])
    try:
        for name, settings in chosen.items():
            if settings is not None:
                opened.backends.append(_start(name, dict(settings), run))
    except BaseException:
        opened.finish(Status.FAILED)
        raise
    return opened


def _start(name: str, settings: dict[str, Any], run: RunInfo) -> Logger:
    if name == "tensorboard":
        from meshgnn.loggers.tensorboard_logger import TensorBoardLogger

        return TensorBoardLogger(run)
    if name == "csv":
        from meshgnn.loggers.csv_logger import CsvLogger

        return CsvLogger(run)
    if name == "mlflow":
        from mlflow.exceptions import MlflowException

        from meshgnn.loggers.mlflow_logger import MlflowLogger

        try:
            return MlflowLogger(run, **settings)
        except MlflowException as exc:
            raise UserError(f"logger=mlflow could not start a run at logger.mlflow.tracking_uri="
                            f"{settings['tracking_uri']}: {_first_line(exc)}; check the URI and that its server "
                            "is up (the default sqlite:///mlflow.db needs none)") from exc
    if name == "wandb":
        from wandb.errors import Error as WandbError

        from meshgnn.loggers.wandb_logger import WandbLogger

        try:
            return WandbLogger(run, **settings)
        except WandbError as exc:
            raise UserError(f"logger=wandb could not start a run: {_first_line(exc)}; run `wandb login` (or set "
                            "WANDB_API_KEY), or log to files only with logger.wandb.mode=offline") from exc
    raise ValueError(f"no logger backend {name!r}")  # the schema admits only the names above


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
