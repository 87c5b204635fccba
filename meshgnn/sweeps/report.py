"""`meshgnn sweep report`: rank a sweep's trials, write report files and plots, print the winner.

The report covers every trial of the sweep's study (meshgnn.sweeps.study), wherever its run
directory lies; the files are written into the folder the user named.
"""

from __future__ import annotations

import csv
import io
import json
import shlex
from collections import Counter
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from meshgnn.atomic import atomic_write_text
from meshgnn.sweeps.config import shown_url
from meshgnn.sweeps.launchers import REQUEUE_RESUME
from meshgnn.sweeps.report_plots import write_plots
from meshgnn.sweeps.study import STATES, Sweep, TrialRow, load_sweep

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
        # the launcher's own (a submitit trial's resume=auto, for its requeue), not the user's
        overrides = [o for o in overrides if o != REQUEUE_RESUME or o in (best.command_overrides or [])]
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
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=fields)
    writer.writeheader()
    writer.writerows({**{k: v for k, v in record.items() if k != "params"}, **record["params"]}
                     for record in records)
    atomic_write_text(csv_path, table.getvalue())
    json_path = sweep.sweep_dir / "report.json"
    best = sweep.best
    atomic_write_text(json_path, json.dumps({
        "study_name": sweep.study_name, "storage": shown_url(sweep.storage), "objective": sweep.objective,
        "direction": sweep.direction, "counts": state_counts(sweep),
        "best_trial": None if best is None else _record(best), "trials": records}, indent=2) + "\n")
    return [csv_path, json_path]


def _summary_lines(sweep: Sweep) -> list[str]:
    counts = state_counts(sweep)
    lines = [f"study {sweep.study_name}: {len(sweep.rows)} trials ("
             + ", ".join(f"{n} {state}" for state, n in counts.items() if n)
             + f"), objective {sweep.objective} ({sweep.direction})",
             f"storage {shown_url(sweep.storage)}"]
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
    pruned = any(row.state == "PRUNED" and row.last_intermediate is not None for row in sweep.rows)
    return ["(in parentheses: the last value a pruned trial reported)"] if pruned else []


def report(sweep_dir: Path, storage: str | None = None, study_name: str | None = None) -> list[str]:
    """Load the sweep, write report.csv, report.json and the plots into it; return what to print."""
    sweep = load_sweep(sweep_dir, storage, study_name)
    plots, skipped = write_plots(sweep)
    written = write_tables(sweep) + plots
    failures = _failure_lines(sweep)
    return (_summary_lines(sweep) + [""] + table_lines(sweep) + _pruned_note(sweep)
            + [""] + _winner_lines(sweep) + ([""] + failures if failures else [])
            + ["", f"wrote {', '.join(p.name for p in written)} to {sweep_dir}", *skipped])
