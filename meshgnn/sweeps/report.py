"""`meshgnn sweep report`: rank a sweep's trials, write report files and plots, print the winner.

The Optuna study, not the sweep folder, is the source of truth: a killed sweep is relaunched into
a new multirun folder but the same study, so the report covers every trial of the study, wherever
its run directory lies. The files are still written into the folder the user named.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import random
import re
import shlex
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from meshgnn.errors import UserError

if TYPE_CHECKING:
    import optuna
    from matplotlib.axes import Axes

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
    """A study's trials, best first, with what is needed to label and plot them."""

    sweep_dir: Path
    study_name: str
    storage: str
    objective: str
    direction: str
    rows: list[TrialRow]
    choices: dict[str, list[Any]]

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


def _categorical_choices(trials: list[optuna.trial.FrozenTrial]) -> dict[str, list[Any]]:
    """Choices of each categorical param in search-space order, the x axis of its strip plot."""
    from optuna.distributions import CategoricalDistribution

    choices: dict[str, list[Any]] = {}
    for trial in trials:
        for name, dist in trial.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                known = choices.setdefault(name, [])
                known.extend(c for c in dist.choices if c not in known)
    return choices


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
                 choices=_categorical_choices(trials))


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _sweep_only(override: str) -> bool:
    """Overrides that make a run a sweep job, which a plain rerun must not repeat."""
    key = _override_key(override)
    return key in ("hparams_search", "hydra") or key.startswith(("hydra.", "hydra/"))


def _hydra_value(value: Any) -> str:
    """A param value as Hydra's override grammar reads it back."""
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)


def winner_command(sweep: Sweep) -> str | None:
    """The best trial as a plain training command, ready to paste into a shell."""
    best = sweep.best
    if best is None:
        return None
    overrides_file = best.run_dir / ".hydra" / "overrides.yaml" if best.run_dir else None
    if overrides_file is not None and overrides_file.is_file():
        overrides = [str(o) for o in OmegaConf.to_container(OmegaConf.load(overrides_file))]
    else:
        # A param given on the sweep command line holds its search range there, not a value.
        overrides = [o for o in best.command_overrides or [] if _override_key(o) not in best.params]
        overrides += [f"{name}={_hydra_value(value)}" for name, value in sorted(best.params.items())]
    return " ".join(["python", "train.py"] + [shlex.quote(o) for o in overrides if not _sweep_only(o)])


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _objective_cell(row: TrialRow) -> str:
    if row.state == "PRUNED" and row.last_intermediate is not None:
        return f"({_number(row.last_intermediate)})"
    return _number(row.value)


def _param_cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _display_path(path: Path | None) -> str:
    """Relative to the working directory when below it, which keeps the table narrow."""
    if path is None:
        return "-"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def table_lines(sweep: Sweep) -> list[str]:
    """The trials as an aligned text table; rank, trial and epochs right-aligned."""
    header = ["rank", "trial", "state", "objective", "epochs", *sweep.params, "run dir"]
    body = [["-" if row.rank is None else str(row.rank), str(row.number), row.state, _objective_cell(row),
             str(row.epochs), *(_param_cell(row.params.get(name)) for name in sweep.params),
             _display_path(row.run_dir)]
            for row in sweep.rows]
    widths = [max(len(cell) for cell in column) for column in zip(header, *body)]
    right = {0, 1, 4}
    return ["  ".join(cell.rjust(width) if i in right else cell.ljust(width)
                      for i, (cell, width) in enumerate(zip(line, widths))).rstrip()
            for line in [header, *body]]


def _record(row: TrialRow) -> dict[str, Any]:
    return {"rank": row.rank, "trial": row.number, "state": row.state, "objective": row.value,
            "last_intermediate": row.last_intermediate, "epochs": row.epochs, "params": row.params,
            "run_dir": None if row.run_dir is None else str(row.run_dir), "failure": row.failure}


def state_counts(sweep: Sweep) -> dict[str, int]:
    counts = Counter(row.state for row in sweep.rows)
    return {state: counts[state] for state in STATES}


def write_tables(sweep: Sweep) -> list[Path]:
    """report.csv for spreadsheets, report.json for scripts; the same rows in both."""
    records = [_record(row) for row in sweep.rows]
    csv_path = sweep.sweep_dir / "report.csv"
    fields = ["rank", "trial", "state", "objective", "last_intermediate", "epochs", *sweep.params,
              "run_dir", "failure"]
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows({**{k: v for k, v in record.items() if k != "params"}, **record["params"]}
                         for record in records)
    json_path = sweep.sweep_dir / "report.json"
    best = sweep.best
    json_path.write_text(json.dumps({
        "study_name": sweep.study_name, "storage": sweep.storage, "objective": sweep.objective,
        "direction": sweep.direction, "counts": state_counts(sweep),
        "best_trial": None if best is None else _record(best), "trials": records}, indent=2) + "\n")
    return [csv_path, json_path]


def _file_name(param: str) -> str:
    return "objective_vs_" + re.sub(r"[^\w.-]+", "_", param) + ".png"


def _log_x(param: str, values: list[Any]) -> bool:
    """Learning rates and anything spanning more than two decades read better on a log axis."""
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not numbers or min(numbers) <= 0:
        return False
    return "lr" in param or max(numbers) / min(numbers) > 100


