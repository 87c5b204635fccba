"""The Optuna sweeper meshgnn uses: hydra-optuna-sweeper, plus what long sweeps need.

It keeps the plugin's search-space parsing, samplers and trial configuration, and replaces
its sweep loop to add:
- one study per sweep: its default name is derived from the sweep (meshgnn.sweeps.workers),
  so relaunching the same command continues it up to `n_trials` trials in all (SQLite by
  default); `hydra.sweeper.study_name` joins a named study, whose search space must fit;
- many workers on one study: trials are counted across workers (finished + running), a
  heartbeat thread keeps this worker's running trials alive, and a dead worker's trials
  become FAIL "stale" after the grace period; the grid runs each point once;
- one run directory per trial, named by its Optuna trial number, so relaunches into the same
  sweep directory never overwrite an earlier trial;
- robust trials: a trial that raises, or returns NaN/inf, is recorded FAIL with its reason
  and the sweep goes on; the end of the sweep lists failures and their logs;
- pruning: trials report `val/loss/total` every epoch through the study storage
  (`meshgnn.sweeps.pruning`) and stop when the pruner says so; they are stored PRUNED.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import OmegaConf, read_write
from optuna.trial import TrialState

from meshgnn.atomic import atomic_write_bytes
from meshgnn.sweeps.workers import (Heartbeat, check_search_space, counts, create_or_load_study, derived_study_name,
                                    duplicate_grid_point, fail_stale, first_heartbeat, open_storage)

log = logging.getLogger(__name__)


def build_pruner(conf: Any) -> optuna.pruners.BasePruner:
    name = conf.name if conf is not None else "none"
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=conf.n_startup_trials,
                                           n_warmup_steps=conf.n_warmup_steps)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=conf.min_resource,
                                              reduction_factor=conf.reduction_factor)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"hydra.sweeper.pruner.name={name!r} is not one of none, median, hyperband")


def ensure_sqlite_folder(storage: Optional[str]) -> None:
    """SQLite creates the database file but not its folder (multirun/ on a fresh checkout)."""
    if storage and storage.startswith("sqlite:///"):
        Path(storage[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)


class PruningOptunaSweeper(OptunaSweeperImpl):
    """The implementation behind hydra_plugins.meshgnn_optuna_sweeper.MeshgnnOptunaSweeper."""

    def __init__(self, sampler: Any, direction: Any, storage: Optional[Any], study_name: Optional[str],
                 n_trials: int, n_jobs: int, max_failure_rate: float, search_space: Optional[Any],
                 custom_search_space: Optional[str], params: Optional[Any], pruner: Any,
                 heartbeat_interval: int, grace_period: int) -> None:
        super().__init__(sampler, direction, storage, study_name, n_trials, n_jobs, max_failure_rate,
                         search_space, custom_search_space, params)
        self.pruner_conf = pruner
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period

    def sweep(self, arguments: List[str]) -> None:
        self._process_searchspace_config()
        params_conf = self._parse_sweeper_params_config() + list(arguments)
        distributions, fixed_params = create_params_from_overrides(params_conf)
        if self.search_space_distributions:
            distributions = {**self.search_space_distributions, **distributions}
        if isinstance(self.sampler, functools.partial) and self.sampler.func == optuna.samplers.GridSampler:
            grid = {name: self._to_grid_sampler_choices(d) for name, d in distributions.items()}
            self.sampler = self.sampler(grid)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in grid.values()))
            log.info("grid sampler: %d grid points", self.n_trials)
        for name in fixed_params:
            distributions.pop(name, None)

        ensure_sqlite_folder(self.storage)
        direction = self._get_directions()[0]
        sampler_conf = OmegaConf.to_container(self.config.hydra.sweeper.sampler, resolve=True)
        study_name = self.study_name or derived_study_name(
            distributions, fixed_params, OmegaConf.select(self.config, "objective"), direction, sampler_conf)
        study = create_or_load_study(
            study_name=study_name, sampler=self.sampler, direction=direction,
            storage=open_storage(self.storage, self.heartbeat_interval, self.grace_period),
            pruner=build_pruner(self.pruner_conf))
        check_search_space(study, distributions)
        if self.study_name is None:  # trials find their study (for pruning) in their own hydra config
            with read_write(self.config.hydra.overrides):
                self.config.hydra.overrides.hydra.append(f"hydra.sweeper.study_name={study_name}")
        fail_stale(study)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(sweep_dir / "sweep.json", json.dumps({
            "storage": self.storage, "study_name": study.study_name,
            "objective": OmegaConf.select(self.config, "objective"), "direction": direction}, indent=1).encode())
        command = [o for o in self.config.hydra.overrides.task]
        finished, running = counts(study)
        log.info("study %s in %s: %d trials done, %d running, %d to go (n_trials=%d in total)", study.study_name,
                 self.storage, finished, running, max(0, self.n_trials - finished - running), self.n_trials)

        started, launched = time.monotonic(), 0
        while True:
            fail_stale(study)
            finished, running = counts(study)
            if finished >= self.n_trials:
                break
            free = self.n_trials - finished - running
            if free <= 0:  # the last trials run in other workers: wait for them (or their heartbeats to stop)
                time.sleep(self.heartbeat_interval)
                continue
            trials = self._ask_unique(study, min(self.n_jobs, free))
            if not trials:
                continue
            overrides = self._configure_trials(trials, distributions, fixed_params)
            for trial in trials:
                trial.set_user_attr("run_dir", str((sweep_dir / str(trial.number)).absolute()))
                trial.set_user_attr("command_overrides", command)
            # Job numbers are trial numbers: trial n runs in <sweep dir>/n, whatever the launch
            # and whichever worker (trial numbers are unique in the study).
            with Heartbeat(study, [t._trial_id for t in trials]):
                returns = self._launch(trials, overrides)
            for trial, ret in zip(trials, returns):
                self._record(study, trial, ret)
            launched += len(trials)
            self._progress(study, launched, max(0, self.n_trials - counts(study)[0]), time.monotonic() - started)
        self._summarise(study, sweep_dir)

    def _ask_unique(self, study: optuna.Study, n: int) -> List[optuna.Trial]:
        """`n` new trials, less any whose grid point another worker took at the same moment
        (recorded FAIL with `duplicate_of` and not counted: the grid runs each point once)."""
        trials = []
        for trial in (study.ask() for _ in range(n)):
            first_heartbeat(study, trial)
            taken = duplicate_grid_point(study, trial)
            if taken is None:
                trials.append(trial)
                continue
            trial.set_user_attr("duplicate_of", taken)
            trial.set_user_attr("failure", f"grid point already taken by trial {taken} (another worker)")
            self._tell(study, trial, state=TrialState.FAIL)
            log.info("trial %d: its grid point is trial %d's (another worker); not run", trial.number, taken)
        return trials

    def _launch(self, trials: List[optuna.Trial], overrides: List[Any]) -> List[JobReturn]:
        """Launch the trials, each as job number = trial number: one launch per run of
        consecutive numbers (other workers' trials may sit between this worker's)."""
        returns: List[JobReturn] = []
        start = 0
        for end in range(1, len(trials) + 1):
            if end == len(trials) or trials[end].number != trials[end - 1].number + 1:
                returns += self.launcher.launch(overrides[start:end], initial_job_idx=trials[start].number)
                start = end
        return returns

    def _progress(self, study: optuna.Study, launched: int, remaining: int, seconds: float) -> None:
        """One line per batch of trials: how far the sweep is, the best so far, and the ETA
        (from this launch's pace), for consoles and cluster logs alike."""
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        best = (f"best {OmegaConf.select(self.config, 'objective')} = {study.best_value:.6g} "
                f"(trial {study.best_trial.number})" if complete else "no completed trial yet")
        eta = seconds / launched * remaining
        log.info("sweep progress: %d/%d trials done; %s; %.0f s elapsed, ETA %.0f s", len(study.trials),
                 self.n_trials, best, seconds, eta)

    @staticmethod
    def _tell(study: optuna.Study, trial: optuna.Trial, **result: Any) -> None:
        """study.tell, tolerating the grid sampler's stop() call once the grid is exhausted
        (Optuna 2.10 raises it outside `optimize`, after the trial has been recorded)."""
        try:
            study.tell(trial, **result)
        except RuntimeError as exc:
            if "Study.stop" not in str(exc):
                raise

    @classmethod
    def _record(cls, study: optuna.Study, trial: optuna.Trial, ret: JobReturn) -> None:
        if ret.status == JobStatus.COMPLETED:
            value = ret.return_value
            try:
                value = float(value)
            except (TypeError, ValueError):
                value = math.nan
            if math.isfinite(value):
                cls._tell(study, trial, values=[value])
                return
            reason = f"objective is {ret.return_value!r}, not a finite number"
        else:
            error = ret._return_value
            if isinstance(error, optuna.TrialPruned):
                cls._tell(study, trial, state=TrialState.PRUNED)
                log.info("trial %d pruned: %s", trial.number, error)
                return
            reason = f"{type(error).__name__}: {error}".splitlines()[0]
        trial.set_user_attr("failure", reason)
        cls._tell(study, trial, state=TrialState.FAIL)
        log.warning("trial %d failed (%s); the sweep goes on", trial.number, reason)

    def _summarise(self, study: optuna.Study, sweep_dir: Path) -> None:
        counts = {s.name: len(study.get_trials(deepcopy=False, states=(s,)))
                  for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
        results: Dict[str, Any] = {"name": "optuna", "study_name": study.study_name,
                                   "storage": self.storage, "trials": counts}
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if complete:
            best = study.best_trial
            results.update(best_params=best.params, best_value=best.value, best_trial=best.number,
                           best_run_dir=best.user_attrs.get("run_dir"))
            log.info("best trial %d: %s = %.6g with %s", best.number,
                     OmegaConf.select(self.config, "objective"), best.value, best.params)
        # Atomic: workers sharing a sweep directory each write it when they finish.
        atomic_write_bytes(sweep_dir / "optimization_results.yaml", OmegaConf.to_yaml(OmegaConf.create(results)).encode())
        failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        log.info("sweep finished: %d complete, %d pruned, %d failed", counts["COMPLETE"],
                 counts["PRUNED"], counts["FAIL"])
        for trial in failed:
            run_dir = trial.user_attrs.get("run_dir", "?")
            log.warning("failed trial %d: %s (log: %s/train.log)", trial.number,
                        trial.user_attrs.get("failure", "unknown"), run_dir)
