"""Runs read for plotting: readable labels from a run's folder and overrides; a real staged run
drawn as one curve over its stages."""

import json

import numpy as np
import pytest
import yaml

from meshgnn.cli import main as meshgnn
from meshgnn.diagnostics.curves import load_runs, run_labels
from meshgnn.diagnostics.plots import FILES, figures
from staged_run import STAGE_EPOCHS, two_stage_run_dir


def fake_run(run_dir, *launches):
    """A run directory with one epoch and a Hydra snapshot of each launch's overrides."""
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train/loss/total": 1.0}) + "\n")
    for number, overrides in enumerate(launches, start=1):
        folder = run_dir / ".hydra" / "launches" / f"{number:02d}"
        folder.mkdir(parents=True)
        (folder / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if launches:
        (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(launches[-1]))
    return run_dir


def test_runs_are_named_by_their_folder_under_outputs_and_the_overrides_that_differ(tmp_path):
    day = tmp_path / "outputs" / "2026-12-01"
    common = ["model.hidden_dim=64", f"paths.data_dir={tmp_path}", "hydra.run.dir=somewhere"]
    a = fake_run(day / "10-00-00", ["optim.lr=1e-3", *common])
    # resumed with a new rate: the resume's change wins, resume= itself is no setting
    b = fake_run(day / "11-00-00", ["optim.lr=1e-3", *common], [f"resume={day / '11-00-00'}", "optim.lr=3e-4"])
    c = fake_run(tmp_path / "multirun" / "2026-12-01" / "12-00-00" / "3", ["+loss.target_weights.temperature=2.0"])
    assert run_labels([a, b]) == ["2026-12-01/10-00-00 optim.lr=1e-3", "2026-12-01/11-00-00 optim.lr=3e-4"]
    labels = run_labels([a, b, c])
    assert labels == ["2026-12-01/10-00-00 model.hidden_dim=64 optim.lr=1e-3",
                      "2026-12-01/11-00-00 model.hidden_dim=64 optim.lr=3e-4",
                      "2026-12-01/12-00-00/3 loss.target_weights.temperature=2.0"]
    assert run_labels([a]) == ["2026-12-01/10-00-00 model.hidden_dim=64 optim.lr=1e-3"]  # alone: all its own


@pytest.mark.slow
def test_a_staged_run_is_one_curve_with_its_stages_marked(tmp_path_factory, data_cache, tmp_path, capsys):
    run_dir = two_stage_run_dir(tmp_path_factory, data_cache)
    (run,) = load_runs([run_dir])
    assert run.epochs.tolist() == [1.0, 2.0, 3.0, 4.0]  # epochs continue across the stages
    assert [(name, float(epoch)) for name, epoch in run.stages] == [("stage1", 1.0), ("stage2", 3.0)]
    assert run.label.startswith("2026-12-02/10-00-00 ") and "experiment=two_stage" in run.label
    total = figures([run])["loss_total.png"].axes[0]
    line = total.get_lines()[0]
    assert np.isfinite(line.get_ydata()).all() and len(line.get_ydata()) == STAGE_EPOCHS["stage2"]
    assert [t.get_text().strip() for t in total.texts] == ["stage2"]
    assert any(list(l.get_xdata()) == [2.5, 2.5] for l in total.get_lines())  # the stage boundary

    meshgnn(["plot", str(run_dir), "--out", str(tmp_path / "plots")])
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(FILES)
    assert capsys.readouterr().out.count("wrote ") == len(FILES)
