"""Coarse graphs of a mesh for multi-scale message passing, built once per mesh at load time.

Level l clusters the nodes of level l-1 (level 0 is the mesh) by a regular grid of cells of
side `cell_size * coarsening ** (l - 1)`, anchored at the mesh's bounding-box corner. The
cell size is a length in the mesh's own units, fixed once per run for every mesh it sees:
`model.cell_size`, or `model.coarsening` times the training split's mean edge length
(`meshgnn.data.features.fix_cell_size`), and stored with the model. So the coarse levels of
a mesh twice as fine as the training meshes cover the same physical cells, and a model sees
every mesh, whatever its resolution, at the same coarse scales. Two clusters are joined when
any edge of level l-1 joins their members (edge contraction), so coarse edges follow the
mesh's connectivity (a hole or a slit still separates them).

At the finest levels of a much finer mesh a cell simply holds more nodes (about 16x at 4x
finer, in 2D): the mean pooling averages more of them, and the mesh level's blocks bridge
more hops inside a cell. That is kept on purpose rather than adding levels for finer meshes:
the model has weights per level, and a level the training meshes never had would have no
trained weights; a fixed set of physical scales is what lets one set of weights transfer.
The coarse part of the model thus computes the same function of the physical domain at any
resolution, and the mesh-level blocks stay local, as in the single-level model.

Cells are anchored at the corner minus `GRID_SHIFT` of a level-1 cell (the same length at
every level, so the grids of consecutive levels still nest): meshes often have nodes at
exact multiples of a round cell size (a straight edge split evenly), where a translation's
rounding in the last bit would move a node across a cell boundary. This only makes the
floor robust; it is not a setting.

A cluster's latent is the mean of its members' (weights 1/|cluster|, summing to one) and it
sits at its members' centroid. Each level stores, in units of its own cell size, the relative
position of every coarse edge and of every fine node from its cluster's centroid, so the model
can interpolate on the way back up; the same physical offset thus reads the same on every
mesh.

Layout 1 (packages and checkpoints written before cell sizes were physical) sized the cells
of each mesh by its OWN mean edge length h, `coarsening ** l * h`, without the shift:
`HierarchySpec.cell_size = None` builds exactly that, so old models predict as they did.

Everything is vectorised over a whole collated dataset (graph ids in the high bits of the
cluster keys), so building the hierarchy of 1,000 meshes takes a fraction of a second, and the
same function serves one new mesh at prediction time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import scatter

from meshgnn.data.graph import row_graph

GRID_SHIFT = 1e-3  # of a level-1 cell: keeps nodes at round positions off cell boundaries


@dataclass(frozen=True)
class HierarchySpec:
    """What a multi-scale model asks of the data: `num_levels` coarse levels, each
    `coarsening` times coarser than the one below, level 1 of cells of side `cell_size`
    (mesh length units). `cell_size` None: each mesh's own mean edge length times
    `coarsening ** level` (layout 1; a new run fixes a length before building levels)."""

    num_levels: int
    coarsening: float
    cell_size: float | None = None


@dataclass
class Level:
    """One coarse level over a collated set of graphs (global node indices).

    cluster:    [N_fine] index of each finer-level node's cluster (a node of this level).
    offset:     [N_fine, dim] (fine position - cluster centroid) / cell size.
    pos:        [N] cluster centroids.
    graph:      [N] graph of each cluster.
    edge_index: [2, E] contracted edges, both directions, each once, sorted by destination.
    edge_attr:  [E, dim + 1] relative position and length / cell size.
    """

    cluster: Tensor
    offset: Tensor
    pos: Tensor
    graph: Tensor
    edge_index: Tensor
    edge_attr: Tensor


def build_levels(pos: Tensor, edge_index: Tensor, node_graph: Tensor, num_graphs: int,
                 spec: HierarchySpec) -> list[Level]:
    """Coarse levels of graphs given with global node indices (`node_graph` sorted)."""
    pos = pos.double()
    corner = scatter(pos, node_graph, dim=0, dim_size=num_graphs, reduce="min")
    sizes, shift = _cell_sizes(pos, edge_index, node_graph, num_graphs, spec)
    levels = []
    for size in sizes:
        cell = size.clamp_min(1e-12)
        cells = ((pos - corner[node_graph] + shift) / cell[node_graph, None]).floor().long()
        key = node_graph.clone()
        for d in range(pos.shape[1]):
            key = key * (int(cells[:, d].max()) + 1) + cells[:, d]
        _, cluster = torch.unique(key, return_inverse=True)  # sorted keys: graph-major order
        num_clusters = int(cluster.max()) + 1
        centroid = scatter(pos, cluster, dim=0, dim_size=num_clusters, reduce="mean")
        graph = scatter(node_graph, cluster, dim=0, dim_size=num_clusters, reduce="min")
        coarse_edges = _contract(cluster[edge_index], num_clusters)
        rel = (centroid[coarse_edges[1]] - centroid[coarse_edges[0]]) / cell[graph[coarse_edges[0]], None]
        levels.append(Level(
            cluster=cluster,
            offset=((pos - centroid[cluster]) / cell[node_graph, None]).float(),
            pos=centroid,
            graph=graph,
            edge_index=coarse_edges,
            edge_attr=torch.cat([rel, rel.norm(dim=1, keepdim=True)], dim=1).float(),
        ))
        pos, edge_index, node_graph = centroid, coarse_edges, graph
    return levels


def _cell_sizes(pos: Tensor, edge_index: Tensor, node_graph: Tensor, num_graphs: int,
                spec: HierarchySpec) -> tuple[list[Tensor], float]:
    """Each level's cell side per graph ([G] float64), and the grid's shift from the corner."""
    if spec.cell_size is None:  # layout 1: each mesh's own mean edge length
        src, dst = edge_index
        h = scatter((pos[dst] - pos[src]).norm(dim=1), node_graph[src], dim=0, dim_size=num_graphs,
                    reduce="mean")
        return [h * spec.coarsening ** level for level in range(1, spec.num_levels + 1)], 0.0
    sizes = [torch.full((num_graphs,), spec.cell_size * spec.coarsening ** (level - 1), dtype=torch.float64,
                        device=pos.device)
             for level in range(1, spec.num_levels + 1)]
    return sizes, GRID_SHIFT * spec.cell_size


def _contract(pairs: Tensor, num_nodes: int) -> Tensor:
    """Unique (source, destination) pairs without self loops, sorted by (destination, source)
    like the mesh's edges (the order the model aggregates in)."""
    pairs = pairs[:, pairs[0] != pairs[1]]
    keys = torch.unique(pairs[1] * num_nodes + pairs[0])
    return torch.stack([keys % num_nodes, keys // num_nodes])


def attach_levels(store: Data, slices: dict[str, Tensor], spec: HierarchySpec) -> None:
    """Add the hierarchy to a collated store as per-graph (local-index) attributes.

    Attributes of level l: `cluster_l`, `offset_l` (rows of level l-1), `edge_index_l`,
    `edge_attr_l`, `num_coarse_l` (one entry per graph) and `nodes_l`, an empty
    [clusters, 0] tensor whose row count is the level's node count (a shape, so the model
    reads it without a host sync and `torch.export` keeps it symbolic); `MultiScaleData`
    batches them.
    """
    num_graphs = len(slices["pos"]) - 1
    device = store.pos.device  # the store's tensors stay there; slices are host offsets, as in PyG
    node_graph = row_graph(slices["pos"]).to(device)
    edge_offset = slices["pos"][:-1][row_graph(slices["edge_index"])].to(device)
    levels = build_levels(store.pos, store.edge_index + edge_offset, node_graph, num_graphs, spec)
    fine_slices, fine_graph = slices["pos"], node_graph
    for number, level in enumerate(levels, start=1):
        counts = torch.bincount(level.graph, minlength=num_graphs)
        node_slices = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        edge_graph = level.graph[level.edge_index[1]]
        edge_slices = torch.cat([counts.new_zeros(1),
                                 torch.bincount(edge_graph, minlength=num_graphs).cumsum(0)])
        store[f"cluster_{number}"] = level.cluster - node_slices[:-1][fine_graph]
        slices[f"cluster_{number}"] = fine_slices
        store[f"offset_{number}"] = level.offset
        slices[f"offset_{number}"] = fine_slices
        store[f"edge_index_{number}"] = level.edge_index - node_slices[:-1][edge_graph]
        slices[f"edge_index_{number}"] = edge_slices.cpu()
        store[f"edge_attr_{number}"] = level.edge_attr
        slices[f"edge_attr_{number}"] = edge_slices.cpu()
        store[f"num_coarse_{number}"] = counts
        slices[f"num_coarse_{number}"] = torch.arange(num_graphs + 1)
        store[f"nodes_{number}"] = level.offset.new_empty(len(level.graph), 0)
        slices[f"nodes_{number}"] = node_slices.cpu()
        fine_slices, fine_graph = node_slices.cpu(), level.graph


class MultiScaleData(Data):
    """A PyG `Data` whose coarse-level indices are offset per level when graphs are batched."""

    def __inc__(self, key: str, value: Tensor, *args, **kwargs):
        rows = self.index_rows(key)
        if rows is not None:  # a shape, not a sum of counts: batching a GPU store never waits for it
            if rows in self:
                return self[rows].shape[0]
            return int(self[f"num_coarse_{key.rsplit('_', 1)[1]}"].sum())  # data made before nodes_l
        return super().__inc__(key, value, *args, **kwargs)

    @staticmethod
    def index_rows(key: str) -> str | None:
        """The attribute whose rows an index attribute of a coarse level points into (its
        `nodes_l`); None for the others (`edge_index` points into the mesh nodes, as in PyG)."""
        if key.startswith(("cluster_", "edge_index_")):
            return f"nodes_{key.rsplit('_', 1)[1]}"
        return None

    def __cat_dim__(self, key: str, value: Tensor, *args, **kwargs):
        if key.startswith("edge_index_"):
            return -1
        return super().__cat_dim__(key, value, *args, **kwargs)
