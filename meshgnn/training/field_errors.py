"""Errors of predicted fields in physical units, per graph, for validation and test tables.

One function serves the network and both baselines, so their numbers are comparable.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.utils import scatter


def field_errors(pred: Tensor, true: Tensor, node_graph: Tensor, num_graphs: int) -> dict[str, Tensor]:
    """Per graph: rel_l2 = ||pred - true|| / ||true||, mae, max_abs (vector fields by norm)."""
    diff = pred.double() - true.double()
    sq_err = scatter(diff.pow(2).sum(-1), node_graph, dim=0, dim_size=num_graphs, reduce="sum")
    sq_ref = scatter(true.double().pow(2).sum(-1), node_graph, dim=0, dim_size=num_graphs, reduce="sum")
    err_norm = diff.norm(dim=-1)
    return {
        "rel_l2": (sq_err / sq_ref.clamp_min(1e-300)).sqrt(),
        "mae": scatter(diff.abs().mean(-1), node_graph, dim=0, dim_size=num_graphs, reduce="mean"),
        "max_abs": scatter(err_norm, node_graph, dim=0, dim_size=num_graphs, reduce="max"),
    }


class ErrorAccumulator:
    """Summarises per-graph errors over batches: mean of rel_l2 and mae, max of max_abs, and
    the median of rel_l2 (`rel_l2_median`), which a few hard meshes cannot drag up."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.maxes: dict[str, float] = {}
        self.rel_l2: dict[str, list[Tensor]] = {}

    def add(self, prefix: str, errors: dict[str, Tensor]) -> None:
        for name, values in errors.items():
            key = f"{prefix}/{name}"
            if name == "max_abs":
                self.maxes[key] = max(self.maxes.get(key, 0.0), float(values.max()))
            else:
                self.sums[key] = self.sums.get(key, 0.0) + float(values.sum())
            if name == "rel_l2":
                self.rel_l2.setdefault(f"{key}_median", []).append(values.detach().cpu())

    @classmethod
    def combine(cls, parts: "list[ErrorAccumulator]") -> "ErrorAccumulator":
        """One accumulator over the graphs of all `parts` (the ranks' shards under DDP): sums
        added, maxima of maxima, the per-graph rel_l2 values pooled for the median."""
        out = cls()
        for part in parts:
            for key, value in part.sums.items():
                out.sums[key] = out.sums.get(key, 0.0) + value
            for key, value in part.maxes.items():
                out.maxes[key] = max(out.maxes.get(key, 0.0), value)
            for key, values in part.rel_l2.items():
                out.rel_l2.setdefault(key, []).extend(values)
        return out

    def result(self, num_graphs: int) -> dict[str, float]:
        out = {k: v / max(1, num_graphs) for k, v in self.sums.items()}
        out.update(self.maxes)
        out.update({k: float(torch.cat(v).median()) for k, v in self.rel_l2.items()})
        return out
