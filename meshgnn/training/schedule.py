"""Learning rate as a pure function of the optimiser step, applied through torch's LambdaLR.

The rate at step s depends only on s and the config (`lr_at`), so a resumed run continues the
same curve, and a resume with a new `optim.lr` changes the rate from its first step on. The
trainer drives it with `torch.optim.lr_scheduler.LambdaLR` (`lr_scheduler`), positioned at the
step a launch starts from: LambdaLR's own counter is rebuilt from the step count, never
restored, so the curve is the pure function's whatever happened before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR


@dataclass(frozen=True)
class Schedule:
    lr: float
    min_lr: float
    warmup_steps: int
    total_steps: int
    kind: str  # "cosine" | "constant"

    def factor(self, step: int) -> float:
        """The rate at `step` as a multiple of the peak `lr` (what LambdaLR multiplies by)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        floor = self.min_lr / self.lr
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return floor + 0.5 * (1.0 - floor) * (1.0 + math.cos(math.pi * progress))

    def lr_at(self, step: int) -> float:
        """The rate at `step`: exactly the value `lr_scheduler` gives the optimiser there."""
        return self.lr * self.factor(step)

    def lr_scheduler(self, optimizer: torch.optim.Optimizer, step: int) -> LambdaLR:
        """A LambdaLR over `factor` positioned at schedule step `step`: it has set every group's
        rate to `lr_at(step)`, and each `step()` call moves it on to the next step's rate."""
        for group in optimizer.param_groups:
            group["initial_lr"] = self.lr  # LambdaLR's base rate, whatever a restored state held
        return LambdaLR(optimizer, self.factor, last_epoch=step - 1)

    def state_dict(self) -> dict:
        return {"lr": self.lr, "min_lr": self.min_lr, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "kind": self.kind}
