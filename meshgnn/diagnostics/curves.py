"""The runs a plot compares, read from their directories: each run's epoch records (a staged
run's stages joined in training order, epochs continuing across them, with where each stage
starts), a readable unique label and a colour.

A label is the run's directory relative to outputs/ or multirun/ (else to the runs' common
folder) plus the command-line overrides that tell it apart from the other runs plotted (all of
its own when it is plotted alone), read from the Hydra snapshot of each of its launches.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from meshgnn.errors import UserError
from meshgnn.resume import LAUNCH_KEYS
from meshgnn.run_layout import is_staged, stage_dirs

# Folders Hydra puts run and sweep directories under (conf/hydra: outputs/..., multirun/...).
RUN_ROOTS = ("outputs", "multirun")
# Longest label in a legend; longer ones end in "...": a legend wider than the plot hides it.
LABEL_MAX_CHARS = 80
_FIX = "train it first or pass a run directory of `python train.py` (the folder holding metrics.jsonl)"


@dataclass
class Run:
    """One run's metrics, epoch by epoch, ready to plot; `stages` holds (name, first epoch) of a
    staged run's stages, in order ([] for a plain run)."""

    path: Path
    label: str
    colour: Any
    epochs: np.ndarray
    records: list[dict]
    stages: list[tuple[str, float]] = field(default_factory=list)

    def has(self, tag: str) -> bool:
        return any(tag in record for record in self.records)

    def series(self, tag: str) -> np.ndarray:
        """The tag's value per epoch; missing and non-finite values are NaN (a gap in the line)."""
        return np.array([metric_value(record.get(tag)) for record in self.records], dtype=float)


def load_runs(run_dirs: list[Path]) -> list[Run]:
    """Read and check every run directory, and give each a readable unique label and a colour."""
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise UserError("no run directory to plot; pass one or more run directories of `python train.py`")
    read = [_read_run(run_dir) for run_dir in run_dirs]
    colours = _colours(len(run_dirs))
    return [Run(path=run_dir, label=label, colour=colour, records=records, epochs=_epochs(records), stages=stages)
            for run_dir, label, colour, (records, stages) in zip(run_dirs, run_labels(run_dirs), colours, read)]


def _read_run(run_dir: Path) -> tuple[list[dict], list[tuple[str, float]]]:
    """A run's records, and for a staged run where each stage starts."""
    if not run_dir.exists():
        raise UserError(f"run directory {run_dir} does not exist; check the path, or pass a run "
                        f"directory of `python train.py` (the folder holding metrics.jsonl)")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is a file, not a run directory; pass the folder holding metrics.jsonl")
    if not is_staged(run_dir):
        return _read_records(run_dir), []
    records: list[dict] = []
    stages = []
    for stage in stage_dirs(run_dir):
        if (stage / "metrics.jsonl").is_file() and (stage_records := _read_records(stage, required=False)):
            stages.append((stage.name, _epochs(stage_records)[0]))
            records += stage_records
    if not records:
        raise UserError(f"staged run {run_dir} has no logged epoch in any stage yet: let its first stage "
                        f"finish an epoch, or pass another run directory of `python train.py`")
    return records, stages


def _read_records(run_dir: Path, required: bool = True) -> list[dict]:
    from meshgnn.training.metrics_log import read_metrics

    jsonl = run_dir / "metrics.jsonl"
    if not jsonl.is_file():
        raise UserError(f"{run_dir} has no metrics.jsonl: {_FIX}")
    try:
        records = [r for r in read_metrics(run_dir) if isinstance(r, dict)]
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{jsonl} is not one JSON object per line ({exc}); "
                        f"delete the broken line and plot again") from None
    if not records and required:
        raise UserError(f"{jsonl} has no epochs yet: let the run finish its first epoch, or pass "
                        f"another run directory of `python train.py`")
    return records


def _epochs(records: list[dict]) -> np.ndarray:
    """The 1-based "epoch" of each record, or its line number where that is missing."""
    epochs = [metric_value(record.get("epoch")) for record in records]
    return np.array([e if math.isfinite(e) else i + 1 for i, e in enumerate(epochs)], dtype=float)


def run_labels(run_dirs: list[Path]) -> list[str]:
    """Each run's folder (relative to outputs/ or multirun/, else to the runs' common parent) and
    the overrides that differ between the runs; repeats get " (2)", " (3)", ..."""
    resolved = [Path(d).resolve() for d in run_dirs]
    overrides = [run_overrides(path) for path in resolved]
    keys = sorted({key for run in overrides for key in run})
    differing = [k for k in keys if len(run_dirs) == 1 or len({run.get(k) for run in overrides}) > 1
                 or any(k not in run for run in overrides)]
    labels, seen = [], {}
    for path, folder, own in zip(resolved, _folders(resolved), overrides):
        shown = " ".join(f"{k}={own[k]}" for k in differing if k in own)
        label = f"{folder} {shown}" if shown else folder
        if len(label) > LABEL_MAX_CHARS:
            label = label[:LABEL_MAX_CHARS - 3] + "..."
        seen[label] = seen.get(label, 0) + 1
        labels.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return labels


def _folders(resolved: list[Path]) -> list[str]:
    """Each folder relative to its nearest outputs/ or multirun/ ancestor, else to the common parent."""
    base = Path(os.path.commonpath(resolved)) if len(resolved) > 1 else resolved[0].parent
    if base in resolved:  # one run inside another, or the same run twice: go one level up
        base = base.parent
    folders = []
    for path in resolved:
        root = next((p for p in path.parents if p.name in RUN_ROOTS), None)
        anchor = root if root is not None else base
        folders.append(path.relative_to(anchor).as_posix() if path != anchor else (path.name or str(path)))
    return folders


def run_overrides(run_dir: Path) -> dict[str, str]:
    """The command-line overrides a run trained with, key -> value: those of every launch in turn
    (a resume's change wins), from .hydra/launches/*/overrides.yaml (else .hydra/overrides.yaml);
    a stage of a staged run has its run's. Launch keys (paths, resume, init_from) and hydra.*
    are left out: they say where, not what."""
    hydra = run_dir / ".hydra"
    if not hydra.is_dir() and is_staged(run_dir.parent):
        hydra = run_dir.parent / ".hydra"
    files = sorted((hydra / "launches").glob("*/overrides.yaml")) or [hydra / "overrides.yaml"]
    out: dict[str, str] = {}
    for path in files:
        try:
            overrides = yaml.safe_load(path.read_text()) if path.is_file() else []
        except (OSError, UnicodeDecodeError, yaml.YAMLError):  # a label without them, not a failed plot
            overrides = []
        for override in overrides if isinstance(overrides, list) else []:
            key, sep, value = str(override).partition("=")
            key = key.lstrip("+~")
            if sep and not key.startswith("hydra") and key.split(".")[0] not in LAUNCH_KEYS:
                out[key] = value
    return out


def _colours(n: int) -> list:
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, n)]


def metric_value(value: Any) -> float:
    """A metric value as a float: "nan"/"inf" strings, None and anything unreadable become NaN."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan
