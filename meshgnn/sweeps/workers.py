"""What lets any number of sweep processes (workers) share one Optuna study safely.

- the default study name is derived from the sweep itself (search space, fixed overrides,
  objective, direction, sampler), so relaunching a command continues its study and another
  sweep gets its own; a search space that does not fit an existing study is refused;
- RDB storage with heartbeats: each worker records a heartbeat for its running trials from a
  thread (Optuna 2.10 only does that inside `study.optimize`; the sweeper uses ask/tell), and
  `fail_stale` turns a dead worker's trials FAIL ("stale") once their grace period is over,
  never a live worker's trial;
- a trial that did not end by itself (stale, or interrupted by Ctrl-C) is not one of the
  `n_trials`: its point is queued to run again, once (`queue_rerun`);
- the create-study race is retried, and SQLite waits for its lock instead of failing.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import logging
import threading
import warnings
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, TypeVar

import optuna
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.exceptions import DuplicatedStudyError, ExperimentalWarning
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import IntegrityError, OperationalError

from meshgnn.errors import UserError
from meshgnn.sweeps.config import shown_url

T = TypeVar("T")

log = logging.getLogger(__name__)

STALE = "stale: its worker stopped sending heartbeats (killed, or its machine went away)"
INTERRUPTED = "interrupted: its sweep was stopped (Ctrl-C); relaunching the sweep runs its point again"
# System attributes of a rerun: the number of the trial whose point it runs, and its grid point.
RERUN_OF = "rerun_of"
RERUN_GRID_ID = "rerun_grid_id"
# User attribute of a trial asked beyond n_trials (another worker asked the last one at once).
BEYOND_BUDGET = "beyond_budget"
# The failures of the infrastructure, not of the trial: they do not use up the budget.
NOT_COUNTED = (STALE, INTERRUPTED)


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
    try:
        with schema_lock(str(url)):
            # another worker may create the schema of a new database at the same moment (both
            # insert alembic_version): then it exists
            return once_more_after_a_race(
                lambda: optuna.storages.RDBStorage(str(url), engine_kwargs=engine_kwargs,
                                                   heartbeat_interval=heartbeat_interval, grace_period=grace_period),
                IntegrityError)
    except OperationalError as exc:  # no server there, a wrong user or password, an unwritable file
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise UserError(f"hydra.sweeper.storage={shown_url(url)}: cannot open the database ({reason}); check "
                        "that its server runs and the URL, user and password (docs/sweep_storage.md)") from None


@contextlib.contextmanager
def schema_lock(url: str) -> Iterator[None]:
    """For a SQLite file, an exclusive lock (`<db>.lock`, flock) while its tables are created or
    checked: workers opening a new database at once otherwise fail with "table ... already
    exists" (SQLite has no transactional DDL that would make one of them wait). Other
    databases create their schema in a transaction, so the IntegrityError retry suffices."""
    path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
    if not path or path == ":memory:":
        yield
        return
    with open(f"{path}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


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
    """Mark FAIL ("stale") the running trials whose worker stopped its heartbeats, and queue
    their points to run again (a stale trial is not one of the `n_trials`).

    The reason is written while the trial is still RUNNING (Optuna refuses attributes of a
    finished trial). Only the worker whose state change went through queues the rerun
    (Optuna's fail_stale_trials would raise, not skip, on a trial another worker failed first).
    """
    storage = study._storage
    if not storage.is_heartbeat_enabled():
        return
    for trial_id in stale_trial_ids(study):
        try:
            storage.set_trial_user_attr(trial_id, "failure", STALE)
            if not storage.set_trial_state(trial_id, TrialState.FAIL):
                continue
        except (RuntimeError, IntegrityError):  # another worker failed it first (or wrote its reason at once)
            continue
        trial = storage.get_trial(trial_id)
        log.warning("trial %d: %s; recorded as failed, its point runs again", trial.number, STALE)
        queue_rerun(study, trial)
    queue_forgotten_reruns(study)


def stale_trial_ids(study: optuna.Study) -> list[int]:
    """The RUNNING trials whose last heartbeat is older than the grace period, by the database's
    clock: Optuna 2.10's own query (RDBStorage._get_stale_trial_ids), but its age in
    total_seconds. Optuna reads timedelta.seconds, ~86399 for a heartbeat newer than its own
    `now()` reading (another worker's heartbeat landing between the two queries): a live trial
    would go stale."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from sqlalchemy import func, orm

    backend = getattr(study._storage, "_backend", study._storage)
    grace = grace_seconds(study)
    with _create_scoped_session(backend.scoped_session, True) as session:
        now = session.execute(func.now()).scalar().replace(tzinfo=None)  # PostgreSQL's is aware
        running = (session.query(models.TrialModel).options(orm.selectinload(models.TrialModel.heartbeats))
                   .filter(models.TrialModel.state == TrialState.RUNNING)
                   .filter(models.TrialModel.study_id == study._study_id).all())
        return [trial.trial_id for trial in running
                if trial.heartbeats and (now - trial.heartbeats[0].heartbeat).total_seconds() > grace]


def grace_seconds(study: optuna.Study) -> float:
    """The storage's grace period: a running trial silent this long is stale (Optuna's default
    when unset: two heartbeat intervals)."""
    backend = getattr(study._storage, "_backend", study._storage)
    return backend.grace_period or 2 * backend.heartbeat_interval


def rerun_origins(trials: Iterable[FrozenTrial]) -> set[int]:
    """The numbers of the trials whose point is queued (or run) again by one of `trials`."""
    return {t.system_attrs[RERUN_OF] for t in trials if RERUN_OF in t.system_attrs}


def queue_forgotten_reruns(study: optuna.Study) -> None:
    """Queue the rerun of each stale or interrupted trial whose worker died before queueing it
    (or recorded it before reruns existed): one finished longer than the grace period ago
    without a rerun, whose seat would otherwise be held for ever (`counts`)."""
    grace = grace_seconds(study)
    trials = study.get_trials(deepcopy=False)
    rerun = rerun_origins(trials)
    now = datetime.datetime.now()
    for trial in trials:
        if (trial.user_attrs.get("failure") in NOT_COUNTED and trial.number not in rerun
                and trial.datetime_complete is not None and (now - trial.datetime_complete).total_seconds() > grace):
            log.warning("trial %d (%s): its point was not queued again; queued now", trial.number,
                        trial.user_attrs["failure"].split(":")[0])
            queue_rerun(study, trial)


def queue_rerun(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue `trial`'s point (its parameters; for the grid, its grid point) as a WAITING trial
    the next `ask` of any worker takes: Optuna's RetryFailedTrialCallback idiom, without its
    copy of the user attributes (the failure reason and run directory are the old trial's).
    A point already queued again is not queued twice."""
    if trial.number in rerun_origins(study.get_trials(deepcopy=False)):
        return
    system_attrs: Dict[str, Any] = {RERUN_OF: trial.number}
    if "grid_id" in trial.system_attrs:
        system_attrs.update({RERUN_GRID_ID: trial.system_attrs["grid_id"],
                             "search_space": trial.system_attrs["search_space"]})
    with warnings.catch_warnings():  # "add_trial is experimental" in Optuna 2.10, on every rerun
        warnings.simplefilter("ignore", ExperimentalWarning)
        study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, params=trial.params,
                                                  distributions=trial.distributions, system_attrs=system_attrs))


def keep_rerun_grid_point(study: optuna.Study, trial: optuna.Trial) -> None:
    """Give a rerun its old trial's grid point back: asking it, the grid sampler gave it a new,
    unvisited one (and would then count that one visited without running it)."""
    grid_id = trial.system_attrs.get(RERUN_GRID_ID)
    if grid_id is not None:
        study._storage.set_trial_system_attr(trial._trial_id, "grid_id", grid_id)


def counted(trial: FrozenTrial) -> bool:
    """Whether the trial is one of the `n_trials`: not a duplicate of a grid point, not one
    asked beyond the budget, not a trial the infrastructure stopped (stale, interrupted; those
    run again)."""
    return not skipped(trial) and trial.user_attrs.get("failure") not in NOT_COUNTED


def skipped(trial: FrozenTrial) -> bool:
    """A trial recorded FAIL without running: a grid point another worker had, or a trial
    asked beyond the budget (`beyond_budget`)."""
    return "duplicate_of" in trial.user_attrs or BEYOND_BUDGET in trial.user_attrs


def beyond_budget(study: optuna.Study, trial: optuna.Trial, n_trials: int) -> bool:
    """Whether the new `trial` is one too many: two workers that each saw one seat free asked
    at once. Seats are ranked by trial number (a rerun at the number of the trial it runs
    again), which every worker reads alike: the trial is beyond the budget when `n_trials`
    seats rank before it."""
    if RERUN_OF in trial.system_attrs:  # a rerun has its seat
        return False
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}

    def rank(seat: FrozenTrial) -> int:
        while RERUN_OF in seat.system_attrs and seat.system_attrs[RERUN_OF] in by_number:
            seat = by_number[seat.system_attrs[RERUN_OF]]
        return seat.number

    rerun = rerun_origins(trials)
    seats = [t for t in trials if t.number != trial.number and not skipped(t) and (
        (t.user_attrs.get("failure") in NOT_COUNTED and t.number not in rerun)
        or (t.user_attrs.get("failure") not in NOT_COUNTED
            and (t.state != TrialState.WAITING or RERUN_OF in t.system_attrs)))]
    return sum(rank(t) < trial.number for t in seats) >= n_trials


def already_finished(exc: RuntimeError) -> bool:
    """Whether Optuna refused to change a trial because it is finished already: another worker
    recorded it FAIL "stale" while it ran (its worker suspended or starved past the grace period)."""
    return "has already finished" in str(exc)


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
    """(finished, in flight) trials of the study, every worker's, only `counted` ones. In
    flight: RUNNING ones, and the seat of each stale or interrupted trial whose point is to run
    again (its queued rerun, or the rerun its worker is queueing), so that no worker asks a new
    trial for that seat meanwhile (the study would end with more than n_trials)."""
    trials = study.get_trials(deepcopy=False)
    rerun = rerun_origins(trials)
    finished = in_flight = 0
    for trial in trials:
        if skipped(trial):
            continue
        if trial.user_attrs.get("failure") in NOT_COUNTED:
            in_flight += trial.number not in rerun  # its rerun is being queued
        elif trial.state.is_finished():
            finished += 1
        elif trial.state == TrialState.RUNNING or RERUN_OF in trial.system_attrs:
            in_flight += 1
    return finished, in_flight


def take_rerun(study: optuna.Study) -> Optional[optuna.Trial]:
    """A queued rerun taken for this worker, or None when none is left. Taking is Optuna's own
    queue pop, a state change WAITING -> RUNNING that one worker wins (a row lock on
    PostgreSQL/MySQL; SQLite, without one, does not exclude two workers taking it at the same
    instant, as for Optuna's own queue)."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if RERUN_OF in trial.system_attrs and study._storage.set_trial_state(trial._trial_id, TrialState.RUNNING):
            return optuna.trial.Trial(study, trial._trial_id)
    return None


def duplicate_grid_point(study: optuna.Study, trial: optuna.Trial) -> Optional[int]:
    """The number of an earlier trial that holds this trial's grid point (two workers asked at
    once and the grid sampler gave both the same point), or None. A stale or interrupted trial
    holds none: its rerun does."""
    grid_id = trial.system_attrs.get("grid_id")
    if grid_id is None:
        return None
    for other in study.get_trials(deepcopy=False):
        if (other.number < trial.number and other.system_attrs.get("grid_id") == grid_id
                and counted(other) and other.state != TrialState.WAITING):
            return other.number
    return None
