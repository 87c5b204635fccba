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
    compiled = torch.compile(model.forward_tensors, dynamic=True, backend=backend)

    def forward(batch: Any) -> tuple[dict, dict]:
        pred, h = compiled(*model.batch_inputs(batch))
        return pred, {"node_latent": h}

    return forward
