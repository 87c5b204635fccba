"""What the trainer is told (TrainerSettings) and what it carries through restarts (TrainState)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainerSettings:
    epochs: int
    grad_clip: float
    save_every: int
    early_stop_patience: int
    log_every_steps: int
    max_time_s: float = 0.0  # wall-clock budget of this launch (0 = none)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 with a gradient scaler)
    divergence_factor: float = 1000.0  # stop when a loss exceeds this x the first step's (0 = off)
    # The epoch metric best.ckpt and early stopping follow, and whether lower or higher is better
    # (the run's `objective` and `objective_mode`).
    monitor: str = "val/loss/total"
    monitor_mode: str = "min"  # min | max
    # Pad batches to size buckets and replay each bucket's captured step (trainer.cuda_graphs),
    # buckets growing by this factor (trainer.bucket_growth).
    cuda_graphs: bool = False
    bucket_growth: float = 1.1


@dataclass
class TrainState:
    """Progress that must survive a restart (everything else is rebuilt from config)."""

    epoch: int = 0  # completed epochs
    global_step: int = 0
    # Epoch and step at which the current learning-rate schedule began (moved by a warm
    # start or by a resume that changes the rate).
    schedule_origin_epoch: int = 0
    schedule_origin_step: int = 0
    best_value: float = math.inf  # of the monitored metric; -inf to start with when it is maximised
    best_epoch: int = 0
    bad_epochs: int = 0
    # Progress inside the current epoch, so an interrupted epoch continues where it stopped.
    batches_done: int = 0
    epoch_sums: dict[str, float] = field(default_factory=dict)
    epoch_graphs: int = 0
    epoch_seconds: float = 0.0  # training time already spent in the interrupted epoch
    step_losses: list[float] = field(default_factory=list)  # this epoch's, for its oscillation
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_by: str | None = None  # "SIGTERM", "SIGINT", "max_time" when a launch stops early
    # The training loss of the lineage's first step (kept through resumes): a run's starting
    # value. Not its first epoch's mean: a learning rate that blows up does so within epoch 1.
    divergence_reference: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"best_value": self.best_value, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs}

    def restart_schedule(self) -> None:
        self.schedule_origin_epoch, self.schedule_origin_step = self.epoch, self.global_step

    def progress_dict(self) -> dict[str, Any]:
        return {"batches_done": self.batches_done, "sums": dict(self.epoch_sums),
                "graphs": self.epoch_graphs, "seconds": self.epoch_seconds,
                "step_losses": list(self.step_losses)}
