"""Where epoch metrics go: metrics.jsonl (one JSON object per epoch, the run's own record
that resume, diagnose and plot read) and the chosen logger backends (meshgnn/loggers).

Every write of our own files goes through `meshgnn.atomic.writing`, so a full disk or a lost
permission ends the run in one StorageError line naming the file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import TracebackType
from typing import Mapping

import numpy as np

from meshgnn.atomic import atomic_write_text
from meshgnn.loggers.base import RunInfo, Status, run_name, status_of
from meshgnn.loggers.fanout import Loggers
from meshgnn.loggers.files import append_line
from meshgnn.loggers.tensorboard_logger import TensorBoardLogger


class MetricsLog:
    """Appends epochs from `first_new_epoch` on, to metrics.jsonl and to every backend.

    Anything already logged at or after that epoch (written by a launch that was killed after
    logging but before its checkpoint) is dropped: lines from metrics.jsonl, and points from
    the backends that can (TensorBoard through `purge_step`, metrics.csv), so a resumed run
    has no duplicated points. Without `loggers`, TensorBoard alone (a trainer driven directly).

    Used as a context manager it closes the backends with the launch's status: SUCCESS, or
    KILLED / FAILED by the exception that ends the block."""

    def __init__(self, run_dir: Path, first_new_epoch: int = 1, loggers: Loggers | None = None) -> None:
        self.jsonl = Path(run_dir) / "metrics.jsonl"
        kept = [r for r in read_metrics(run_dir) if r["epoch"] < first_new_epoch]
        if self.jsonl.exists():
            atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in kept))
        self.loggers = loggers if loggers is not None else Loggers(
            [TensorBoardLogger(RunInfo(Path(run_dir), run_name(run_dir), first_new_epoch))])

    def write(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """`epoch` is 1-based (the number of completed epochs) and is every backend's step."""
        record = {"epoch": epoch, **{k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()}}
        append_line(self.jsonl, (json.dumps(record) + "\n").encode())
        self.loggers.log_metrics(metrics, epoch)

    def add_image(self, tag: str, picture: np.ndarray, epoch: int) -> None:
        """An RGB image [H, W, 3] uint8 at the epoch's step (field images)."""
        self.loggers.log_image(tag, picture, epoch)

    def write_results(self, metrics: Mapping[str, float], epoch: int) -> None:
        """The launch's final results (test metrics, best value), at its last epoch's step;
        a best value that never was (no epoch trained: inf) is left out."""
        self.loggers.log_final({k: v for k, v in metrics.items() if math.isfinite(v)}, epoch)

    def close(self, status: Status = Status.SUCCESS) -> None:
        self.loggers.finish(status)

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.close()
        else:
            self.close_after(exc)

    def close_after(self, exc: BaseException) -> None:
        """Close with the status of the launch that `exc` ends; a failure to close is not
        raised, since `exc` is the error to report."""
        try:
            self.close(status_of(exc))
        except Exception:
            pass


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
