"""Mesh -> graph: edges from cells, edge features, and node features.

Graphs are cached *before* node features are assembled (`sample_to_graph`), and features are
assembled on the whole collated dataset at load time (`node_features`). That keeps the cache
keyed by the generating config alone: changing `data.fourier_features` re-derives features in
well under a second instead of regenerating every sample.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import scatter

from meshgnn.data.sample import MeshSample, SourceSpec
from meshgnn.errors import UserError

GRAPH_GAP = 4.0  # unit-coordinate gap between graphs in `boundary_distances` (> sqrt(3))

# Local node pairs that are edges of each meshio cell type.
CELL_EDGES: dict[str, tuple[tuple[int, int], ...]] = {
    "line": ((0, 1),),
    "triangle": ((0, 1), (1, 2), (2, 0)),
    "quad": ((0, 1), (1, 2), (2, 3), (3, 0)),
    "tetra": ((0, 1), (1, 2), (2, 0), (0, 3), (1, 3), (2, 3)),
    "hexahedron": ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4),
                   (0, 4), (1, 5), (2, 6), (3, 7)),
    "wedge": ((0, 1), (1, 2), (2, 0), (3, 4), (4, 5), (5, 3), (0, 3), (1, 4), (2, 5)),
    "pyramid": ((0, 1), (1, 2), (2, 3), (3, 0), (0, 4), (1, 4), (2, 4), (3, 4)),
}


def edges_from_cells(cells: list[tuple[str, np.ndarray]], num_nodes: int,
                     device: torch.device | str = "cpu") -> Tensor:
    """Directed edges in both directions, each once, sorted by (destination, source): the order
    the model's aggregation reads them in (see `EdgeGNN.forward_tensors`). One sort of packed
    int64 keys on `device` (torch's sort: about 1.3x numpy's on 2 CPU cores, and the GPU's own
    when preparing there)."""
    keys = []
    for cell_type, conn in cells:
        if cell_type not in CELL_EDGES:
            raise UserError(f"cell type {cell_type!r} is not supported; supported cell types: "
                            f"{', '.join(CELL_EDGES)}")
        conn = torch.as_tensor(np.asarray(conn, dtype=np.int64), device=device)
        a, b = (conn[:, list(side)].reshape(-1) for side in zip(*CELL_EDGES[cell_type]))
        keys += [b * num_nodes + a, a * num_nodes + b]
    keys = torch.unique_consecutive(torch.sort(torch.cat(keys)).values)
    return torch.stack([keys % num_nodes, keys // num_nodes])


def edge_geometry(pos: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor]:
    """Relative position (destination minus source) and length of every edge."""
    rel = pos[edge_index[1]] - pos[edge_index[0]]
    return rel, rel.norm(dim=1, keepdim=True)


def sample_to_graph(sample: MeshSample, spec: SourceSpec, device: torch.device | str = "cpu") -> Data:
    """A feature-free graph of one sample, in physical units (what the cache stores), built on
    `device` (prediction prepares on its own device; the cache is built on the CPU)."""
    pos = torch.as_tensor(np.asarray(sample.points, dtype=np.float64), device=device)
    edge_index = edges_from_cells(sample.cells, sample.num_nodes, device)
    rel, length = edge_geometry(pos, edge_index)

    def stack(fields: dict[str, np.ndarray], names: list[str]) -> Tensor:
        cols = [np.asarray(fields[n], dtype=np.float64).reshape(sample.num_nodes, -1) for n in names]
        values = np.concatenate(cols, axis=1) if cols else np.zeros((sample.num_nodes, 0))
        return torch.as_tensor(values, device=device)

    targets = [f.name for f in spec.targets]
    return Data(
        pos=pos.float(),
        edge_index=edge_index,
        edge_attr=torch.cat([rel, length], dim=1).float(),
        node_type=torch.as_tensor(np.asarray(sample.node_type, dtype=np.int64), device=device),
        inputs=stack(sample.inputs, [f.name for f in spec.inputs]).float(),
        globals=torch.as_tensor(np.asarray(sample.globals, dtype=np.float64), device=device).float().view(1, -1),
        y=stack(sample.targets, targets).float(),
        baseline=stack(sample.baseline, targets).float() if sample.baseline else None,
        num_nodes=sample.num_nodes,
    )


class FourierFeatureMapper:
    """Random Fourier features sin/cos(2 pi x B) of coordinates scaled to [0, 1].

    The frequency matrix B is drawn from a fixed seed so the same config always gives the same
    features, and a trained model's features can be rebuilt from `(num_features, scale, seed)`.
    """

    def __init__(self, num_features: int, scale: float, spatial_dim: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.matrix = torch.randn(spatial_dim, num_features, generator=gen, dtype=torch.float64) * scale
        self.num_features = num_features

    @property
    def out_dim(self) -> int:
        return 2 * self.num_features

    def __call__(self, unit_pos: Tensor) -> Tensor:
        angles = 2.0 * math.pi * unit_pos.double() @ self.matrix.to(unit_pos.device)
        return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def row_graph(slices: Tensor) -> Tensor:
    """Graph index of every row of a collated attribute, from its slice offsets."""
    return torch.repeat_interleave(torch.arange(len(slices) - 1), slices.diff())


def sort_edges_by_destination(store: Data, slices: dict[str, Tensor]) -> None:
    """Put each graph's edges of a collated store (`edge_index` and `edge_attr`) in
    destination order, in place, when they are not already.

    Graphs built now already are (`edges_from_cells`), but dataset caches and converted folders
    written by earlier versions hold (source, destination) order, on which the model's segment
    aggregation would silently sum the wrong edges. The sort is stable, so such a graph ends up
    in exactly the (destination, source) order a freshly built one has.
    """
    edge_graph = row_graph(slices["edge_index"]).to(store.edge_index.device)
    key = edge_graph * int(slices["pos"].diff().max()) + store.edge_index[1]
    if bool((key[1:] >= key[:-1]).all()):
        return
    order = torch.sort(key, stable=True).indices
    store.edge_index = store.edge_index[:, order]
    store.edge_attr = store.edge_attr[order]


def graph_extent(pos: Tensor, graph_id: Tensor, num_graphs: int) -> tuple[Tensor, Tensor]:
    """Each graph's bounding-box corner [G, dim] and longest side [G, 1]."""
    lo = scatter(pos, graph_id, dim=0, dim_size=num_graphs, reduce="min")
    hi = scatter(pos, graph_id, dim=0, dim_size=num_graphs, reduce="max")
    return lo, (hi - lo).amax(dim=1, keepdim=True).clamp_min(1e-12)


