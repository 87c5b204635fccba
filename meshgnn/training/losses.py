"""CompositeLoss: value, relative, gradient, curvature and smoothness terms per target.

Definitions (DESIGN.md, "Loss terms"): everything on normalised values except relative_l1,
which is in physical units so that it means "fraction of the field's size". For an edge (i, j)
of length l_ij, d(f)_ij = (f_i - f_j) / l_ij. Every term is averaged within each graph first
and then over graphs, so a large mesh does not outweigh a small one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

@dataclass(frozen=True)
class GraphGeometry:
    """What the terms need of a batch: node -> graph, edges, their lengths."""

    node_graph: Tensor
    edge_index: Tensor
    edge_len: Tensor
    num_graphs: int

    @classmethod
    def of(cls, batch) -> "GraphGeometry":
        return cls(batch.batch, batch.edge_index, batch.edge_len, int(batch.num_graphs))

    @property
    def edge_graph(self) -> Tensor:
        return self.node_graph[self.edge_index[0]]

    def graph_mean(self, values: Tensor, owner: Tensor) -> Tensor:
        """Mean of per-row values within each graph, then over graphs."""
        return scatter(values, owner, dim=0, dim_size=self.num_graphs, reduce="mean").mean()

    def edge_derivative(self, field: Tensor) -> Tensor:
        src, dst = self.edge_index
        return (field[src] - field[dst]) / self.edge_len.clamp_min(1e-12).unsqueeze(-1)

    def laplacian(self, field: Tensor) -> Tensor:
        """(L f)_i = sum over neighbours j of (f_i - f_j): the combinatorial graph Laplacian."""
        src, dst = self.edge_index
        return scatter(field[dst] - field[src], dst, dim=0, dim_size=field.size(0), reduce="sum")


@dataclass(frozen=True)
class TargetPair:
    """Prediction and truth of one target, normalised and in physical units ([nodes, dim])."""

    pred: Tensor
    true: Tensor
    pred_phys: Tensor
    true_phys: Tensor


def l1(p: TargetPair, geo: GraphGeometry, eps: float) -> Tensor:
    return geo.graph_mean((p.pred - p.true).abs().mean(-1), geo.node_graph)


def relative_l1(p: TargetPair, geo: GraphGeometry, eps: float) -> Tensor:
    err = scatter((p.pred_phys - p.true_phys).abs().sum(-1), geo.node_graph, dim=0,
                  dim_size=geo.num_graphs, reduce="sum")
    ref = scatter(p.true_phys.abs().sum(-1), geo.node_graph, dim=0, dim_size=geo.num_graphs,
                  reduce="sum")
    return (err / (ref + eps)).mean()


def smoothness(p: TargetPair, geo: GraphGeometry, eps: float) -> Tensor:
    excess = torch.relu(geo.edge_derivative(p.pred).abs() - geo.edge_derivative(p.true).abs())
    return geo.graph_mean(excess.mean(-1), geo.edge_graph)


def gradient_consistency(p: TargetPair, geo: GraphGeometry, eps: float) -> Tensor:
    diff = geo.edge_derivative(p.pred) - geo.edge_derivative(p.true)
    return geo.graph_mean(diff.abs().mean(-1), geo.edge_graph)


def curvature(p: TargetPair, geo: GraphGeometry, eps: float) -> Tensor:
    diff = geo.laplacian(p.pred) - geo.laplacian(p.true)
    return geo.graph_mean(diff.abs().mean(-1), geo.node_graph)


TERM_FUNCTIONS = {"l1": l1, "relative_l1": relative_l1, "smoothness": smoothness,
                  "gradient_consistency": gradient_consistency, "curvature": curvature}
TERMS = tuple(TERM_FUNCTIONS)


class CompositeLoss(nn.Module):
    """total = sum_t w_t * sum_term weight_term * term_t; returns (total, components to log).

    Components: `loss/{term}` (summed over targets with their weights, before the term
    weight), `{target}/l1`, and `loss/total`. Terms whose weight is 0 are still computed, under
    no_grad, so they can be watched without steering training.
    """

    def __init__(self, targets: Sequence[tuple[str, int]], term_weights: dict[str, float],
                 target_weights: dict[str, float], target_mean: Tensor, target_std: Tensor,
                 eps: float) -> None:
        super().__init__()
        self.targets = [(name, int(dim)) for name, dim in targets]
        self.term_weights = {term: float(term_weights[term]) for term in TERMS}
        self.target_weights = {name: float(target_weights.get(name, 1.0)) for name, _ in self.targets}
        self.register_buffer("target_mean", target_mean.float().clone())
        self.register_buffer("target_std", target_std.float().clone())
        self.eps = eps
        offsets = torch.tensor([0] + [dim for _, dim in self.targets]).cumsum(0).tolist()
        self.columns = {name: slice(offsets[i], offsets[i + 1]) for i, (name, _) in enumerate(self.targets)}

    def physical(self, name: str, values: Tensor) -> Tensor:
        cols = self.columns[name]
        return values * self.target_std[cols] + self.target_mean[cols]

    def forward(self, pred: dict[str, Tensor], batch) -> tuple[Tensor, dict[str, Tensor]]:
        geo = GraphGeometry.of(batch)
        total = batch.y.new_zeros(())
        logged = {f"loss/{term}": batch.y.new_zeros(()) for term in TERMS}
        for name, _ in self.targets:
            true = batch.y[:, self.columns[name]]
            w_t = self.target_weights[name]
            for term, function in TERM_FUNCTIONS.items():
                weight = self.term_weights[term]
                if weight == 0:
                    with torch.no_grad():
                        value = function(self._pair(name, pred[name].detach(), true), geo, self.eps)
                else:
                    value = function(self._pair(name, pred[name], true), geo, self.eps)
                    total = total + w_t * weight * value
                logged[f"loss/{term}"] = logged[f"loss/{term}"] + w_t * value.detach()
                if term == "l1":
                    logged[f"{name}/l1"] = value.detach()
        logged["loss/total"] = total.detach()
        return total, logged

    def _pair(self, name: str, pred: Tensor, true: Tensor) -> TargetPair:
        return TargetPair(pred, true, self.physical(name, pred), self.physical(name, true))
