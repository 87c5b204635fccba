"""One sweep worker's trials in flight: `n_jobs` lanes, each launching one trial at a time
and asking the next as soon as it ends (asynchronous, not batch-synchronous), and what a
stop signal does to them (Ctrl-C here stops the sweep; a cluster's stop of one trial reruns
its point)."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Protocol

import optuna
from optuna.trial import TrialState

from meshgnn.errors import Interrupted
from meshgnn.sweeps.launchers import SUBMITIT_SLURM, trials_in_flight
from meshgnn.sweeps.slots import parallel_slots
from meshgnn.sweeps.workers import INTERRUPTED, Heartbeat, counts, fail_stale, queue_rerun, take_rerun

log = logging.getLogger(__name__)

# Seconds the running trials get to stop on Ctrl-C before the sweep says it waits for them.
STOP_QUIETLY_S = 30


class Sweeper(Protocol):
    """What lanes use of their sweeper (meshgnn.sweeps.sweeper.PruningOptunaSweeper)."""

    config: Any
    launcher: Any
    n_jobs: int
    n_trials: int
    heartbeat_interval: int

    def trial_overrides(self) -> List[str]: ...
    def _configure_trials(self, trials: List[optuna.Trial], distributions: Dict[str, Any],
                          fixed_params: Dict[str, Any]) -> List[Any]: ...
    def _ask_unique(self, study: optuna.Study, rerun: Optional[optuna.Trial]) -> Optional[optuna.Trial]: ...
    def _record(self, study: optuna.Study, trial: optuna.Trial, ret: Any) -> None: ...
    def _tell(self, study: optuna.Study, trial: optuna.Trial, **result: Any) -> None: ...
    def _progress(self, study: optuna.Study, recorded: int, seconds: float) -> None: ...


class Lanes:
    """The trials of one worker: `count` lanes, each asking ONE trial, launching it as a
    one-job launch (job number = trial number, so trial n runs in <sweep dir>/n whichever
    worker or lane runs it), recording it and asking the next at once, until the study's
    totals say stop. So `count` trials are in flight and none waits for a slower one.

    Lanes are threads of this process for a launcher that runs its jobs in other processes
    (as many as launchers.trials_in_flight says: one per trial slot, or n_jobs on SLURM); the
    basic launcher runs the task in this process (its cwd, Hydra's singletons), so one lane,
    the main thread. joblib is called from several threads at once: each call is its own
    Parallel on loky's one reusable executor (whose creation is locked), with one job. Asks,
    tells and totals go through one lock (`changed`), so two lanes never ask for the last
    trial of the budget both; each running trial has its heartbeat thread.
    """

    def __init__(self, sweeper: Sweeper, study: optuna.Study, distributions: Dict[str, Any],
                 fixed_params: Dict[str, Any], sweep_dir: Path) -> None:
        self.sweeper, self.study, self.sweep_dir = sweeper, study, sweep_dir
        self.distributions, self.fixed_params = distributions, fixed_params
        launcher = sweeper.config.hydra.launcher
        self.count = trials_in_flight(launcher.get("_target_"), sweeper.n_jobs, parallel_slots(
            launcher.get("_target_"), sweeper.n_jobs, launcher.get("n_jobs"), len(os.sched_getaffinity(0))))
        self.command = list(sweeper.config.hydra.overrides.task)
        # Trials on cluster nodes: a stop signal there (preemption) is not this sweep's Ctrl-C.
        self.remote = launcher.get("_target_") == SUBMITIT_SLURM
        self.changed = threading.Condition()  # held for every ask, tell and count; notified on a tell
        self.running: Dict[int, optuna.Trial] = {}  # this worker's trials in flight, by number
        self.stopping = False
        self.error: Optional[BaseException] = None
        self.started, self.recorded = time.monotonic(), 0

    def run(self) -> None:
        """Run the lanes to the end of the study; a lane's exception (KeyboardInterrupt from an
        interrupted trial too) is raised here, once every lane has stopped. On Ctrl-C no trial
        is asked any more and the running ones end (the signal stops them too) before it is
        raised; a trial that ends COMPLETE meanwhile is recorded so."""
        if self.count == 1:
            self._lane()
            return
        threads = [threading.Thread(target=self._guarded_lane, name=f"sweep-lane-{i}", daemon=True)
                   for i in range(self.count)]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except KeyboardInterrupt:  # Ctrl-C reached every local trial too: each stops within a step
            with self.changed:
                self.stopping = True
            try:  # so the launches end cleanly (joblib, loky), then the trials are recorded
                if not self._joined(threads, timeout=STOP_QUIETLY_S):  # e.g. cluster jobs, which Ctrl-C misses
                    log.warning("stopping: waiting for the running trials to end (Ctrl-C again to leave them)")
                    self._joined(threads, timeout=None)
            except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
                pass
            raise
        if self.error is not None:
            raise self.error

    @staticmethod
    def _joined(threads: List[threading.Thread], timeout: Optional[float]) -> bool:
        """Whether all `threads` ended within `timeout` seconds (None: wait for them)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)

    def interrupt(self) -> int:
        """Stop asking, and record this worker's running trials (never another worker's) FAIL
        "interrupted", each point queued to run again; returns how many."""
        with self.changed:
            self.stopping = True
            trials, self.running = list(self.running.values()), {}
            for trial in trials:
                self._fail_interrupted(trial)
            self.changed.notify_all()
        return len(trials)

    def _fail_interrupted(self, trial: optuna.Trial) -> None:
        """Record `trial` FAIL "interrupted" (not counted) and queue its point again (the lock held)."""
        trial.set_user_attr("failure", INTERRUPTED)
        frozen = self.study._storage.get_trial(trial._trial_id)
        self.sweeper._tell(self.study, trial, state=TrialState.FAIL)
        queue_rerun(self.study, frozen)

    def _guarded_lane(self) -> None:
        try:
            self._lane()
        except BaseException as exc:  # handed to the main thread (run), which reports it
            with self.changed:
                self.error = self.error or exc
                self.stopping = True
                self.changed.notify_all()

    def _lane(self) -> None:
        while True:
            with self.changed:
                trial = self._next()
                if trial is None:
                    return
                (overrides,) = self.sweeper._configure_trials([trial], self.distributions, self.fixed_params)
            with Heartbeat(self.study, [trial._trial_id]):
                (ret,) = self.sweeper.launcher.launch([[*overrides, *self.sweeper.trial_overrides()]],
                                                      initial_job_idx=trial.number)
            if isinstance(ret._return_value, Interrupted) and not self.remote:  # Ctrl-C/SIGTERM here: stop the sweep
                raise KeyboardInterrupt(str(ret._return_value))
            with self.changed:
                if isinstance(ret._return_value, Interrupted):  # the cluster stopped it (preemption, SIGTERM)
                    if self.running.pop(trial.number, None) is not None:
                        self._fail_interrupted(trial)
                        log.warning("trial %d was stopped on the cluster (%s); its point runs again", trial.number,
                                    str(ret._return_value).splitlines()[0])
                    self.changed.notify_all()
                    continue
                if self.running.pop(trial.number, None) is None:  # recorded "interrupted" meanwhile
                    return
                self.sweeper._record(self.study, trial, ret)
                self.recorded += 1
                self.sweeper._progress(self.study, self.recorded, time.monotonic() - self.started)
                self.changed.notify_all()

    def _next(self) -> Optional[optuna.Trial]:
        """The next trial for a lane (the lock held), or None when the study is done or the
        sweep stops. While the last trials run elsewhere (other lanes, other workers), wait for
        one to end here, or a heartbeat interval for one elsewhere to end or go stale."""
        while not self.stopping:
            fail_stale(self.study)
            finished, in_flight = counts(self.study)
            if finished >= self.sweeper.n_trials:
                return None
            trial = take_rerun(self.study)  # a queued rerun holds its seat already
            if trial is None and finished + in_flight >= self.sweeper.n_trials:
                self.changed.wait(self.sweeper.heartbeat_interval)
                continue
            trial = self.sweeper._ask_unique(self.study, trial)
            if trial is None:
                continue
            trial.set_user_attr("run_dir", str((self.sweep_dir / str(trial.number)).absolute()))
            trial.set_user_attr("command_overrides", self.command)
            self.running[trial.number] = trial
            return trial
        return None
