"""Padding a batch up to a size bucket, so that one captured CUDA graph serves many batches.

A CUDA graph replays its kernels on fixed shapes and addresses, and batches of meshes differ
in size. Each batch is therefore padded, row kind by row kind (its graphs, nodes and edges,
and every coarse level's nodes and edges), up to the capacities of a bucket; batches of the
same bucket then share one graph (`meshgnn.training.cuda_graphs`).

The row kinds are read from the batch itself, as PyG collated it: attributes whose per-graph
row boundaries (`_slice_dict`) are the same are one kind. An index attribute is one PyG
offsets when batching (`__inc__`: `edge_index`, `cluster_l`, `edge_index_l`); it points into
the mesh nodes, or into the rows of the attribute the data class names (`index_rows`:
`nodes_l` for a coarse level's). Nothing here names the data's attributes, so a source or
model input added later pads without changes.

Why padding changes neither the loss nor the gradients: the pad rows form a piece of the
batch that no real row can reach. Every index pad entry points at the last pad row of the
kind it indexes (pad edges are self-loops on the last pad node, pad nodes pool into the last
pad cluster), so real nodes aggregate, pool and unpool exactly the rows they did before; the
pad rows belong to pad graphs after the real ones, which `graph_weight` (1 real, 0 pad)
leaves out of every mean over graphs. All pad values are zeros, so the pad piece computes
finite values, and its zero weight in the loss gives each of its rows a zero gradient: it adds
exactly nothing to any parameter's gradient. What can change is rounding: a matrix product
over more rows may sum in another order (float tolerance, as any change of batch shape).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import Batch

# Attributes of a PyG batch that are not collated per graph: rebuilt for the padded rows.
BATCH_VECTOR, GRAPH_POINTERS, GRAPH_WEIGHT = "batch", "ptr", "graph_weight"
GRAPHS = "graphs"  # the row kind of per-graph attributes (one row per graph)


@dataclass(frozen=True)
class BatchLayout:
    """Which row kind each attribute's rows are, and where index attributes point.

    `kinds` maps a kind's name (its first attribute, in sorted order) to its real row count;
    GRAPHS is always a kind. `attribute_kind` maps each padded attribute to its kind and
    `index_kind` each index attribute to the kind its values index.
    """

    kinds: dict[str, int]
    attribute_kind: dict[str, str]
    index_kind: dict[str, str]
    node_kind: str  # the mesh nodes' kind: the one `batch` and `ptr` describe

    @classmethod
    def of(cls, batch: Batch) -> "BatchLayout":
        graphs = batch.num_graphs
        slices = {key: tuple(value.tolist()) for key, value in batch._slice_dict.items()
                  if isinstance(batch[key], Tensor)}
        per_graph = tuple(range(graphs + 1))
        kind_of_slices: dict[tuple[int, ...], str] = {per_graph: GRAPHS}
        for key in sorted(slices):
            kind_of_slices.setdefault(slices[key], key)
        attribute_kind = {key: kind_of_slices[bounds] for key, bounds in slices.items()}
        kinds = {kind: bounds[-1] for bounds, kind in kind_of_slices.items()}
        kinds[GRAPHS] = graphs
        if "x" not in attribute_kind:
            raise ValueError("the batch has no node features x: it cannot be padded")
        node_kind = attribute_kind["x"]  # the rows `ptr` and `batch` describe (ptr may be on a GPU)
        index_kind = {}
        for key in attribute_kind:
            if batch.__inc__(key, batch[key]) == 0:  # PyG's own rule for what batching offsets
                continue
            rows = batch.index_rows(key) if hasattr(batch, "index_rows") else None
            index_kind[key] = node_kind if rows is None else attribute_kind[rows]
        return cls(kinds, attribute_kind, index_kind, node_kind)

    def signature(self) -> tuple:
        """What must match for two batches to share a bucket's graph (besides its capacities)."""
        return (tuple(sorted(self.attribute_kind.items())), tuple(sorted(self.index_kind.items())))


class SizeBuckets:
    """Capacities per row kind, on a geometric ladder: one bucket index k per batch.

    Each kind's capacity is its reference size (its rows in the first batch seen) times
    growth^k, for the smallest k that fits every kind of the batch with one pad row to spare
    (pad edges and pad clusters need a pad row to point at, and pad graphs a pad graph). One
    index for all kinds, because the sizes of a batch's kinds rise and fall together: batches
    within a few percent of each other share one or two buckets, where rounding each kind on
    its own would give a graph per combination. Padding costs at most a factor `growth` of
    rows, plus whatever a kind lags behind the largest one.
    """

    def __init__(self, growth: float) -> None:
        if growth <= 1:
            raise ValueError(f"bucket growth must be above 1, got {growth}")
        self.growth = growth
        self.reference: dict[str, int] = {}

    def capacities(self, layout: BatchLayout) -> dict[str, int]:
        for kind, rows in layout.kinds.items():
            self.reference.setdefault(kind, rows + 1)
        need = {kind: rows + 1 for kind, rows in layout.kinds.items()}
        k = max(math.ceil(math.log(need[kind] / self.reference[kind]) / math.log(self.growth) - 1e-9)
                for kind in need)
        while True:
            capacity = {kind: max(need[kind], math.ceil(self.reference[kind] * self.growth ** k - 1e-6))
                        for kind in need}
            # the same k must give the same capacities whatever batch asked: only the ladder's
            # values may fit the batch, so move up a rung when rounding left a kind short
            if all(capacity[kind] == math.ceil(self.reference[kind] * self.growth ** k - 1e-6) for kind in need):
                return capacity
            k += 1


def pad_batch(batch: Batch, layout: BatchLayout, capacity: dict[str, int]) -> Batch:
    """A copy of `batch` with every kind padded to `capacity` rows (see the module docstring),
    `ptr`/`batch` extended over pad graphs, and `graph_weight` marking the real graphs."""
    graphs, padded_graphs = layout.kinds[GRAPHS], capacity[GRAPHS]
    out = batch.__class__()
    for key, kind in layout.attribute_kind.items():
        value = batch[key]
        dim = batch.__cat_dim__(key, value)
        dim = dim + value.dim() if dim < 0 else dim
        extra = capacity[kind] - value.shape[dim]
        shape = list(value.shape)
        shape[dim] = extra
        fill = capacity[layout.index_kind[key]] - 1 if key in layout.index_kind else 0
        out[key] = torch.cat([value, value.new_full(shape, fill)], dim=dim)
    nodes, padded_nodes = layout.kinds[layout.node_kind], capacity[layout.node_kind]
    ptr = batch[GRAPH_POINTERS]
    out[GRAPH_POINTERS] = torch.cat([ptr, ptr.new_full((padded_graphs - graphs - 1,), nodes),
                                     ptr.new_full((1,), padded_nodes)])
    out[BATCH_VECTOR] = torch.cat([batch[BATCH_VECTOR],
                                   batch[BATCH_VECTOR].new_full((padded_nodes - nodes,), padded_graphs - 1)])
    weight = torch.zeros(padded_graphs, device=ptr.device)
    weight[:graphs] = 1
    out[GRAPH_WEIGHT] = weight
    out.num_nodes = padded_nodes
    out.real_graphs = graphs  # what the step's logged values are averaged over
    return out
