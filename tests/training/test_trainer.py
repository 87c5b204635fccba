"""Non-finite and diverged epochs are never saved, and the run stops in one line (exit 2)."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT, compose_config
from meshgnn.diagnostics.runs import diagnose_path
from meshgnn.experiment import run
from meshgnn.training.checkpoint import load_checkpoint
from meshgnn.training.metrics_log import read_metrics
from meshgnn.training.trainer import TrainingDiverged

TINY = ["trainer=debug", "data.num_samples=20", "model.hidden_dim=16", f"paths.root_dir={ROOT}"]


def launch(run_dir, data_cache, *args):
    """In-process train.py: the overrides also go to run(), as Hydra passes them (resume= applies
    them over the checkpoint's config)."""
    overrides = [*TINY, f"paths.data_dir={data_cache}", f"paths.output_dir={run_dir}", *args]
    return run(compose_config(overrides), overrides)


def test_a_nan_validation_epoch_is_not_saved_and_the_diagnosis_says_diverged(tmp_path, data_cache):
    run_dir = tmp_path / "run"
    # one step an epoch: its loss is finite, the update it makes is not, so validation is NaN
    with pytest.raises(TrainingDiverged) as info:
        launch(run_dir, data_cache, "data.batch_size=16", "optim.lr=1e9", "trainer.grad_clip=0")
    message = str(info.value)
    assert message.startswith("val/") and "at epoch 1, which is not saved" in message, message
    assert "optim.lr" in message and "trainer.grad_clip=1.0" in message and "\n" not in message
    assert info.value.exit_code == 2
    assert read_metrics(run_dir) == [] and list((run_dir / "checkpoints").iterdir()) == []
    stopped = json.loads((run_dir / "run.json").read_text())["launches"][-1]["stopped"]
    assert stopped["reason"] == "diverged" and stopped["epoch"] == 1
    report = diagnose_path(run_dir)
    assert "1 problem(s): diverged" in report[0] and not any(line.startswith("ok diverged") for line in report)
    assert json.loads((run_dir / "diagnosis.json").read_text())["problems"] == ["diverged"]


def test_divergence_is_measured_against_the_first_step_of_the_lineage_across_resume(tmp_path, data_cache):
    run_dir = tmp_path / "run"
    launch(run_dir, data_cache, "trainer.epochs=1")
    reference = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["divergence_reference"]
    # the first step's training loss: of the order of the first epoch's mean, never of a later one
    assert reference > read_metrics(run_dir)[0]["train/loss/total"] / 10
    # any loss is above 1e-6 x the first step's: epoch 2 stops at its first step, judged against
    # the reference the checkpoint carried over
    with pytest.raises(TrainingDiverged) as info:
        launch(run_dir, data_cache, "trainer.epochs=2", "trainer.divergence_factor=1e-6", f"resume={run_dir}")
    message = str(info.value)
    assert f"the run's first training loss {reference:.4g}: the run diverged (epoch 2 is not saved" in message
    assert [r["epoch"] for r in read_metrics(run_dir)] == [1]
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["epoch"] == 1
    assert "PROBLEM diverged" in "\n".join(diagnose_path(run_dir))
