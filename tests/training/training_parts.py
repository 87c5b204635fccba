"""A small heat2d dataset and a model, loss and optimiser for tests that drive training steps
directly (padding on the CPU, CUDA graphs on a GPU), built as train.py builds them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from conftest import ROOT, compose_config
from meshgnn.data.dataset import load_datasets
from meshgnn.data.features import MeshDatasets, ModelInputs
from meshgnn.models.build import build_model
from meshgnn.models.edge_gnn import EdgeGNN
from meshgnn.training.losses import TERMS, CompositeLoss

# every loss term weighted, so each one's part in a step is checked through the total
ALL_TERMS = ["loss.relative_l1_weight=0.5", "loss.smoothness_weight=0.1", "loss.gradient_consistency_weight=0.2",
             "loss.curvature_weight=0.05"]


@dataclass
class Parts:
    data: MeshDatasets
    model: EdgeGNN
    loss_fn: CompositeLoss


def training_parts(data_cache, model: str = "multiscale_gnn", *overrides: str) -> Parts:
    """debug heat2d (20 meshes: 16 for training), a 16-wide `model` seeded 0, every loss term."""
    cfg = compose_config(["trainer=debug", "data.num_samples=20", f"model={model}", "model.hidden_dim=16",
                          *ALL_TERMS, *overrides, f"paths.root_dir={ROOT}", f"paths.data_dir={data_cache}"])
    data = load_datasets(cfg.data, cfg.paths.data_dir, ModelInputs.of_model(cfg.model))
    targets = [(f.name, f.dim) for f in data.features.source.targets]
    torch.manual_seed(0)
    net = build_model(cfg.model, data.node_dim, data.edge_dim, targets, residual=data.features.residual)
    loss_fn = CompositeLoss(targets, {t: cfg.loss[f"{t}_weight"] for t in TERMS}, dict(cfg.loss.target_weights),
                            data.normalizer.mean["y"], data.normalizer.std["y"], cfg.loss.eps)
    return Parts(data, net, loss_fn)
