"""The one place a model config becomes a model."""

from __future__ import annotations

from typing import Sequence

from omegaconf import DictConfig
from torch import nn

from meshgnn.models.edge_gnn import EdgeGNN


def build_model(cfg: DictConfig, node_dim: int, edge_dim: int, targets: Sequence[tuple[str, int]],
                residual: bool | None = None) -> nn.Module:
    """`residual` is whether the data carries a baseline to correct (None: `cfg.residual`)."""
    return EdgeGNN(node_dim, edge_dim, targets, cfg.hidden_dim, cfg.num_layers, cfg.mlp_layers,
                   cfg.dropout, cfg.aggregation, cfg.num_levels,
                   cfg.residual if residual is None else residual)
