"""Loss curves of one or more training runs as PNGs, for people who would rather look than read.

`plot_runs(run_dirs, out_dir)` reads each run (`meshgnn.diagnostics.curves`: a staged run as one
curve over its stages, a dotted line where each later stage starts) and writes four figures, one
colour per run, train dashed and validation solid, so runs of different lengths and targets can
be compared at a glance:

- loss_total.png: the total loss the optimiser minimises (train) and the one early stopping and
  checkpoint selection watch (val). Over- and underfitting, divergence and which run is best show
  here first; a star marks each run's best validation epoch.
- loss_terms.png: one panel per loss term (l1, relative_l1, smoothness, gradient_consistency,
  curvature, and oscillation in newer runs), to see which term dominates, which one stalls and
  what a change of weights did. Every term is logged even at weight 0, so a flat panel means the
  term itself is 0, not that it is switched off; all-zero panels say so in their title.
- targets.png: per predicted field, train/val l1 (top row) and val relative L2 (bottom row), the
  numbers a user of the model cares about: the total loss can improve while one field gets worse.
- optimisation.png: the learning rate (what the schedule did: warm-up, decay, plateau cuts) and,
  when logged, the gradient and parameter norms (exploding gradients, runaway weights).

Values that were not finite (stored as "nan"/"inf") are drawn as gaps, not as zeros. Axes are
logarithmic when every value on them is positive (tick labels: `meshgnn.diagnostics.log_ticks`). Figures are drawn on the Agg canvas directly:
no display, no pyplot state and no global rcParams are touched, and each file is written
atomically (temp name in out_dir, then rename).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from meshgnn.diagnostics.curves import Run, load_runs
from meshgnn.errors import UserError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FILES = ("loss_total.png", "loss_terms.png", "targets.png", "optimisation.png")

# Known loss terms in the order they are usually discussed; unknown terms follow in log order.
_TERM_ORDER = ("l1", "relative_l1", "smoothness", "gradient_consistency", "curvature", "oscillation")
_OPTIMISATION_TAGS = (("lr", "learning rate"), ("train/grad_norm", "gradient norm (train)"),
                      ("train/param_norm", "parameter norm"))
_TARGET_TAG = re.compile(r"^(train|val)/([^/]+)/(l1|rel_l2)$")
_TERM_TAG = re.compile(r"^(train|val)/loss/([^/]+)$")
_TRAIN, _VAL = "--", "-"


def plot_runs(run_dirs: list[Path], out_dir: Path) -> list[Path]:
    """Write FILES comparing `run_dirs` into `out_dir` (created if missing); return their paths.

    Raises UserError (one line) for a run directory that does not exist or has no logged epoch.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from meshgnn.atomic import atomic_write

    runs = load_runs(run_dirs)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"plot output {out_dir} is a file, not a folder; pass a folder for the PNGs "
                        f"(it is created if missing)") from None
    paths = []
    for name, figure in figures(runs).items():
        FigureCanvasAgg(figure)
        path = out_dir / name
        atomic_write(path, lambda handle, figure=figure: figure.savefig(handle, format="png", dpi=110))
        paths.append(path)
    return paths


def figures(runs: list[Run]) -> dict[str, Figure]:
    """The figures plot_runs writes, by file name (FILES, in that order)."""
    return {"loss_total.png": _loss_total(runs), "loss_terms.png": _loss_terms(runs),
            "targets.png": _targets(runs), "optimisation.png": _optimisation(runs)}


def _loss_total(runs: list[Run]) -> Figure:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    figure = Figure(figsize=(8, 5), layout="constrained")
    ax = figure.add_subplot()
    values: list[np.ndarray] = []
    best = False
    for run in runs:
        values += [_line(ax, run, "train/loss/total", _TRAIN), _line(ax, run, "val/loss/total", _VAL)]
        val = run.series("val/loss/total")
        if np.isfinite(val).any():
            i = int(np.nanargmin(val))
            ax.plot([run.epochs[i]], [val[i]], marker="*", markersize=11, color=run.colour,
                    markeredgecolor="black", markeredgewidth=0.5, linestyle="none")
            best = True
    _finish(ax, runs, values, "total loss", "loss")
    extra = [Line2D([], [], color="black", marker="*", markersize=9, linestyle="none", label="best val")] if best else []
    ax.legend(handles=_run_handles(runs) + _split_handles() + extra, fontsize="small")
    return figure


def _loss_terms(runs: list[Run]) -> Figure:
    terms = _ordered(_TERM_ORDER, [m.group(2) for run in runs for record in run.records for tag in record
                                   if (m := _TERM_TAG.match(tag)) and m.group(2) != "total"])
    figure, axes = _grid(len(terms), ncols=min(3, max(1, len(terms))), nrows=max(1, math.ceil(len(terms) / 3)))
    if not terms:
        _empty(axes[0], "no loss terms (train/loss/*, val/loss/*) in these runs")
    for ax, term in zip(axes, terms):
        values = [_line(ax, run, f"{split}/loss/{term}", style)
                  for run in runs for split, style in (("train", _TRAIN), ("val", _VAL))]
        _finish(ax, runs, values, term, "loss term")
    figure.suptitle("loss terms (unweighted)")
    figure.legend(handles=_run_handles(runs) + _split_handles(), loc="outside right upper", fontsize="small")
    return figure


