"""Validation and test passes: loss components and field errors in physical units, pooled
over DDP ranks. Separate from the training loop, which only calls them with its forward pass.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor
from torch_geometric.loader import DataLoader

from meshgnn.distributed import Dist
from meshgnn.training.divergence import TrainingDiverged
from meshgnn.training.field_errors import ErrorAccumulator, field_errors
from meshgnn.training.losses import CompositeLoss

Predict = Callable[[object], dict[str, Tensor]]


@torch.no_grad()
def evaluate(loader: DataLoader, prefix: str, predict: Predict, loss_fn: CompositeLoss, device: torch.device,
             dist: Dist) -> dict[str, float]:
    """Loss components and physical rel L2 per target, averaged over graphs."""
    sums: dict[str, float] = {}
    errors = ErrorAccumulator()
    graphs = 0
    for batch in loader:
        batch = batch.to(device, non_blocking=True)
        pred = predict(batch)
        _, logged = loss_fn(pred, batch)
        accumulate(sums, logged, batch.num_graphs)
        for name, _dim in loss_fn.targets:
            true = loss_fn.physical(name, batch.y[:, loss_fn.columns[name]])
            errs = field_errors(loss_fn.physical(name, pred[name]), true, batch.batch, batch.num_graphs)
            errors.add(name, {"rel_l2": errs["rel_l2"]})
        graphs += batch.num_graphs
    if dist.enabled:  # each rank evaluated its own shard: pool them
        parts = dist.all_gather_object((sums, graphs, errors))
        sums, graphs = add_rank_sums([part[:2] for part in parts])
        errors = ErrorAccumulator.combine([part[2] for part in parts])
    metrics = {f"{prefix}/{k}": v / graphs for k, v in sums.items()}
    metrics.update({f"{prefix}/{k}": v for k, v in errors.result(graphs).items()})
    return metrics


@torch.no_grad()
def test(loader: DataLoader, predict: Predict, loss_fn: CompositeLoss, device: torch.device, dist: Dist,
         best_epoch: int) -> dict[str, dict[str, float]]:
    """Per-target errors in physical units of the model (the weights of `best_epoch`) and of
    the two baselines; a non-finite model error raises, so no results are saved."""
    acc = {"model": ErrorAccumulator(), "baseline_mean": ErrorAccumulator(),
           "baseline_analytic": ErrorAccumulator()}
    graphs = 0
    for batch in loader:
        batch = batch.to(device, non_blocking=True)
        pred = predict(batch)
        for name, _dim in loss_fn.targets:
            cols = loss_fn.columns[name]
            true = loss_fn.physical(name, batch.y[:, cols])
            guesses = {"model": loss_fn.physical(name, pred[name]),
                       "baseline_mean": loss_fn.physical(name, torch.zeros_like(true))}
            if getattr(batch, "baseline", None) is not None:
                guesses["baseline_analytic"] = batch.baseline[:, cols]
            for who, guess in guesses.items():
                acc[who].add(f"test/{name}", field_errors(guess, true, batch.batch, batch.num_graphs))
        graphs += batch.num_graphs
    if dist.enabled:  # each rank tested its own shard: pool them
        parts = dist.all_gather_object((acc, graphs))
        acc = {who: ErrorAccumulator.combine([part[0][who] for part in parts]) for who in acc}
        graphs = sum(part[1] for part in parts)
    results = {who: a.result(graphs) for who, a in acc.items() if a.sums}
    for key, value in results.get("model", {}).items():
        if not math.isfinite(value):
            raise TrainingDiverged(f"{key} of the best weights is {value} (epoch {best_epoch}); no results "
                                   "are saved", key, best_epoch, value)
    return results


def add_rank_sums(parts: list[tuple[dict[str, float], int]]) -> tuple[dict[str, float], int]:
    """The ranks' (per-graph sums, graph count), added up in rank order (the same on every rank)."""
    pooled: dict[str, float] = {}
    for sums, _ in parts:
        for key, value in sums.items():
            pooled[key] = pooled.get(key, 0.0) + value
    return pooled, sum(graphs for _, graphs in parts)


def accumulate(sums: dict[str, float], logged: dict, weight: int) -> None:
    """Add a batch's logged values (floats, or tensors read here), weighted by its graphs."""
    for key, value in logged.items():
        sums[key] = sums.get(key, 0.0) + float(value) * weight
