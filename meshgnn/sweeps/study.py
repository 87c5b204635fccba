"""A sweep's Optuna study as ranked rows: the trials, their states, params and run directories.

The Optuna study, not the sweep folder, is the source of truth: a killed sweep is relaunched into
a new multirun folder but the same study, so a sweep covers every trial of the study, wherever
its run directory lies (`meshgnn sweep report`, `meshgnn ensemble --sweep`).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshgnn.errors import UserError

if TYPE_CHECKING:
    import optuna

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
SWEEP_COMMAND = "python train.py -m hparams_search=optuna"


@dataclass(frozen=True)
class TrialRow:
    """One trial as the report shows it; only completed trials get a rank."""

    number: int
    state: str
    value: float | None
    last_intermediate: float | None
    epochs: int
    params: dict[str, Any]
    run_dir: Path | None
    failure: str | None
    command_overrides: list[str] | None
    rank: int | None = None


@dataclass(frozen=True)
class Sweep:
    """A study's trials, best first, with what is needed to label them, and the study to plot."""

    sweep_dir: Path
    study_name: str
    storage: str
    objective: str
    direction: str
    rows: list[TrialRow]
    study: optuna.Study

    @property
    def params(self) -> list[str]:
        """Every param of any trial: conditional search spaces give trials different params."""
        return sorted({name for row in self.rows for name in row.params})

    @property
    def best(self) -> TrialRow | None:
        return self.rows[0] if self.rows and self.rows[0].state == "COMPLETE" else None


def read_sweep_settings(sweep_dir: Path, storage: str | None = None,
                        study_name: str | None = None) -> tuple[str, str, str]:
    """(storage URL, study name, objective tag) from sweep.json, explicit arguments winning.

    sweep.json may be absent when both the storage and the study are given, so a sweep whose
    launcher died before writing it can still be reported.
    """
    if not sweep_dir.is_dir():
        raise UserError(f"sweep folder {sweep_dir} does not exist: pass the multirun/<date>/<time> "
                        f"folder of a `{SWEEP_COMMAND}` sweep")
    path = sweep_dir / "sweep.json"
    if not path.is_file():
        if storage and study_name:
            return storage, study_name, "objective"
        raise UserError(f"no sweep.json in {sweep_dir}: not a folder written by `{SWEEP_COMMAND}`; "
                        "pass its multirun/<date>/<time> folder, or name the study with "
                        "--storage URL --study NAME")
    try:
        settings = json.loads(path.read_text())
        return (storage or settings["storage"], study_name or settings["study_name"],
                settings.get("objective") or "objective")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path} is not a valid sweep.json ({type(exc).__name__}: {exc}): it needs "
                        "\"storage\" and \"study_name\"; fix it or pass --storage URL --study NAME") from None


def shown(storage: str) -> str:
    """The storage URL with its password masked: it is printed and written to report.json."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(storage).render_as_string(hide_password=True)
    except ArgumentError:
        return storage


def _require_sqlite_file(storage: str) -> None:
    """SQLAlchemy would silently create an empty database at a wrong SQLite path; refuse instead."""
    from sqlalchemy.engine import make_url

    url = make_url(storage)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and not Path(url.database).is_file():
        raise UserError(f"Optuna storage {storage}: database file {Path(url.database).resolve()} does not "
                        "exist; fix \"storage\" in sweep.json or pass --storage URL")


def open_study(storage: str, study_name: str) -> optuna.Study:
    """Load the study, turning every way the storage or the name can be wrong into one line.

    Optuna is imported here, not at module level, so mistakes in the sweep folder are reported
    without waiting seconds for it to import.
    """
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        _require_sqlite_file(storage)
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = ", ".join(s.study_name for s in optuna.get_all_study_summaries(storage)) or "none"
        raise UserError(f"no study named {study_name!r} in {shown(storage)} (studies there: {names}); fix "
                        "\"study_name\" in sweep.json or pass --study NAME") from None
    except (SQLAlchemyError, ImportError, ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot open Optuna storage {shown(storage)}: {reason}; fix \"storage\" in "
                        "sweep.json or pass --storage URL") from None


def _run_dir(trial: optuna.trial.FrozenTrial, sweep_dir: Path) -> Path | None:
    """The recorded run directory, else this sweep folder's subfolder named by the trial number."""
    if "run_dir" in trial.user_attrs:
        return Path(trial.user_attrs["run_dir"])
    fallback = sweep_dir / str(trial.number)
    return fallback if fallback.is_dir() else None


def _epochs(trial: optuna.trial.FrozenTrial, run_dir: Path | None) -> int:
    """Recorded epochs, else epochs logged: a trial killed mid-run never recorded its count."""
    if "epochs_run" in trial.user_attrs:
        return int(trial.user_attrs["epochs_run"])
    metrics = run_dir / "metrics.jsonl" if run_dir else None
    if metrics is None or not metrics.is_file():
        return 0
    return sum(1 for line in metrics.read_text().splitlines() if line.strip())


def _row(trial: optuna.trial.FrozenTrial, sweep_dir: Path) -> TrialRow:
    """The trial's row; only a completed trial has an objective, though Optuna gives a pruned one
    its last report as value."""
    run_dir = _run_dir(trial, sweep_dir)
    steps = trial.intermediate_values
    state = trial.state.name
    return TrialRow(number=trial.number, state=state, value=trial.value if state == "COMPLETE" else None,
                    last_intermediate=steps[max(steps)] if steps else None,
                    epochs=_epochs(trial, run_dir), params=dict(trial.params), run_dir=run_dir,
                    failure=trial.user_attrs.get("failure"),
                    command_overrides=trial.user_attrs.get("command_overrides"))


def rank_rows(rows: list[TrialRow], direction: str) -> list[TrialRow]:
    """Completed trials by objective, then pruned ones by their last report, then the rest by number."""
    sign = 1.0 if direction == "minimize" else -1.0

    def key(row: TrialRow) -> tuple[int, float, int]:
        if row.state == "COMPLETE":
            return 0, sign * row.value, row.number
        if row.state == "PRUNED":
            last = row.last_intermediate
            return 1, math.inf if last is None else sign * last, row.number
        return 2, 0.0, row.number

    ordered = sorted(rows, key=key)
    ranks = itertools.count(1)
    return [replace(row, rank=next(ranks)) if row.state == "COMPLETE" else row for row in ordered]


def load_sweep(sweep_dir: Path, storage: str | None = None, study_name: str | None = None) -> Sweep:
    """Every trial of the sweep's study, best first."""
    storage, study_name, objective = read_sweep_settings(sweep_dir, storage, study_name)
    study = open_study(storage, study_name)
    trials = study.get_trials(deepcopy=False)
    if not trials:
        raise UserError(f"study {study_name!r} in {shown(storage)} has no trials yet: start the sweep with "
                        f"`{SWEEP_COMMAND}` or wait for its first trial")
    direction = study.direction.name.lower()
    return Sweep(sweep_dir=sweep_dir, study_name=study_name, storage=shown(storage), objective=objective,
                 direction=direction, rows=rank_rows([_row(t, sweep_dir) for t in trials], direction),
                 study=study)
