"""The Optuna sweeper meshgnn uses: hydra-optuna-sweeper, plus what long sweeps need.

It keeps the plugin's search-space parsing, samplers and trial configuration, and replaces
its sweep loop to add:
- one study per sweep: its default name is derived from the sweep (meshgnn.sweeps.workers),
  so relaunching the same command continues it up to `n_trials` trials in all (SQLite by
  default); `hydra.sweeper.study_name` joins a named study, whose search space must fit;
- asynchronous trials: `n_jobs` lanes (`meshgnn.sweeps.lanes`), each launching one trial and asking the next
  as soon as it ends, through a launcher that runs trials in other processes (joblib, submitit);
- many workers on one study: trials are counted across workers (finished + in flight), a
  heartbeat thread keeps each running trial of this worker alive, and a dead worker's trials
  become FAIL "stale" after the grace period: not counted, their points run again; the grid
  runs each point once;
- Ctrl-C: the running trials stop (last.ckpt saved) and are recorded FAIL "interrupted" (not
  counted, points queued again); one line, exit code 130; relaunching continues;
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
import os
import signal
from pathlib import Path
from typing import Any, Dict, List, Optional

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import OmegaConf, read_write
from optuna.trial import TrialState

from meshgnn.atomic import atomic_write_bytes
from meshgnn.sweeps.config import shown_url
from meshgnn.sweeps.lanes import Lanes
from meshgnn.sweeps.launchers import requeue_overrides
from meshgnn.sweeps.slots import size_worker_pool
from meshgnn.sweeps.workers import (BEYOND_BUDGET, NOT_COUNTED, already_finished, beyond_budget, check_search_space,
                                    counts, create_or_load_study, derived_study_name, duplicate_grid_point, fail_stale,
                                    first_heartbeat, keep_rerun_grid_point, open_storage)

log = logging.getLogger(__name__)

EXIT_SIGINT = 128 + signal.SIGINT  # the shell's exit code for a command stopped by Ctrl-C


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

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        size_worker_pool(config.hydra.launcher, self.n_jobs, len(os.sched_getaffinity(0)))  # before it is made
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> None:
        """The sweep; Ctrl-C (at any point) ends it in one line with exit code 130."""
        lanes: Optional[Lanes] = None
        try:
            lanes = self._start(arguments)
            lanes.run()
        except KeyboardInterrupt:
            left = lanes.interrupt() if lanes is not None else 0
            log.warning("sweep interrupted: %d trial%s left FAIL \"interrupted\" (not counted, %s run again); "
                        "relaunch the same command to continue", left, "" if left == 1 else "s",
                        "it is" if left == 1 else "they are")
            raise SystemExit(EXIT_SIGINT) from None
        self._summarise(lanes.study, lanes.sweep_dir)

    def _start(self, arguments: List[str]) -> Lanes:
        """Open (or create) the study, write sweep.json, and return this worker's lanes."""
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
        finished, running = counts(study)
        log.info("study %s in %s: %d trials done, %d in flight, %d to go (n_trials=%d in total)", study.study_name,
                 shown_url(self.storage), finished, running, max(0, self.n_trials - finished - running),
                 self.n_trials)
        lanes = Lanes(self, study, distributions, fixed_params, sweep_dir)
        if lanes.count > 1:
            # Logging is configured already (Hydra's start-up); a launcher reconfiguring it at
            # every launch from several lanes at once would take the console's handler away
            # under another lane's feet (dictConfig removes and re-adds it): a line lost.
            with read_write(self.config.hydra.hydra_logging):
                self.config.hydra.hydra_logging.root = None
        return lanes

    def trial_overrides(self) -> List[str]:
        """Overrides every trial gets besides its parameters: the hook for a launcher's needs
        (e.g. a requeued cluster job that resumes its own run)."""
        return requeue_overrides(self.config)

    def _ask_unique(self, study: optuna.Study, rerun: Optional[optuna.Trial]) -> Optional[optuna.Trial]:
        """The taken `rerun` (of a stale or interrupted trial, with its own grid point back) or a
        new trial, or None when its grid point is one another worker took at the same moment
        (then recorded FAIL with `duplicate_of` and not counted: the grid runs each point once)."""
        trial = rerun or study.ask()
        first_heartbeat(study, trial)
        if beyond_budget(study, trial, self.n_trials):
            trial.set_user_attr(BEYOND_BUDGET, True)
            trial.set_user_attr("failure", "asked beyond n_trials (another worker asked the last trial at once)")
            self._tell(study, trial, state=TrialState.FAIL)
            log.info("trial %d: another worker asked the last trial at the same moment; not run", trial.number)
            return None
        keep_rerun_grid_point(study, trial)
        taken = duplicate_grid_point(study, trial)
        if taken is None:
            return trial
        trial.set_user_attr("duplicate_of", taken)
        trial.set_user_attr("failure", f"grid point already taken by trial {taken} (another worker)")
        self._tell(study, trial, state=TrialState.FAIL)
        log.info("trial %d: its grid point is trial %d's (another worker); not run", trial.number, taken)
        return None

    def _progress(self, study: optuna.Study, recorded: int, seconds: float) -> None:
        """One line per finished trial: how far the sweep is (the study's counted trials, every
        worker's), the best so far, and the ETA (from this launch's pace: `recorded` trials in
        `seconds`, lanes together), for consoles and cluster logs alike."""
        finished, _ = counts(study)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        best = (f"best {OmegaConf.select(self.config, 'objective')} = {study.best_value:.6g} "
                f"(trial {study.best_trial.number})" if complete else "no completed trial yet")
        eta = seconds / recorded * max(0, self.n_trials - finished)
        log.info("sweep progress: %d/%d trials done; %s; %.0f s elapsed, ETA %.0f s", finished,
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
        """Tell the study the trial's result; a trial another worker closed while it ran (FAIL
        "stale", its point queued again) keeps that record and this result is dropped."""
        try:
            cls._record_result(study, trial, ret)
        except RuntimeError as exc:
            if not already_finished(exc):
                raise
            log.warning("trial %d was closed by another worker while it ran (no heartbeat within "
                        "hydra.sweeper.grace_period: was this machine suspended or overloaded?); its result "
                        "here is dropped and its point runs again", trial.number)

    @classmethod
    def _record_result(cls, study: optuna.Study, trial: optuna.Trial, ret: JobReturn) -> None:
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
                                   "storage": shown_url(self.storage), "trials": counts}
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
        not_counted = sum(t.user_attrs.get("failure") in NOT_COUNTED for t in failed)
        log.info("sweep finished: %d complete, %d pruned, %d failed%s", counts["COMPLETE"], counts["PRUNED"],
                 counts["FAIL"], f" ({not_counted} stale or interrupted: not counted, each point run again)"
                 if not_counted else "")
        for trial in failed:
            run_dir = trial.user_attrs.get("run_dir", "?")
            log.warning("failed trial %d: %s (log: %s/train.log)", trial.number,
                        trial.user_attrs.get("failure", "unknown"), run_dir)
