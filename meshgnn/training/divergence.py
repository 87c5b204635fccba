"""Divergence: a loss or metric that became NaN or infinite, or rose far above the run's start.

A diverged epoch is never saved: the checks run before anything of the epoch is written, and
on every training step's loss when the trainer reads the steps' values (every
`log_every_steps` steps, and before anything is saved), so the last good checkpoints are
what remains. The
reference is the training loss of the lineage's first step (carried through resumes in the
checkpoint), not the first epoch's mean: a learning rate that blows up does so within epoch 1.
"""

from __future__ import annotations

import math

from meshgnn.errors import UserError

# Epoch metrics whose value must be finite and whose rise means divergence. train/grad_norm
# is not among them: under fp16 an overflowing step (skipped by the scaler) makes it inf.
DIVERGENCE_KEYS = ("train/loss/total", "val/loss/total")


class TrainingDiverged(UserError):
    """A loss or metric became NaN or infinite, or rose `divergence_factor` times above the
    lineage's first training step's loss: that epoch is not saved, the last good checkpoints
    are kept.
    `record` says which metric, epoch and value (for run.json and the diagnosis)."""

    ADVICE = "Try a lower optim.lr or trainer.grad_clip=1.0"

    def __init__(self, message: str, metric: str, epoch: int, value: float) -> None:
        super().__init__(f"{message}; checkpoints keep the last good weights. {self.ADVICE}")
        self._args = (message, metric, epoch, value)
        self.record = {"reason": "diverged", "metric": metric, "epoch": epoch, "value": value,
                       "message": str(self)}

    def __reduce__(self) -> tuple:  # picklable (sweep workers send exceptions between processes)
        return type(self), self._args


def check_epoch(metrics: dict[str, float], epoch: int, factor: float, reference: float | None) -> None:
    """Refuse an epoch with a non-finite loss or validation metric, or a loss that rose `factor`
    (trainer.divergence_factor) times above `reference`, the lineage's first step's loss."""
    checked = [k for k in metrics if k.startswith(("train/loss/", "val/"))]
    for key in checked:
        if not math.isfinite(metrics[key]):
            raise TrainingDiverged(f"{key} became {metrics[key]} at epoch {epoch}, which is not "
                                   "saved", key, epoch, metrics[key])
    for key in DIVERGENCE_KEYS:
        check_rise(key, metrics[key], epoch, f"epoch {epoch}", factor, reference)


def check_step(step_loss: float, epoch: int, step: int, factor: float, reference: float | None) -> None:
    """A non-finite step loss, or one `factor` times above `reference`, ends the run at the
    read of that step's values (a diverging epoch is not trained to its end)."""
    where = f"epoch {epoch}, step {step}"
    if not math.isfinite(step_loss):
        raise TrainingDiverged(f"training loss became {step_loss} at {where}", "train/loss/total",
                               epoch, step_loss)
    check_rise("train/loss/total", step_loss, epoch, where, factor, reference)


def check_rise(key: str, value: float, epoch: int, where: str, factor: float, reference: float | None) -> None:
    """`value` of `key` above `factor` x `reference` (factor 0: never) ends the run as diverged."""
    if factor > 0 and reference is not None and value > factor * reference:
        raise TrainingDiverged(
            f"{key} rose to {value:.4g} at {where}, over trainer.divergence_factor={factor:g} times "
            f"the run's first training loss {reference:.4g}: the run diverged (epoch {epoch} is not "
            "saved; set trainer.divergence_factor=0 to train on regardless)", key, epoch, value)