def unit_coordinates(pos: Tensor, graph_id: Tensor, num_graphs: int) -> Tensor:
    """Coordinates shifted to each graph's bounding-box corner and divided by its longest side."""
    lo, extent = graph_extent(pos, graph_id, num_graphs)
    return (pos - lo[graph_id]) / extent[graph_id]


def boundary_distances(pos: Tensor, node_type: Tensor, graph_id: Tensor, num_graphs: int,
                       num_node_types: int) -> Tensor:
    """[N, num_node_types - 1]: distance from every node to the nearest node of each boundary
    kind of its own graph, in units of the graph's longest side.

    Tells every node, in one feature, how far it is from where each boundary condition acts:
    information message passing would otherwise need as many layers as the mesh is hops across.
    A graph without nodes of some kind gets sqrt(dim), the diagonal of the unit box.

    One k-d tree query per kind for all graphs at once (scipy's, on the CPU whatever the device:
    O(N log B), where a GPU brute force would be O(N x B)): graph g is moved `GRAPH_GAP` g
    along the first axis, farther than any two nodes of one graph can be apart (sqrt(dim) in
    unit coordinates), so a node's nearest node of a kind is in its own graph whenever that
    graph has one, and otherwise farther than sqrt(dim), which gives the fill value.
    """
    _, extent = graph_extent(pos, graph_id, num_graphs)
    unit = (pos.double() / extent[graph_id].double()).cpu().numpy()
    graphs = graph_id.cpu().numpy()
    corner = scatter(torch.from_numpy(unit), graph_id.cpu(), dim=0, dim_size=num_graphs, reduce="min").numpy()
    shifted = unit - corner[graphs]
    shifted[:, 0] += GRAPH_GAP * graphs
    fill = math.sqrt(pos.shape[1])
    out = np.full((len(unit), num_node_types - 1), fill)
    types = node_type.cpu().numpy()
    for kind in range(1, num_node_types):
        members = shifted[types == kind]
        if len(members):
            distance = cKDTree(members).query(shifted, workers=-1)[0]
            out[:, kind - 1] = np.where(distance < fill, distance, fill)
    return torch.from_numpy(out).float().to(pos.device)


def node_features(pos: Tensor, node_type: Tensor, inputs: Tensor, node_globals: Tensor,
                  graph_id: Tensor, num_graphs: int, num_node_types: int,
                  mapper: FourierFeatureMapper, boundary_distance: bool,
                  relative_coordinates: bool = True) -> Tensor:
    """[coordinates, Fourier features, node-type one-hot, boundary distances, input fields,
    broadcast globals] (`node_globals` may have zero columns).

    The coordinates are relative to the graph's bounding-box corner, in physical units, so a
    rigidly translated mesh gets the same features (the Fourier features and boundary
    distances already are relative); `relative_coordinates=False` gives the raw coordinates
    of layout 1 (`meshgnn.data.features.LAYOUT`). They are not divided by the mesh's extent:
    the built-in physics is not scale-invariant (a heat source, a traction, carry lengths), so a
    larger part is a different problem and must look like one.

    Works on one graph or on a whole collated dataset (`graph_id`, sorted, maps node -> graph),
    so the training pipeline and prediction on new meshes share it.
    """
    if int(node_type.max()) >= num_node_types or int(node_type.min()) < 0:
        raise UserError(f"node_type values must lie in 0..{num_node_types - 1}; found "
                        f"{int(node_type.min())}..{int(node_type.max())}")
    coordinates = pos - graph_extent(pos, graph_id, num_graphs)[0][graph_id] if relative_coordinates else pos
    parts = [coordinates, mapper(unit_coordinates(pos, graph_id, num_graphs)),
             torch.nn.functional.one_hot(node_type, num_node_types).float()]
    if boundary_distance:
        parts.append(boundary_distances(pos, node_type, graph_id, num_graphs, num_node_types))
    return torch.cat(parts + [inputs, node_globals], dim=1)