def _targets(runs: list[Run]) -> Figure:
    targets = _ordered((), [m.group(2) for run in runs for record in run.records for tag in record
                            if (m := _TARGET_TAG.match(tag)) and m.group(2) != "loss"])
    figure, axes = _grid(2 * len(targets), ncols=max(1, len(targets)), nrows=2 if targets else 1)
    if not targets:
        _empty(axes[0], "no per-target metrics (train/<target>/l1, val/<target>/rel_l2) in these runs")
    for j, target in enumerate(targets):
        ax = axes[j]
        values = [_line(ax, run, f"{split}/{target}/l1", style)
                  for run in runs for split, style in (("train", _TRAIN), ("val", _VAL))]
        _finish(ax, runs, values, f"{target}: l1", "mean absolute error")
        ax = axes[len(targets) + j]
        values = [_line(ax, run, f"val/{target}/rel_l2", _VAL) for run in runs]
        _finish(ax, runs, values, f"{target}: val relative L2", "relative L2 error")
    figure.suptitle("per-target errors")
    figure.legend(handles=_run_handles(runs) + _split_handles(), loc="outside right upper", fontsize="small")
    return figure


def _optimisation(runs: list[Run]) -> Figure:
    panels = [(tag, title) for tag, title in _OPTIMISATION_TAGS if any(run.has(tag) for run in runs)]
    figure, axes = _grid(len(panels), ncols=max(1, len(panels)), nrows=1)
    if not panels:
        _empty(axes[0], "no lr, train/grad_norm or train/param_norm in these runs")
    for ax, (tag, title) in zip(axes, panels):
        _finish(ax, runs, [_line(ax, run, tag, "-") for run in runs], title, tag)
    figure.suptitle("optimisation")
    figure.legend(handles=_run_handles(runs), loc="outside right upper", fontsize="small")
    return figure


def _line(ax: Axes, run: Run, tag: str, style: str) -> np.ndarray:
    """Plot one tag of one run; return its finite values (empty when the run lacks the tag).

    Non-finite values are gaps; a finite point between gaps gets a marker so it stays visible.
    """
    if not run.has(tag):
        return np.empty(0)
    y = run.series(tag)
    finite = np.isfinite(y)
    before = np.concatenate([[False], finite[:-1]])
    after = np.concatenate([finite[1:], [False]])
    isolated = [int(i) for i in np.flatnonzero(finite & ~before & ~after)]
    ax.plot(run.epochs, y, linestyle=style, color=run.colour, linewidth=1.4,
            marker="o" if isolated else None, markevery=isolated or None, markersize=3.5)
    return y[finite]


def _finish(ax: Axes, runs: list[Run], values: list[np.ndarray], title: str, ylabel: str) -> None:
    from matplotlib.ticker import MaxNLocator

    from meshgnn.diagnostics.log_ticks import DistinctLogLabels

    finite = np.concatenate(values) if values else np.empty(0)
    if finite.size and (finite > 0).all():
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(DistinctLogLabels(minor=False))
        ax.yaxis.set_minor_formatter(DistinctLogLabels(minor=True))
    elif finite.size and (finite == 0).all():
        title += " (all zero)"
    elif not finite.size:
        title += " (no finite values)"
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, which="major", alpha=0.3)
    _mark_stages(ax, runs)


def _mark_stages(ax: Axes, runs: list[Run]) -> None:
    """A dotted line in the run's colour where each later stage of a staged run begins, named."""
    for run in runs:
        for name, first_epoch in run.stages[1:]:
            ax.axvline(first_epoch - 0.5, color=run.colour, linestyle=":", linewidth=1.2)
            ax.text(first_epoch - 0.5, 0.98, f" {name}", transform=ax.get_xaxis_transform(), color=run.colour,
                    fontsize="x-small", ha="left", va="top")


def _grid(panels: int, ncols: int, nrows: int) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.3 * ncols + 1.8, 3.3 * nrows + 0.5), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[max(1, panels):]:
        ax.set_visible(False)
    return figure, axes


def _empty(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_axis_off()


def _run_handles(runs: list[Run]) -> list:
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=run.colour, linewidth=2.5, label=run.label) for run in runs]


def _split_handles() -> list:
    from matplotlib.lines import Line2D

    return [Line2D([], [], color="grey", linestyle=_TRAIN, label="train"),
            Line2D([], [], color="grey", linestyle=_VAL, label="val")]


def _ordered(known: tuple[str, ...], found: list[str]) -> list[str]:
    """Unique names in `found`: those in `known` first, in its order, then the rest as first seen."""
    unique = list(dict.fromkeys(found))
    return [name for name in known if name in unique] + [name for name in unique if name not in known]
