"""The sweep report's plots, drawn by Optuna's own matplotlib backend from the study.

- objective_per_trial.png: optimisation history (each completed trial, and the best so far);
- objective_vs_<param>.png: one slice plot per param (objective against its values);
- param_importances.png: optuna.importance's importance of each param for the objective (mean
  decrease in impurity of a random forest fitted to the completed trials, seeded so a report is
  reproducible), drawn as bars here: Optuna 2.10's default fANOVA evaluator fails on
  scikit-learn >= 1.3's tree arrays, and its importance plot calls matplotlib.cm.get_cmap,
  which matplotlib 3.9 removed.

(No parallel-coordinate plot: Optuna 2.10's asks matplotlib >= 3.6 for a colorbar without an
Axes and fails.) Optuna 2.10 marks this backend experimental and warns on every call; that
warning is silenced for these calls only. Importance needs at least two completed trials over one search space and
scikit-learn (the `importance` extra): without them that plot is skipped with one line saying why.
Optuna's plots use pyplot and switch its style; both are undone after each figure.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from meshgnn.boundary import one_line
from meshgnn.sweeps.study import Sweep


def param_file_name(param: str) -> str:
    return "objective_vs_" + re.sub(r"[^\w.-]+", "_", param) + ".png"


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """No ExperimentalWarning and no 'study has no completed trials' log lines from our calls
    (the report says itself what it has), and matplotlib's settings restored afterwards."""
    import matplotlib
    import optuna
    from optuna.exceptions import ExperimentalWarning

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings(), matplotlib.rc_context():
            warnings.simplefilter("ignore", ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def _save(axes: Any, path: Path) -> Path:
    """Save the figure of the Axes (or array of Axes) Optuna returned, and close it."""
    import matplotlib.pyplot as plt
    import numpy as np

    figure = np.ravel(axes)[0].figure
    figure.set_size_inches(max(figure.get_figwidth(), 7.0), max(figure.get_figheight(), 4.5))
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def importance_problem(sweep: Sweep) -> str | None:
    """Why no importance can be computed, or None: Optuna needs two completed trials that share
    their params (its evaluators use the intersection of the search spaces) and scikit-learn."""
    from importlib.util import find_spec

    done = [row for row in sweep.rows if row.state == "COMPLETE"]
    if len(done) < 2:
        return f"needs at least 2 completed trials, the study has {len(done)}"
    if not set.intersection(*(set(row.params) for row in done)):
        return "the completed trials share no param"
    if find_spec("sklearn") is None:
        return "needs scikit-learn (pip install 'meshgnn[importance]', or scikit-learn)"
    return None


def _importances(study: Any, target_name: str) -> Any:
    """Horizontal bars of optuna.importance.get_param_importances, most important on top."""
    import matplotlib.pyplot as plt
    from optuna.importance import MeanDecreaseImpurityImportanceEvaluator, get_param_importances

    importances = get_param_importances(study, evaluator=MeanDecreaseImpurityImportanceEvaluator(seed=0))
    names, values = list(importances)[::-1], list(importances.values())[::-1]
    figure, ax = plt.subplots()
    ax.barh(names, values)
    for y, value in enumerate(values):
        ax.annotate(f"{value:.2f}", (value, y), xytext=(3, 0), textcoords="offset points", va="center")
    ax.set_xlabel(f"importance for {target_name}")
    ax.set_title("Hyperparameter importances")
    return ax


def write_plots(sweep: Sweep) -> tuple[list[Path], list[str]]:
    """The PNGs written into the sweep folder, and one line for each plot that was skipped."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window, whatever the user's default backend
    from optuna.visualization import matplotlib as optuna_plots

    study, target_name = sweep.study, sweep.objective
    plots: list[tuple[str, Callable[[], Any]]] = [
        ("objective_per_trial.png", lambda: optuna_plots.plot_optimization_history(study, target_name=target_name))]
    plots += [(param_file_name(p), lambda p=p: optuna_plots.plot_slice(study, params=[p], target_name=target_name))
              for p in sweep.params]
    skipped = []
    problem = importance_problem(sweep)
    if problem is None:
        plots.append(("param_importances.png", lambda: _importances(study, target_name)))
    else:
        skipped.append(f"param_importances.png skipped: {problem}")
    paths = []
    for name, draw in plots:
        with _quiet_optuna():
            try:
                axes = draw()
            except (ValueError, RuntimeError) as exc:  # e.g. fANOVA: zero variance of the objective
                skipped.append(f"{name} skipped: {one_line(exc)}")
                continue
            paths.append(_save(axes, sweep.sweep_dir / name))
    return paths, skipped
