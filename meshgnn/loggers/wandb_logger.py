"""logger=wandb: one Weights & Biases run per run directory, files under <run dir>/wandb.

`logger.wandb.mode=offline` (what the tests use) writes the run to disk only; `wandb sync
<run dir>/wandb/offline-run-*` uploads it later. The run gets the readable name, the tags,
the hparams and resolved config as its config, every epoch's scalars and images at the
epoch's step, the final results in its summary, and an exit code (0 finished, 1 failed,
3 stopped). A resumed run continues the same W&B run (its id is kept in logger_runs.json).
W&B's console capture and system-metrics sampling are off: train.log and the progress bar
stay as they are."""

from __future__ import annotations

import secrets
from typing import Mapping, Optional

import numpy as np

from meshgnn.loggers.base import RunInfo, Status, remembered_id


class WandbLogger:
    def __init__(self, run: RunInfo, project: str, entity: Optional[str], mode: str) -> None:
        import wandb

        self.wandb = wandb
        run_id = remembered_id(run.run_dir, "wandb", lambda: secrets.token_hex(4))  # W&B ids: [a-z0-9]
        self.run = wandb.init(project=project, entity=entity, mode=mode, dir=str(run.run_dir), id=run_id,
                              resume="allow", name=run.name, group=run.sweep, tags=list(run.tags),
                              config={"hparams": run.hparams, **run.config},
                              settings=wandb.Settings(console="off", silent=True, x_disable_stats=True))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log(dict(metrics), step=step)

    def log_image(self, tag: str, picture: np.ndarray, step: int) -> None:
        self.run.log({tag: self.wandb.Image(picture)}, step=step)

    def log_final(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.summary.update(dict(metrics))

    def finish(self, status: Status) -> None:
        self.run.finish(exit_code=status.exit_code)
