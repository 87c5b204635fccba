"""The one place a model config becomes a model."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from omegaconf import DictConfig
from torch import nn

from meshgnn.models.edge_gnn import EdgeGNN


def build_model(cfg: DictConfig, node_dim: int, edge_dim: int, targets: Sequence[tuple[str, int]],
                residual: bool | None = None) -> nn.Module:
    """`residual` is whether the data carries a baseline to correct (None: `cfg.residual`)."""
    return EdgeGNN(node_dim, edge_dim, targets, cfg.hidden_dim, cfg.num_layers, cfg.mlp_layers,
                   cfg.dropout, cfg.aggregation, cfg.num_levels,
                   cfg.residual if residual is None else residual)


def compiled_forward(model: EdgeGNN, backend: str = "inductor") -> Callable[[Any], tuple[dict, dict]]:
    """`model(batch)` with the tensor computation compiled by `torch.compile` (dynamic shapes:
    meshes and batches differ in size). The batch is unpacked eagerly, so the compiled graph
    sees plain tensors only; parameters stay the model's own, so checkpoints are unchanged.
    `backend` other than inductor is for tests ("eager" traces without generating code)."""
    return _batch_forward(model, torch.compile(model.forward_tensors, dynamic=True, backend=backend))


def _batch_forward(model: EdgeGNN, tensor_forward: Callable[..., tuple[dict, Any]]) -> Callable[[Any], tuple[dict, dict]]:
    """`model(batch)` through `tensor_forward` (a compiled or DDP-wrapped `forward_tensors`):
    the batch unpacked eagerly, the result shaped as `EdgeGNN.forward` returns it."""

    def forward(batch: Any) -> tuple[dict, dict]:
        pred, h = tensor_forward(*model.batch_inputs(batch))
        return pred, {"node_latent": h}

    return forward


class TensorForward(nn.Module):
    """The model's tensor-only forward as a module: what DDP wraps when the forward is compiled."""

    def __init__(self, model: EdgeGNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, *tensors: Any) -> tuple[dict, Any]:
        return self.model.forward_tensors(*tensors)


def data_parallel_forward(model: EdgeGNN, device: torch.device,
                          compile_model: bool) -> tuple[Callable[[Any], tuple[dict, dict]], Callable[[Any], tuple[dict, dict]]]:
    """(training forward, evaluation forward) of `model` under DistributedDataParallel.

    Training goes through DDP, which averages the gradients over ranks during backward.
    Evaluation runs on each rank's own shard, and shards may differ in size there, so it uses
    the module itself: no collective can hide in its forward passes. Compiled, the tensor
    forward is wrapped in DDP and the DDP module compiled (dynamo splits the graph at DDP's
    gradient buckets so communication overlaps backward); evaluation gets its own compiled
    forward. The parameters stay the model's own either way, so checkpoints are unchanged.
    """
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    if not compile_model:
        return DistributedDataParallel(model, device_ids=device_ids), model
    compiled = torch.compile(DistributedDataParallel(TensorForward(model), device_ids=device_ids),
                             dynamic=True)
    return _batch_forward(model, compiled), compiled_forward(model)
