import json
import math

import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.image import imread

from meshgnn.diagnostics.curves import load_runs, run_labels
from meshgnn.diagnostics.plots import FILES, figures, plot_runs
from meshgnn.errors import UserError

TERMS = ("l1", "relative_l1", "smoothness", "gradient_consistency", "curvature")


def write_run(run_dir, epochs, targets, nan_at=None, norms=False):
    """A metrics.jsonl like the trainer writes: non-finite values as strings, curvature at 0."""
    run_dir.mkdir(parents=True)
    lines = []
    for epoch in range(1, epochs + 1):
        decay = 1.0 / epoch
        record = {"epoch": epoch, "lr": 1e-3 * 0.9 ** epoch, "epoch_time_s": 1.5, "consistency/grad": 0.1 * decay}
        for split, scale in (("train", 1.0), ("val", 1.2)):
            record[f"{split}/loss/total"] = scale * decay
            for term in TERMS:
                record[f"{split}/loss/{term}"] = 0.0 if term == "curvature" else scale * decay / 2
            for target in targets:
                record[f"{split}/{target}/l1"] = scale * decay / 3
        for target in targets:
            record[f"val/{target}/rel_l2"] = 0.05 * decay
        if norms:
            record.update({"train/grad_norm": 2.0 * decay, "train/param_norm": 10.0 + epoch,
                           "train/loss/oscillation": 0.01 * decay, "val/loss/oscillation": 0.02 * decay})
        if epoch == nan_at:
            record["val/loss/total"] = "nan"
            record["train/loss/smoothness"] = "inf"
        lines.append(json.dumps(record))
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run_dir


@pytest.fixture
def two_runs(tmp_path):
    old = write_run(tmp_path / "runs" / "baseline", epochs=5, targets=["temperature", "heat_flux"], nan_at=3)
    new = write_run(tmp_path / "runs" / "wider", epochs=9, targets=["temperature"], norms=True)
    return [old, new]


def test_writes_every_figure_as_a_png(tmp_path, two_runs):
    rc_before = dict(matplotlib.rcParams)
    out = tmp_path / "plots" / "nested"  # created if missing
    paths = plot_runs(two_runs, out)
    assert [p.name for p in paths] == list(FILES)
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)  # nothing else, no temp files left
    for path in paths:
        image = imread(path)
        assert image.ndim == 3 and image.shape[2] in (3, 4) and image.shape[0] > 100 and image.shape[1] > 100
        assert (image[..., :3] < 0.9).any(), f"{path.name} is blank"
    assert dict(matplotlib.rcParams) == rc_before


def test_figures_show_each_term_target_and_norm(two_runs):
    figs = figures(load_runs(two_runs))
    total = figs["loss_total.png"].axes[0]
    assert total.get_yscale() == "log"  # the NaN is a gap and does not force a linear axis
    legend = [t.get_text() for t in total.get_legend().get_texts()]
    assert legend[:2] == ["baseline", "wider"] and {"train", "val", "best val"} <= set(legend)

    def titles(name):
        return [ax.get_title() for ax in figs[name].axes if ax.get_visible()]

    assert titles("loss_terms.png") == ["l1", "relative_l1", "smoothness", "gradient_consistency",
                                        "curvature (all zero)", "oscillation"]
    assert titles("targets.png") == ["temperature: l1", "heat_flux: l1",
                                     "temperature: val relative L2", "heat_flux: val relative L2"]
    assert titles("optimisation.png") == ["learning rate", "gradient norm (train)", "parameter norm"]
    smoothness = figs["loss_terms.png"].axes[2]
    train_baseline = smoothness.get_lines()[0].get_ydata()
    assert math.isnan(train_baseline[2]) and np.isfinite(np.delete(train_baseline, 2)).all()


def test_optimisation_without_norms_has_only_lr(tmp_path):
    run = write_run(tmp_path / "old", epochs=3, targets=["temperature"])
    figs = figures(load_runs([run]))
    assert [ax.get_title() for ax in figs["optimisation.png"].axes] == ["learning rate"]


def test_labels_are_short_and_unique(tmp_path):
    a, b = tmp_path / "multirun" / "0", tmp_path / "multirun" / "1"
    assert run_labels([a, b]) == ["0", "1"]
    assert run_labels([a]) == ["0"]
    assert run_labels([tmp_path / "x" / "run", tmp_path / "y" / "run"]) == ["x/run", "y/run"]
    assert run_labels([a, a]) == ["0", "0 (2)"]
    assert run_labels([a, a / "inner"]) == ["0", "0/inner"]


def test_missing_metrics_is_one_line_naming_the_path(tmp_path, two_runs):
    empty_dir = tmp_path / "not_trained"
    empty_dir.mkdir()
    with pytest.raises(UserError) as exc:
        plot_runs([two_runs[0], empty_dir], tmp_path / "out")
    message = str(exc.value)
    assert "\n" not in message and str(empty_dir) in message and "train it first" in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("case", ["missing", "no_epochs", "broken_line"])
def test_other_unusable_run_dirs_are_one_line(tmp_path, case):
    run = tmp_path / "run"
    if case != "missing":
        run.mkdir()
        (run / "metrics.jsonl").write_text('{"epoch": 1, "lr": 0.001}\n{"epoch": 2, "l' if case == "broken_line" else "")
    with pytest.raises(UserError) as exc:
        plot_runs([run], tmp_path / "out")
    assert "\n" not in str(exc.value) and str(run) in str(exc.value)


def visible_tick_labels(ax, minor):
    lo, hi = sorted(ax.get_ylim())
    return [t.get_text() for t in ax.yaxis.get_ticklabels(minor=minor)
            if t.get_text() and lo <= t.get_position()[1] <= hi]


def test_log_axis_labels_never_repeat(tmp_path):
    """Narrow ranges (a rel L2 within 0.205-0.225, a parameter norm within 31.6088-31.6102, as
    short real runs log) once printed every minor tick as "2e-01" or "3.161e1"."""
    run = write_run(tmp_path / "run", epochs=9, targets=["temperature"], norms=True)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for i, record in enumerate(records):
        record["val/temperature/rel_l2"] = 0.225 - 0.0025 * i
        record["train/param_norm"] = 31.6088 + 0.000175 * i
        record["train/grad_norm"] = 10.0 ** (i * 6 / 8 - 3)  # 1e-3 ... 1e3
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    figs = figures(load_runs([run]))
    for name, figure in figs.items():
        FigureCanvasAgg(figure).draw()
        for ax in figure.axes:
            if ax.get_visible() and ax.get_yscale() == "log":
                labels = visible_tick_labels(ax, minor=False) + visible_tick_labels(ax, minor=True)
                assert labels and len(labels) == len(set(labels)), (name, ax.get_title(), labels)
    narrow = next(ax for ax in figs["targets.png"].axes if ax.get_title() == "temperature: val relative L2")
    assert {"0.205", "0.21", "0.225"} <= set(visible_tick_labels(narrow, minor=True))
    wide = next(ax for ax in figs["optimisation.png"].axes if ax.get_title() == "gradient norm (train)")
    assert visible_tick_labels(wide, minor=False) == ["0.001", "0.01", "0.1", "1", "10", "100", "1000"]
    assert visible_tick_labels(wide, minor=True) == []  # minor ticks of a wide axis stay unlabelled