def _plotted(sweep: Sweep) -> tuple[list[TrialRow], list[TrialRow]]:
    """Completed trials, and pruned trials that reported a value to stand in for their objective."""
    done = [row for row in sweep.rows if row.state == "COMPLETE"]
    pruned = [row for row in sweep.rows if row.state == "PRUNED" and row.last_intermediate is not None]
    return done, pruned


def _draw_per_trial(ax: Axes, sweep: Sweep) -> None:
    from matplotlib.ticker import MaxNLocator

    done, pruned = _plotted(sweep)
    done = sorted(done, key=lambda row: row.number)
    numbers = [row.number for row in done]
    values = [row.value for row in done]
    ax.scatter(numbers, values, label="complete")
    best_so_far = list(itertools.accumulate(values, min if sweep.direction == "minimize" else max))
    ax.step(numbers, best_so_far, where="post", color="tab:green", label="best so far")
    ax.scatter([row.number for row in pruned], [row.last_intermediate for row in pruned],
               marker="x", color="tab:red", label="pruned (last reported)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")


def _draw_param(ax: Axes, sweep: Sweep, param: str) -> None:
    """Objective against one param: a strip plot for categorical params, a scatter otherwise."""
    choices = sweep.choices.get(param)
    jitter = random.Random(0)

    def x(row: TrialRow) -> Any:
        value = row.params[param]
        return value if choices is None else choices.index(value) + jitter.uniform(-0.15, 0.15)

    done, pruned = _plotted(sweep)
    done = [row for row in done if param in row.params]
    pruned = [row for row in pruned if param in row.params]
    ax.scatter([x(row) for row in done], [row.value for row in done], label="complete")
    ax.scatter([x(row) for row in pruned], [row.last_intermediate for row in pruned],
               marker="x", color="tab:red", label="pruned (last reported)")
    if choices is not None:
        ax.set_xticks(range(len(choices)), [str(c) for c in choices])
        ax.set_xlim(-0.5, len(choices) - 0.5)
    elif _log_x(param, [row.params[param] for row in done + pruned]):
        ax.set_xscale("log")
    ax.set_xlabel(param)


def write_plots(sweep: Sweep) -> list[Path]:
    """objective_per_trial.png and one objective_vs_<param>.png per param.

    Figures are drawn on the Agg canvas directly, so no display or pyplot state is involved and
    matplotlib is only imported when plots are made.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    plots = [("objective_per_trial.png", lambda ax: _draw_per_trial(ax, sweep))]
    plots += [(_file_name(p), lambda ax, p=p: _draw_param(ax, sweep, p)) for p in sweep.params]
    paths = []
    for name, draw in plots:
        figure = Figure(figsize=(7, 4.5), layout="constrained")
        ax = figure.add_subplot()
        draw(ax)
        ax.set_ylabel(sweep.objective)
        ax.set_title(f"{sweep.study_name}: {sweep.objective} ({sweep.direction})")
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        path = sweep.sweep_dir / name
        FigureCanvasAgg(figure).print_png(str(path))
        paths.append(path)
    return paths


def _summary_lines(sweep: Sweep) -> list[str]:
    counts = state_counts(sweep)
    lines = [f"study {sweep.study_name}: {len(sweep.rows)} trials ("
             + ", ".join(f"{n} {state}" for state, n in counts.items() if n)
             + f"), objective {sweep.objective} ({sweep.direction})",
             f"storage {sweep.storage}"]
    if counts["RUNNING"]:
        lines.append(f"{counts['RUNNING']} trial(s) RUNNING: still in progress, or left by a killed launch")
    return lines


def _winner_lines(sweep: Sweep) -> list[str]:
    best = sweep.best
    if best is None:
        return ["no completed trial yet"]
    return [f"best: trial {best.number}, {sweep.objective} = {_number(best.value)} after {best.epochs} "
            "epochs; train it again with:", f"  {winner_command(sweep)}"]


def _failure_lines(sweep: Sweep) -> list[str]:
    failed = [row for row in sweep.rows if row.state == "FAIL"]
    lines = ["failed trials:"] if failed else []
    for row in failed:
        log = row.run_dir / "train.log" if row.run_dir else "no run directory recorded"
        lines += [f"  trial {row.number}: {row.failure or 'no reason recorded'}", f"    log: {log}"]
    return lines


def _pruned_note(sweep: Sweep) -> list[str]:
    _, pruned = _plotted(sweep)
    return ["(in parentheses: the last value a pruned trial reported)"] if pruned else []


def report(sweep_dir: Path, storage: str | None = None, study_name: str | None = None) -> list[str]:
    """Load the sweep, write report.csv, report.json and the plots into it; return what to print."""
    sweep = load_sweep(sweep_dir, storage, study_name)
    written = write_tables(sweep) + write_plots(sweep)
    failures = _failure_lines(sweep)
    return (_summary_lines(sweep) + [""] + table_lines(sweep) + _pruned_note(sweep)
            + [""] + _winner_lines(sweep) + ([""] + failures if failures else [])
            + ["", f"wrote {', '.join(p.name for p in written)} to {sweep_dir}"])
