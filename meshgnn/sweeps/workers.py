"""What lets any number of sweep processes (workers) share one Optuna study safely.

- the default study name is derived from the sweep itself (search space, fixed overrides,
  objective, direction, sampler), so relaunching a command continues its study and another
  sweep gets its own; a search space that does not fit an existing study is refused;
- RDB storage with heartbeats: each worker records a heartbeat for its running trials from a
  thread (Optuna 2.10 only does that inside `study.optimize`; the sweeper uses ask/tell), and
  `fail_stale` turns a dead worker's trials FAIL ("stale") once their grace period is over,
  never a live worker's trial;
- the create-study race is retried, and SQLite waits for its lock instead of failing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from typing import Any, Callable, Dict, Iterable, Optional, TypeVar

import optuna
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.exceptions import DuplicatedStudyError
from optuna.trial import TrialState
from sqlalchemy.exc import IntegrityError

from meshgnn.errors import UserError

T = TypeVar("T")

log = logging.getLogger(__name__)

STALE = "stale: its worker stopped sending heartbeats (killed, or its machine went away)"


def derived_study_name(distributions: Dict[str, BaseDistribution], fixed_params: Dict[str, Any],
                       objective: Any, direction: str, sampler: Any) -> str:
    """`meshgnn-<hash>` of what makes a sweep this sweep: the same command gives the same name
    (so a relaunch continues), another search space, objective or sampler another one."""
    identity = json.dumps({"space": {k: distribution_to_json(d) for k, d in sorted(distributions.items())},
                           "fixed": {k: str(v) for k, v in sorted(fixed_params.items())},
                           "objective": str(objective), "direction": direction, "sampler": sampler},
                          sort_keys=True, default=str)
    return "meshgnn-" + hashlib.sha256(identity.encode()).hexdigest()[:12]


def open_storage(url: Optional[str], heartbeat_interval: int, grace_period: int) -> Any:
    """An RDB storage with heartbeats (None: in memory, a single worker). SQLite waits up to a
    minute for its write lock, so a few local workers never see "database is locked"."""
    if grace_period <= heartbeat_interval:
        raise UserError(f"hydra.sweeper.grace_period={grace_period} must be larger than hydra.sweeper."
                        f"heartbeat_interval={heartbeat_interval}, or live trials would look stale; set e.g. "
                        f"hydra.sweeper.grace_period={6 * heartbeat_interval}")
    if url is None:
        return None
    engine_kwargs = {"connect_args": {"timeout": 60}} if str(url).startswith("sqlite") else {}
    # another worker may create the schema of a new database at the same moment (both insert
    # alembic_version): then it exists
    return once_more_after_a_race(
        lambda: optuna.storages.RDBStorage(str(url), engine_kwargs=engine_kwargs,
                                           heartbeat_interval=heartbeat_interval, grace_period=grace_period),
        IntegrityError)


def create_or_load_study(**kwargs: Any) -> optuna.Study:
    """create_study(load_if_exists=True), once more when another worker created the same study
    between its existence check and its insert (the create-study race)."""
    return once_more_after_a_race(lambda: optuna.create_study(load_if_exists=True, **kwargs),
                                  DuplicatedStudyError, IntegrityError)


def once_more_after_a_race(create: Callable[[], T], *races: type[BaseException]) -> T:
    """`create()`, and once more if it lost a race to another worker creating the same thing
    (the second call finds it made)."""
    try:
        return create()
    except races:
        return create()


def check_search_space(study: optuna.Study, distributions: Dict[str, BaseDistribution]) -> None:
    """Refuse, before any trial, a search space whose parameters are distributed otherwise than
    in the trials the study already has (Optuna would fail mid-trial, or mix two searches)."""
    for trial in study.get_trials(deepcopy=False):
        for name, theirs in trial.distributions.items():
            ours = distributions.get(name)
            if ours is not None and ours != theirs:
                raise UserError(
                    f"hydra.sweeper.params: {name} is {ours} here but {theirs} in study "
                    f"{study.study_name!r} (trial {trial.number}); give the same search space, or leave "
                    "hydra.sweeper.study_name unset (each sweep gets its own study) or name a new one")


def fail_stale(study: optuna.Study) -> None:
    """Mark FAIL ("stale") the running trials whose worker stopped its heartbeats.

    The reason is written while the trial is still RUNNING (Optuna refuses attributes of a
    finished trial), from Optuna 2.10's own staleness query (RDBStorage._get_stale_trial_ids,
    what its fail_stale_trials uses); a trial another worker failed first is skipped.
    """
    storage = study._storage
    if not storage.is_heartbeat_enabled():
        return
    for trial_id in getattr(storage, "_backend", storage)._get_stale_trial_ids(study._study_id):
        try:
            storage.set_trial_user_attr(trial_id, "failure", STALE)
        except RuntimeError:  # already finished: another worker failed it
            continue
    for trial_id in storage.fail_stale_trials(study._study_id):
        log.warning("trial %d: %s; recorded as failed", storage.get_trial_number_from_id(trial_id), STALE)


def first_heartbeat(study: optuna.Study, trial: optuna.Trial) -> None:
    """A heartbeat as soon as a trial is asked: a worker killed before launching it leaves a
    trial that goes stale too (one without any heartbeat would stay RUNNING for ever)."""
    if study._storage.is_heartbeat_enabled():
        study._storage.record_heartbeat(trial._trial_id)


class Heartbeat:
    """Records a heartbeat for the given trials every `interval` seconds while in a `with` block."""

    def __init__(self, study: optuna.Study, trial_ids: Iterable[int]) -> None:
        self.storage = study._storage
        self.trial_ids = list(trial_ids)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name="optuna-heartbeat")

    def _beat(self) -> None:
        interval = self.storage.get_heartbeat_interval()
        while True:
            for trial_id in self.trial_ids:
                self.storage.record_heartbeat(trial_id)
            if self.stopped.wait(interval):
                return

    def __enter__(self) -> "Heartbeat":
        if self.storage.is_heartbeat_enabled():
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()


def counts(study: optuna.Study) -> tuple[int, int]:
    """(finished, running) trials of the study, every worker's, duplicates of a grid point left out."""
    finished = running = 0
    for trial in study.get_trials(deepcopy=False):
        if "duplicate_of" in trial.user_attrs:
            continue
        if trial.state.is_finished():
            finished += 1
        elif trial.state == TrialState.RUNNING:
            running += 1
    return finished, running


def duplicate_grid_point(study: optuna.Study, trial: optuna.Trial) -> Optional[int]:
    """The number of an earlier trial that holds this trial's grid point (two workers asked at
    once and the grid sampler gave both the same point), or None."""
    grid_id = trial.system_attrs.get("grid_id")
    if grid_id is None:
        return None
    for other in study.get_trials(deepcopy=False):
        if (other.number < trial.number and other.system_attrs.get("grid_id") == grid_id
                and "duplicate_of" not in other.user_attrs and other.state != TrialState.WAITING):
            return other.number
    return None
