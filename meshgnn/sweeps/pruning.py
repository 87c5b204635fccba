"""Report a sweep trial's progress to its Optuna study, from inside the training run.

The hydra-optuna-sweeper runs each trial as an ordinary job and only sees its final value.
To prune, the trial itself reports the monitored metric every epoch through the study's
storage and stops when the study's pruner says so. The trial finds its study in Hydra's own
config (hydra.sweeper.storage / study_name / pruner) and its trial number in hydra.job.num,
which the meshgnn sweeper sets to the Optuna trial number.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from meshgnn.sweeps.config import SWEEPER_TARGET

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)


class PruningReporter:
    """Epoch hook: `trial.report(value, epoch)`, then raise TrialPruned if the pruner says so."""

    def __init__(self, trial: "optuna.Trial", monitor: str, last_epoch: int) -> None:
        self.trial, self.monitor, self.last_epoch = trial, monitor, last_epoch

    @classmethod
    def for_this_job(cls, monitor: str, last_epoch: int) -> Optional["PruningReporter"]:
        """A reporter when this job is a trial of a meshgnn Optuna sweep with storage, else None.

        Optuna is imported only then: plain training runs do not pay for it.
        """
        if not is_sweep_trial():
            return None
        hydra = HydraConfig.get()
        if not hydra.sweeper.storage or not hydra.sweeper.study_name:
            log.warning("no pruning: hydra.sweeper.storage and study_name must be set for trials to report")
            return None
        import optuna

        from meshgnn.sweeps.sweeper import build_pruner

        study = optuna.load_study(study_name=hydra.sweeper.study_name, storage=hydra.sweeper.storage,
                                  pruner=build_pruner(hydra.sweeper.pruner))
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, hydra.job.num)
        return cls(optuna.trial.Trial(study, trial_id), monitor, last_epoch)

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        import optuna

        from meshgnn.sweeps.workers import already_finished

        value = metrics[self.monitor]
        try:
            self.trial.set_user_attr("epochs_run", epoch)
            if not math.isfinite(value):
                return
            self.trial.report(value, step=epoch)
        except RuntimeError as exc:
            if not already_finished(exc):
                raise
            # Another worker recorded this trial FAIL "stale" (this machine was suspended or
            # starved past the grace period) and queued its point again: stop, nothing to add.
            raise optuna.TrialPruned(f"trial {self.trial.number} was closed by another worker while it ran "
                                     "(no heartbeat within hydra.sweeper.grace_period); its point runs again") from None
        # Pruning after the last epoch would save nothing and lose the trial's test results.
        if epoch < self.last_epoch and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}: {self.monitor}={value:.6g}")


def is_sweep_trial() -> bool:
    """Whether this job is a trial of a meshgnn Optuna sweep."""
    if not HydraConfig.initialized():
        return False
    hydra = HydraConfig.get()
    return hydra.mode == RunMode.MULTIRUN and hydra.sweeper.get("_target_") == SWEEPER_TARGET
