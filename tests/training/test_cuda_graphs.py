"""CUDA graphs of the training step, on a GPU (skipped without CUDA; CI has none; the padding
they replay on is tested on the CPU in test_padding.py). Run on a GPU machine with
`pytest -m gpu tests/training/test_cuda_graphs.py`.

- A padded step replayed from a graph gives the eager step's gradients, update and logged
  values, bucket after bucket, replay after replay, with the learning rate changing between
  steps; compiled too.
- No training step waits for the device: a whole epoch of train.py (data on the GPU, eager
  or graphed) runs under `torch.cuda.set_sync_debug_mode("error")`, except the reads of the
  steps' logged values (every log_every_steps steps) and a new bucket's capture.
- A graphed run stopped mid-epoch resumes (capturing again) and ends like an uninterrupted
  one, and its checkpoint resumes eagerly.
"""

from __future__ import annotations

import copy
import json
import logging

import pytest
import torch

from conftest import ROOT, compose_config
from meshgnn.data.dataset import make_loader, move_to_device
from meshgnn.errors import Interrupted
from meshgnn.experiment import run
from meshgnn.models.build import compiled_forward
from meshgnn.training.cuda_graphs import PaddedSteps, stack_logged
from meshgnn.training.step_log import PendingSteps
from meshgnn.training.train_state import TrainerSettings
from meshgnn.training.trainer import Trainer
from training_parts import training_parts

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
DEVICE = torch.device("cuda")


def _trainer(model, loss_fn, precision: str, compiled: bool, tmp_path) -> Trainer:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4, foreach=True)
    settings = TrainerSettings(epochs=1, grad_clip=1.0, save_every=1, early_stop_patience=0, log_every_steps=50,
                               precision=precision)
    trainer = Trainer(model, loss_fn, optimizer, None, {}, settings, tmp_path, DEVICE, dict)
    if compiled:
        trainer.forward = compiled_forward(model)
    return trainer


@pytest.mark.parametrize("precision,compiled", [("fp32", False), ("bf16", False), ("fp32", True)])
def test_a_padded_graphed_step_gives_the_eager_step_bucket_after_bucket(data_cache, tmp_path, precision,
                                                                         compiled):
    parts = training_parts(data_cache)
    assert move_to_device(parts.data.splits, DEVICE, 1 << 30)
    loss_fn = parts.loss_fn.to(DEVICE)
    eager = _trainer(copy.deepcopy(parts.model).to(DEVICE), loss_fn, precision, compiled, tmp_path)
    graphed = _trainer(copy.deepcopy(parts.model).to(DEVICE), loss_fn, precision, compiled, tmp_path)
    steps = PaddedSteps(graphed.train_step, graphed.model, graphed.optimizer, 1.1, DEVICE, capture=True)
    loader = make_loader(parts.data.splits["train"], 3, True, 0, 0)  # 16 meshes: 5 of 3, then 1
    batches = [batch for epoch in range(3) for batch in (loader.batch_sampler.set_epoch(epoch) or loader)]
    tolerance = {"fp32": dict(rtol=1e-4, atol=1e-6), "bf16": dict(rtol=2e-2, atol=1e-4)}[precision]
    for i, batch in enumerate(batches):
        for trainer in (eager, graphed):  # a schedule: the captured step must follow the rate
            trainer.optimizer.param_groups[0]["lr"] = 1e-3 * 0.9 ** i
        before = [p.detach().clone() for p in eager.model.parameters()]
        logged = stack_logged(eager.train_step(batch))
        keys, row = steps(steps.pad(batch))
        assert keys[-1] == "grad_norm" and row.shape == logged.shape
        torch.testing.assert_close(row, logged, **tolerance)
        # compared without autograd: a tensor computed from a parameter with grad history keeps
        # that parameter's gradient accumulator alive, on this (default) stream, and a capture
        # reusing it would have to wait on the default stream, which invalidates the capture
        with torch.no_grad():
            _assert_same_step(eager, graphed, before, precision, tolerance)
        # the next step starts from one state again: each step is compared on its own
        with torch.no_grad():
            for p_eager, p_graphed in zip(eager.model.parameters(), graphed.model.parameters()):
                p_graphed.copy_(p_eager)
            for p_eager, p_graphed in zip(eager.model.parameters(), graphed.model.parameters()):
                for key, value in eager.optimizer.state[p_eager].items():
                    graphed.optimizer.state[p_graphed][key].copy_(value)
    assert 2 <= len(steps.captured) < len(batches)  # buckets captured, and batches replayed into them
    # between replays the optimiser is the eager one: float rates, not capturable
    assert all(type(g["lr"]) is float and not g["capturable"] for g in graphed.optimizer.param_groups)


