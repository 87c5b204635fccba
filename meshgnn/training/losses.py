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

from meshgnn.segments import destination_offsets, segment_aggregate

@dataclass(frozen=True)
class GraphGeometry:
    """What the terms need of a batch: edges, their lengths, and where each graph's nodes and
    each node's incoming edges start.

    A batch holds its graphs' nodes one graph after another, and edges sorted by destination
    (the data pipeline's order), so every per-graph and per-node reduction here is over
    contiguous rows: sums over segments, where a scatter into a few dozen graph rows would
    have millions of atomic additions queue on the same addresses (a quarter of a
    million-node training step on an H200 went there).
    """

    node_ptr: Tensor  # [G + 1] first node of each graph
    dst_ptr: Tensor  # [N + 1] first incoming edge of each node
    edge_index: Tensor
    edge_len: Tensor
    # [G] 1 for a real graph, 0 for a pad graph of a padded batch (`meshgnn.training.padding`);
    # None: every graph is real.
    graph_weight: Tensor | None = None

    @classmethod
    def of(cls, batch) -> "GraphGeometry":
        return cls(batch.ptr, destination_offsets(batch.edge_index, batch.y.shape[0]), batch.edge_index,
                   batch.edge_len, batch.get("graph_weight"))

    @property
    def edge_ptr(self) -> Tensor:
        """[G + 1] first edge of each graph (edges of a graph are those into its nodes)."""
        return self.dst_ptr[self.node_ptr]

    def graph_mean(self, values: Tensor, ptr: Tensor) -> Tensor:
        """Mean of per-row values within each graph (rows `ptr[g]:ptr[g+1]`), then over graphs."""
        return self.over_graphs(graph_sums(values, ptr) / ptr.diff().clamp_min(1))

    def over_graphs(self, per_graph: Tensor) -> Tensor:
        """The mean of a [G] per-graph value over the real graphs. A pad graph's value is
        replaced, not multiplied, by 0, so it passes back a gradient of exactly 0."""
        if self.graph_weight is None:
            return per_graph.mean()
        real = self.graph_weight > 0
        return torch.where(real, per_graph, 0).sum() / self.graph_weight.sum()

    def edge_difference(self, field: Tensor) -> Tensor:
        """f_src - f_dst per edge. `index_select`, not `field[index]`: the latter's backward
        sorts the indices before accumulating, several milliseconds a term on a million nodes."""
        src, dst = self.edge_index
        return field.index_select(0, src) - field.index_select(0, dst)

    def edge_derivative(self, field: Tensor) -> Tensor:
        return self.edge_difference(field) / self.edge_len.clamp_min(1e-12).unsqueeze(-1)

    def laplacian(self, field: Tensor) -> Tensor:
        """(L f)_i = sum over neighbours j of (f_i - f_j): the combinatorial graph Laplacian."""
        return segment_aggregate(-self.edge_difference(field), self.edge_index, self.dst_ptr, "sum")


def graph_sums(values: Tensor, ptr: Tensor) -> Tensor:
    """[G]: sums of a batch's per-row values over each graph's rows.

    A difference of running sums: one pass over the rows whatever the graphs' sizes (a
    segment kernel gives each segment one thread per column, and a graph has tens of
    thousands of rows), in float64 so that differencing the totals loses nothing.
    """
    running = torch.cat([values.new_zeros(1, dtype=torch.float64), values.double().cumsum(0)])
    return (running[ptr[1:]] - running[ptr[:-1]]).to(values.dtype)


@dataclass(frozen=True)
class TargetPair:
    """Prediction and truth of one target, normalised and in physical units ([nodes, dim])."""

    pred: Tensor
    true: Tensor
    pred_phys: Tensor
    true_phys: Tensor


def l1(p: TargetPair, geo: GraphGeometry, eps: float) -> Tensor:
    return geo.graph_mean((p.pred - p.true).abs().mean(-1), geo.node_ptr)


def relative_l1(p: TargetPair, geo: GraphGeometry, eps: float) -> Tensor:
    err = graph_sums((p.pred_phys - p.true_phys).abs().sum(-1), geo.node_ptr)
    ref = graph_sums(p.true_phys.abs().sum(-1), geo.node_ptr)
    return geo.over_graphs(err / (ref + eps))


def smoothness(p: TargetPair, geo: GraphGeometry, eps: float) -> Tensor:
    excess = torch.relu(geo.edge_derivative(p.pred).abs() - geo.edge_derivative(p.true).abs())
    return geo.graph_mean(excess.mean(-1), geo.edge_ptr)


def gradient_consistency(p: TargetPair, geo: GraphGeometry, eps: float) -> Tensor:
    diff = geo.edge_derivative(p.pred - p.true)  # d(pred) - d(true): the operator is linear
    return geo.graph_mean(diff.abs().mean(-1), geo.edge_ptr)


def curvature(p: TargetPair, geo: GraphGeometry, eps: float) -> Tensor:
    diff = geo.laplacian(p.pred - p.true)  # L pred - L true
    return geo.graph_mean(diff.abs().mean(-1), geo.node_ptr)


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
