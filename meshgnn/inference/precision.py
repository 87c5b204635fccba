"""Cheaper inference: lower-precision arithmetic and pruned weights, both opt-in and measured
(`benchmarks/inference.py` prints what each costs in accuracy and gains in time)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.utils import prune

from meshgnn.errors import UserError
from meshgnn.training.precision import autocast

PRECISIONS = ("fp32", "bf16", "fp16")


@contextlib.contextmanager
def inference_precision(precision: str, device: torch.device) -> Iterator[None]:
    """Autocast matrix products to `precision`; LayerNorm, reductions, the residual sum and the
    outputs' use stay in float32, so bf16/fp16 cost little accuracy (the weights need not change)."""
    if precision not in PRECISIONS:
        raise UserError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    with torch.inference_mode(), autocast(precision, device):
        yield


def prune_linear_weights(model: nn.Module, amount: float) -> int:
    """L1 unstructured pruning of every nn.Linear weight (the `amount` smallest-magnitude
    fraction of each layer set to zero), made permanent. Returns the number of zeroed weights."""
    if not 0.0 <= amount < 1.0:
        raise UserError(f"prune amount {amount} must be in [0, 1), e.g. 0.2 for 20 %")
    zeroed = 0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            prune.l1_unstructured(module, "weight", amount=amount)
            prune.remove(module, "weight")
            zeroed += int((module.weight == 0).sum())
    return zeroed
