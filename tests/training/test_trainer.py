"""Non-finite and diverged epochs are never saved, and the run stops in one line (exit 2);
best.ckpt and early stopping follow the objective; a resumed epoch's progress counts the
whole epoch."""

from __future__ import annotations

import io
import json
import logging
import re
import sys

import pytest

from conftest import ROOT, compose_config
from meshgnn.diagnostics.runs import diagnose_path
from meshgnn.errors import Interrupted, UserError
from meshgnn.experiment import run
from meshgnn.training.checkpoint import load_checkpoint
from meshgnn.training.metrics_log import read_metrics
from meshgnn.training.divergence import TrainingDiverged

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


def test_best_checkpoint_follows_the_objective_in_its_direction_and_resume_keeps_its_best(
        tmp_path, data_cache, caplog):
    run_dir, objective = tmp_path / "run", "val/temperature/rel_l2"
    maximised = [f"objective={objective}", "objective_mode=max"]
    returned = launch(run_dir, data_cache, "trainer.epochs=2", *maximised)
    values = [record[objective] for record in read_metrics(run_dir)]
    best = load_checkpoint(run_dir / "checkpoints" / "best.ckpt")
    assert best["epoch"] == values.index(max(values)) + 1
    assert best["monitor"] == {"metric": objective, "mode": "max", "best": max(values)}
    assert returned == max(values)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["best_epoch"] == best["epoch"] and results[f"best/{objective}"] == max(values)

    launch(run_dir, data_cache, "trainer.epochs=3", *maximised, f"resume={run_dir}")
    values = [record[objective] for record in read_metrics(run_dir)]
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["monitor"]["best"] == max(values)
    assert load_checkpoint(run_dir / "checkpoints" / "best.ckpt")["epoch"] == values.index(max(values)) + 1

    # another objective (minimised) on resume: the best restarts, and follows it from epoch 4 on
    changed = "val/heat_flux/rel_l2"
    with caplog.at_level(logging.WARNING):
        launch(run_dir, data_cache, "trainer.epochs=5", f"objective={changed}", "objective_mode=min",
               f"resume={run_dir}")
    assert any("best.ckpt and early stopping restart" in r.getMessage() for r in caplog.records)
    since = [record[changed] for record in read_metrics(run_dir)][3:]
    best = load_checkpoint(run_dir / "checkpoints" / "best.ckpt")
    assert best["epoch"] == 4 + since.index(min(since))
    assert best["monitor"] == {"metric": changed, "mode": "min", "best": min(since)}


def test_an_objective_measured_only_at_test_time_is_refused_before_training(tmp_path, data_cache):
    with pytest.raises(UserError) as info:
        launch(tmp_path / "run", data_cache, "objective=test/temperature/rel_l2")
    message = str(info.value)
    assert "objective=test/temperature/rel_l2" in message and "objective=val/temperature/rel_l2" in message
    assert "\n" not in message and not (tmp_path / "run" / "checkpoints").exists()


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, so the trainer draws its progress bar into it."""

    def isatty(self) -> bool:
        return True


def test_a_resumed_epoch_counts_its_progress_and_eta_over_the_whole_epoch(tmp_path, data_cache, monkeypatch,
                                                                       caplog):
    run_dir = tmp_path / "run"
    stop_after_one_step = ["trainer.epochs=1", "trainer.max_time=0.001"]
    with pytest.raises(Interrupted):
        launch(run_dir, data_cache, *stop_after_one_step)
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["epoch_progress"]["batches_done"] == 1

    terminal = Terminal()  # 16 training graphs in batches of 4: 4 batches, the second one trained now
    monkeypatch.setattr(sys, "stderr", terminal)
    with pytest.raises(Interrupted):
        launch(run_dir, data_cache, *stop_after_one_step, f"resume={run_dir}")
    monkeypatch.undo()
    bar = terminal.getvalue()
    # drawn at 1/4 (the batch done before) and, if tqdm redrew within its 0.1 s interval, 2/4;
    # never a bar without a total or a negative ETA
    drawn = re.findall(r"\| ([12])/4 \[([^,\]]*)", bar)
    assert drawn and all("-" not in eta for _, eta in drawn), bar

    with caplog.at_level(logging.INFO):  # not a terminal: a log line every step, with the epoch's ETA
        launch(run_dir, data_cache, "trainer.epochs=1", "trainer.log_every_steps=1", f"resume={run_dir}")
    etas = [r.getMessage().rsplit("ETA ", 1)[1] for r in caplog.records if " ETA " in r.getMessage()]
    assert len(etas) == 2 and all(re.fullmatch(r"\d+:\d\d:\d\d", eta) for eta in etas), etas