def _assert_same_step(eager: Trainer, graphed: Trainer, before: list, precision: str, tolerance: dict) -> None:
    for p_eager, p_graphed, p_before in zip(eager.model.parameters(), graphed.model.parameters(), before):
        torch.testing.assert_close(p_graphed.grad, p_eager.grad, **tolerance)
        # the update, where the gradient is not ~0 (there Adam's first steps are sign(g) x lr,
        # and rounding decides the sign): element by element in fp32; in bf16, whose rounding
        # moves with the matrices' shapes, as a whole
        clear = p_eager.grad.abs() > 1e-2 * p_eager.grad.abs().max()
        ours, theirs = (p_graphed - p_before)[clear], (p_eager - p_before)[clear]
        if precision == "fp32":
            torch.testing.assert_close(ours, theirs, rtol=1e-2, atol=1e-7)
        else:
            assert float((ours - theirs).norm()) <= 0.1 * float(theirs.norm()) + 1e-7


DEBUG = ["trainer=debug", "data.num_samples=20", "model.hidden_dim=16", "logger=csv", "trainer.device=cuda",
         "trainer.image_every=0", f"paths.root_dir={ROOT}"]


def _launch(run_dir, data_cache, *args):
    overrides = [*DEBUG, f"paths.data_dir={data_cache}", f"paths.output_dir={run_dir}", *args]
    return run(compose_config(overrides), overrides)


def _allowing_syncs(function):
    """`function` with the sync check off while it runs (it reads the device on purpose)."""
    def wrapped(*args, **kwargs):
        mode = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode(0)
        try:
            return function(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode(mode)
    return wrapped


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_no_training_step_waits_for_the_device(tmp_path, data_cache, monkeypatch, caplog, cuda_graphs):
    train_epoch = Trainer._train_epoch

    def strict_second_epoch(self):
        if self.state.epoch >= 1:  # the first epoch compiles nothing but captures most buckets
            torch.cuda.set_sync_debug_mode("error")
        try:
            return train_epoch(self)
        finally:
            torch.cuda.set_sync_debug_mode(0)

    monkeypatch.setattr(Trainer, "_train_epoch", strict_second_epoch)
    monkeypatch.setattr(PendingSteps, "read", _allowing_syncs(PendingSteps.read))
    monkeypatch.setattr(PaddedSteps, "_record", _allowing_syncs(PaddedSteps._record))
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        _launch(run_dir, data_cache, "trainer.epochs=2", "trainer.log_every_steps=2",
                f"trainer.cuda_graphs={str(cuda_graphs).lower()}")
    log = caplog.text  # in-process: no train.log (Hydra's job logging writes it)
    assert "dataset held on cuda" in log
    assert ("captured the training step" in log) == cuda_graphs
    assert [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def _last_epoch(run_dir):
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])


def test_a_graphed_run_stopped_mid_epoch_resumes_and_ends_like_an_uninterrupted_one(tmp_path, data_cache, caplog):
    whole = tmp_path / "whole"
    _launch(whole, data_cache, "trainer.epochs=3", "trainer.cuda_graphs=true")
    parts = tmp_path / "parts"
    with pytest.raises(Interrupted):  # stops after its first step
        _launch(parts, data_cache, "trainer.epochs=3", "trainer.cuda_graphs=true", "trainer.max_time=1e-9")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        _launch(parts, data_cache, "trainer.epochs=3", "trainer.cuda_graphs=true", "trainer.max_time=0",
                f"resume={parts}")
    assert caplog.text.count("captured the training step for a bucket") >= 2  # captured again
    ended, reference = _last_epoch(parts), _last_epoch(whole)
    for key in ("train/loss/total", "val/loss/total", "val/temperature/rel_l2"):
        assert ended[key] == pytest.approx(reference[key], rel=2e-3), key
    # its checkpoint is an eager run's: an eager resume continues it
    _launch(parts, data_cache, "trainer.epochs=4", "trainer.cuda_graphs=false", f"resume={parts}")
    assert _last_epoch(parts)["epoch"] == 4
