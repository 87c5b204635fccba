"""Where epoch metrics go: metrics.jsonl (one JSON object per epoch) and TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from torch.utils.tensorboard import SummaryWriter

from meshgnn.atomic import atomic_write_text


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
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tb"),
                                    purge_step=first_new_epoch if first_new_epoch > 1 else None)

    def write(self, epoch: int, metrics: dict[str, float]) -> None:
        """`epoch` is 1-based (the number of completed epochs) and is the TensorBoard step."""
        record = {"epoch": epoch, **{k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()}}
        with self.jsonl.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, global_step=epoch)
        self.writer.flush()

    def add_image(self, tag: str, image: np.ndarray, epoch: int) -> None:
        """An RGB image [H, W, 3] uint8 at the epoch's step (field images)."""
        self.writer.add_image(tag, image, global_step=epoch, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def write_hparams(run_dir: Path, settings: dict[str, Any], metrics: dict[str, float], epoch: int) -> None:
    """TensorBoard's HParams record of a finished launch, in the run's own tb/ folder: its
    settings and final metrics (the HParams tab then lists runs side by side). The metric
    names must not be tags the epochs log, or TensorBoard would show those instead."""
    from torch.utils.tensorboard.summary import hparams

    finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
    with SummaryWriter(log_dir=str(Path(run_dir) / "tb")) as writer:
        for summary in hparams(settings, finite):
            writer.file_writer.add_summary(summary, epoch)
        for tag, value in finite.items():
            writer.add_scalar(tag, value, global_step=epoch)


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
