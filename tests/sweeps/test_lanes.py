"""What a stopped trial does to a sweep's lanes (meshgnn.sweeps.lanes), on a real SQLite study.

The launcher is a stand-in that returns what Hydra's launchers return (JobReturn), so that a
cluster's stop of one trial can be told apart from a Ctrl-C here without a SLURM cluster."""

from types import SimpleNamespace

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.trial import TrialState

from meshgnn.errors import Interrupted
from meshgnn.sweeps.lanes import Lanes
from meshgnn.sweeps.launchers import SUBMITIT_SLURM
from meshgnn.sweeps.slots import JOBLIB
from meshgnn.sweeps.sweeper import PruningOptunaSweeper
from meshgnn.sweeps.workers import INTERRUPTED, open_storage


class OneStoppedTrial:
    """A sweeper whose launcher stops the first trial it launches (as a SIGTERM stops a
    training run: Interrupted) and completes every other one."""

    def __init__(self, launcher_target: str, n_trials: int) -> None:
        self.config = OmegaConf.create({"hydra": {"launcher": {"_target_": launcher_target, "n_jobs": 1},
                                                  "overrides": {"task": []}}})
        self.n_jobs, self.n_trials, self.heartbeat_interval = 1, n_trials, 1
        self.launcher = SimpleNamespace(launch=self._launch)
        self.launched: list[int] = []

    def _launch(self, overrides, initial_job_idx):
        self.launched.append(initial_job_idx)
        ret = JobReturn()
        if len(self.launched) == 1:
            ret.status, ret._return_value = JobStatus.FAILED, Interrupted("stopped by SIGTERM during epoch 2")
        else:
            ret.status, ret._return_value = JobStatus.COMPLETED, 0.5
        return [ret]

    def trial_overrides(self):
        return []

    def _configure_trials(self, trials, distributions, fixed_params):
        return [[f"optim.lr={trial.suggest_float('optim.lr', 1e-4, 1e-2)}"] for trial in trials]

    def _ask_unique(self, study, rerun):
        return rerun or study.ask()

    _record, _tell = PruningOptunaSweeper._record, staticmethod(PruningOptunaSweeper._tell)

    def _progress(self, study, recorded, seconds):
        pass


def new_study(tmp_path):
    return optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", 1, 2))


def test_a_trial_the_cluster_stopped_runs_its_point_again_and_the_sweep_goes_on(tmp_path):
    study, sweeper = new_study(tmp_path), OneStoppedTrial(SUBMITIT_SLURM, n_trials=2)
    Lanes(sweeper, study, {}, {}, tmp_path).run()
    stopped, rerun, new = study.get_trials()
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["failure"] == INTERRUPTED
    assert rerun.system_attrs["rerun_of"] == 0 and rerun.params == stopped.params
    assert (rerun.state, new.state) == (TrialState.COMPLETE, TrialState.COMPLETE)  # 2 counted: n_trials
    assert sweeper.launched == [0, 1, 2]


def test_a_trial_stopped_on_this_machine_stops_the_sweep(tmp_path):
    # joblib's trials run here: their stop is this sweep's Ctrl-C (or SIGTERM), which ends the sweep
    study, sweeper = new_study(tmp_path), OneStoppedTrial(JOBLIB, n_trials=2)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        Lanes(sweeper, study, {}, {}, tmp_path).run()
    assert sweeper.launched == [0]
