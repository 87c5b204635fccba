"""Where epoch metrics go: metrics.jsonl (one JSON object per epoch) and TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter


class MetricsLog:
    def __init__(self, run_dir: Path) -> None:
        self.jsonl = Path(run_dir) / "metrics.jsonl"
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tb"))

    def write(self, epoch: int, metrics: dict[str, float]) -> None:
        """`epoch` is 1-based (the number of completed epochs) and is the TensorBoard step."""
        record = {"epoch": epoch, **{k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()}}
        with self.jsonl.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, global_step=epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
