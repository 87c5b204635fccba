"""Where epoch metrics go: metrics.jsonl (one JSON object per epoch) and TensorBoard.

Every write goes through `meshgnn.atomic.writing`, so a full disk or a lost permission ends
the run in one StorageError line naming the file, whichever of the two it was.
"""

from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.tensorboard.summary import hparams, image, scalar

from meshgnn.atomic import SPACE_MARGIN, atomic_write_text, writing
from meshgnn.training.events import EventFile


class MetricsLog:
    """Appends epochs from `first_new_epoch` on.

    Anything already logged at or after that epoch (written by a launch that was killed after
    logging but before its checkpoint) is dropped: lines from metrics.jsonl, and points from
    TensorBoard through `purge_step`, so a resumed run has no duplicated points.
    """

    def __init__(self, run_dir: Path, first_new_epoch: int = 1) -> None:
        self.jsonl = Path(run_dir) / "metrics.jsonl"
        kept = [r for r in read_metrics(run_dir) if r["epoch"] < first_new_epoch]
        if self.jsonl.exists():
            atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in kept))
        self.events = EventFile(Path(run_dir) / "tb",
                                purge_step=first_new_epoch if first_new_epoch > 1 else None)

    def write(self, epoch: int, metrics: dict[str, float]) -> None:
        """`epoch` is 1-based (the number of completed epochs) and is the TensorBoard step."""
        record = {"epoch": epoch, **{k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()}}
        _append(self.jsonl, (json.dumps(record) + "\n").encode())
        for tag, value in metrics.items():
            self.events.add_summary(scalar(tag, value), epoch)
        self.events.flush()

    def add_image(self, tag: str, picture: np.ndarray, epoch: int) -> None:
        """An RGB image [H, W, 3] uint8 at the epoch's step (field images)."""
        self.events.add_summary(image(tag, picture, dataformats="HWC"), epoch)
        self.events.flush()

    def close(self) -> None:
        self.events.close()


def _append(path: Path, line: bytes) -> None:
    """Append one whole line or nothing: a write cut short (disk full) is cut back off, so
    metrics.jsonl never ends in half a record that would break reading it on resume."""
    with writing(path, needed_bytes=len(line) + SPACE_MARGIN):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                if os.write(fd, line) < len(line):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            except OSError:
                os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)


def write_hparams(run_dir: Path, settings: dict[str, Any], metrics: dict[str, float], epoch: int) -> None:
    """TensorBoard's HParams record of a finished launch, in the run's own tb/ folder: its
    settings and final metrics (the HParams tab then lists runs side by side). The metric
    names must not be tags the epochs log, or TensorBoard would show those instead."""
    finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
    events = EventFile(Path(run_dir) / "tb")
    try:
        for summary in hparams(settings, finite):
            events.add_summary(summary, epoch)
        for tag, value in finite.items():
            events.add_summary(scalar(tag, value), epoch)
    finally:
        events.close()


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
