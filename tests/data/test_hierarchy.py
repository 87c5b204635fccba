import itertools

import numpy as np
import pytest
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch_geometric.data import Batch, InMemoryDataset
from torch_geometric.loader import DataLoader

from meshgnn.data.features import GraphDataset
from meshgnn.data.graph import edge_geometry, edges_from_cells
from meshgnn.data.hierarchy import HierarchySpec, MultiScaleData, attach_levels, build_levels
from meshgnn.models.edge_gnn import pool_mean


# ---------------------------------------------------------------------------------------------
# Small real meshes
# ---------------------------------------------------------------------------------------------

def triangle_grid(nx, ny, spacing=1.0, origin=(0.0, 0.0), jitter=0.0, hole=None, seed=0):
    """A structured triangle mesh (each quad split along a diagonal): (pos [N, 2] float32,
    edge_index). `hole` = (i0, i1, j0, j1) removes the quads i0 <= i < i1, j0 <= j < j1 (and
    the nodes left without a triangle), so the mesh has an interior hole but stays connected."""
    ij = np.arange(nx * ny).reshape(nx, ny)
    a, b, c, d = ij[:-1, :-1], ij[:-1, 1:], ij[1:, 1:], ij[1:, :-1]
    keep = np.ones(a.shape, dtype=bool)
    if hole is not None:
        i0, i1, j0, j1 = hole
        keep[i0:i1, j0:j1] = False
    a, b, c, d = a[keep], b[keep], c[keep], d[keep]
    tri = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    gi, gj = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    pos = np.stack([gi.ravel(), gj.ravel()], 1).astype(np.float64) * spacing
    if jitter:
        pos += np.random.default_rng(seed).uniform(-jitter, jitter, pos.shape) * spacing
    pos += np.asarray(origin)
    used = np.unique(tri)  # drop nodes inside the hole, renumber
    renumber = np.full(nx * ny, -1)
    renumber[used] = np.arange(len(used))
    tri = renumber[tri]
    pos = torch.from_numpy(pos[used]).float()
    return pos, edges_from_cells([("triangle", tri)], len(used))


def tetra_cube(n, spacing=1.0):
    """A structured cube of (n-1)^3 hexahedra, each split into the 6 tetrahedra of the Kuhn
    triangulation (conforming across cells): (pos [n^3, 3] float32, edge_index)."""
    idx = np.arange(n ** 3).reshape(n, n, n)
    corner = np.stack(np.meshgrid(*(np.arange(n - 1),) * 3, indexing="ij"), -1).reshape(-1, 3)
    tets = []
    for perm in itertools.permutations(range(3)):
        path = [corner.copy()]
        for axis in perm:
            step = path[-1].copy()
            step[:, axis] += 1
            path.append(step)
        tets.append(np.stack([idx[p[:, 0], p[:, 1], p[:, 2]] for p in path], 1))
    g = np.stack(np.meshgrid(*(np.arange(n),) * 3, indexing="ij"), -1).reshape(-1, 3)
    pos = torch.from_numpy(g * spacing).float()
    return pos, edges_from_cells([("tetra", np.concatenate(tets))], n ** 3)


def concat(*graphs):
    """Graphs (pos, edge_index) -> global pos, edge_index, node_graph."""
    pos, edges, owner, offset = [], [], [], 0
    for g, (p, e) in enumerate(graphs):
        pos.append(p)
        edges.append(e + offset)
        owner.append(torch.full((len(p),), g, dtype=torch.long))
        offset += len(p)
    return torch.cat(pos), torch.cat(edges, 1), torch.cat(owner)


def mean_edge_length(pos, edge_index, node_graph, num_graphs):
    """Per-graph mean edge length, computed graph by graph (independently of hierarchy.py)."""
    out = []
    for g in range(num_graphs):
        mask = node_graph[edge_index[0]] == g
        rel = pos.double()[edge_index[1, mask]] - pos.double()[edge_index[0, mask]]
        out.append(rel.norm(dim=1).mean())
    return torch.stack(out)


def two_overlapping_graphs():
    """Two meshes of the same square (overlapping in space, different resolutions, one with a
    hole): any cluster that ignored graph ids would mix them."""
    return concat(triangle_grid(12, 12, spacing=1 / 11, jitter=0.2, seed=1),
                  triangle_grid(15, 15, spacing=1 / 14, jitter=0.2, seed=2, hole=(5, 9, 4, 10)))


def fine_levels(pos, node_graph, levels):
    """(positions, graph ids) of the level each `Level` clusters: the mesh, then coarse levels."""
    return [(pos.double(), node_graph)] + [(level.pos, level.graph) for level in levels[:-1]]


# ---------------------------------------------------------------------------------------------
# build_levels
# ---------------------------------------------------------------------------------------------

def test_build_levels_is_deterministic_and_partitions_every_level_within_each_graph():
    pos, edge_index, node_graph = two_overlapping_graphs()
    spec = HierarchySpec(num_levels=3, coarsening=2.0)
    levels = build_levels(pos, edge_index, node_graph, 2, spec)
    again = build_levels(pos.clone(), edge_index.clone(), node_graph.clone(), 2, spec)
    assert len(levels) == 3
    for level, other in zip(levels, again):
        for name in ("cluster", "offset", "pos", "graph", "edge_index", "edge_attr"):
            assert torch.equal(getattr(level, name), getattr(other, name)), name

    for level, (fine_pos, fine_graph) in zip(levels, fine_levels(pos, node_graph, levels)):
        num_clusters = len(level.pos)
        assert level.cluster.shape == (len(fine_pos),)
        assert level.graph.shape == (num_clusters,)
        assert int(level.cluster.min()) >= 0 and int(level.cluster.max()) < num_clusters
        assert bool((torch.bincount(level.cluster, minlength=num_clusters) >= 1).all())
        # every cluster's members belong to one graph, the one level.graph names
        lo = torch.full((num_clusters,), 10 ** 6).scatter_reduce(0, level.cluster, fine_graph, "amin")
        hi = torch.full((num_clusters,), -1).scatter_reduce(0, level.cluster, fine_graph, "amax")
        assert torch.equal(lo, hi)
        assert torch.equal(lo, level.graph)
        # both graphs survive at every level, in graph-major order (attach_levels relies on it)
        assert set(level.graph.tolist()) == {0, 1}
        assert bool((level.graph.diff() >= 0).all())


def test_pooling_weights_sum_to_one_and_offsets_reconstruct_the_finer_positions():
    pos, edge_index, node_graph = two_overlapping_graphs()
    for coarsening in (2.0, 1.5):
        levels = build_levels(pos, edge_index, node_graph, 2, HierarchySpec(3, coarsening))
        h = mean_edge_length(pos, edge_index, node_graph, 2)
        for number, (level, (fine_pos, fine_graph)) in enumerate(
                zip(levels, fine_levels(pos, node_graph, levels)), start=1):
            num_clusters = len(level.pos)
            constant = torch.full((len(fine_pos), 3), 2.5)
            torch.testing.assert_close(pool_mean(constant, level.cluster, num_clusters),
                                       torch.full((num_clusters, 3), 2.5))
            torch.testing.assert_close(pool_mean(fine_pos, level.cluster, num_clusters), level.pos)
            cell = (h * coarsening ** number)[fine_graph, None]
            rebuilt = level.offset.double() * cell + level.pos[level.cluster]
            torch.testing.assert_close(rebuilt, fine_pos, rtol=0, atol=1e-6)
            # a member and its centroid lie in the same grid cell
            assert float(level.offset.abs().max()) < 1.0


def test_coarse_edges_are_the_contracted_fine_edges_and_keep_the_mesh_connected():
    pos, edge_index, node_graph = two_overlapping_graphs()
    levels = build_levels(pos, edge_index, node_graph, 2, HierarchySpec(3, 2.0))
    fine_edges = [edge_index] + [level.edge_index for level in levels[:-1]]
    h = mean_edge_length(pos, edge_index, node_graph, 2)
    for number, (level, fine) in enumerate(zip(levels, fine_edges), start=1):
        src, dst = level.edge_index
        pairs = list(zip(src.tolist(), dst.tolist()))
        assert len(pairs) > 0
        assert all(a != b for a, b in pairs)  # no self loops
        assert len(set(pairs)) == len(pairs)  # unique
        assert pairs == sorted(pairs, key=lambda pair: (pair[1], pair[0]))  # the order the model aggregates in
        assert set(pairs) == {(b, a) for a, b in pairs}  # symmetric
        contracted = {(a, b) for a, b in level.cluster[fine].t().tolist() if a != b}
        assert set(pairs) == contracted  # exactly the clusters some finer edge joins
        # edge features: relative centroid position and length, in units of the level's cell
        rel = (level.pos[dst] - level.pos[src]) / (h * 2.0 ** number)[level.graph[src], None]
        torch.testing.assert_close(level.edge_attr, torch.cat([rel, rel.norm(dim=1, keepdim=True)], 1).float())
        # each mesh is connected (the second one around its hole), so is each of its coarse graphs
        n = len(level.pos)
        adjacency = coo_matrix((np.ones(len(pairs)), (src.numpy(), dst.numpy())), shape=(n, n))
        count, labels = connected_components(adjacency, directed=False)
        assert count == 2
        assert torch.equal(torch.from_numpy(labels).long(), level.graph)


def test_each_level_is_about_coarsening_to_the_dim_times_smaller():
    pos, edge_index = triangle_grid(33, 33, spacing=1 / 32)
    levels = build_levels(pos, edge_index, torch.zeros(len(pos), dtype=torch.long), 1, HierarchySpec(6, 2.0))
    counts = [len(pos)] + [len(level.pos) for level in levels]
    for finer, coarser in zip(counts[:-1], counts[1:]):
        if finer >= 50:  # 2^2 = 4 nodes per cluster on a uniform grid, give or take the boundary
            assert finer / 8 <= coarser <= finer / 2, counts
    assert counts[-1] <= 4, counts  # six levels reach across the 32-edge-wide square
    # cells scale with the edge length, not the domain: a mesh twice as fine keeps about four
    # times the nodes at every level, so it needs one more level to reach across
    finer_mesh = triangle_grid(65, 65, spacing=1 / 64)
    finer_levels = build_levels(*finer_mesh, torch.zeros(65 * 65, dtype=torch.long), 1, HierarchySpec(3, 2.0))
    for level, coarse_count in zip(finer_levels, counts[1:]):
        assert len(level.pos) >= 3 * coarse_count


def test_tetra_mesh_levels_have_3d_offsets_and_4d_edge_features():
    pos, edge_index = tetra_cube(7, spacing=0.5)
    node_graph = torch.zeros(len(pos), dtype=torch.long)
    levels = build_levels(pos, edge_index, node_graph, 1, HierarchySpec(2, 2.0))
    h = mean_edge_length(pos, edge_index, node_graph, 1)
    assert [len(level.pos) for level in levels][0] < len(pos) / 4  # ~8 nodes per cluster in 3D
    for number, (level, (fine_pos, _)) in enumerate(zip(levels, fine_levels(pos, node_graph, levels)), 1):
        assert level.offset.shape == (len(fine_pos), 3)
        assert level.pos.shape == (len(level.pos), 3)
        assert level.edge_attr.shape == (level.edge_index.shape[1], 4)
        assert level.edge_index.shape[1] > 0
        torch.testing.assert_close(level.offset.double() * h * 2.0 ** number + level.pos[level.cluster],
                                   fine_pos, rtol=0, atol=1e-6)
        torch.testing.assert_close(level.edge_attr[:, 3], level.edge_attr[:, :3].norm(dim=1))
    # and through the collated path
    # (two graphs: InMemoryDataset.collate of a single graph returns no slices at all)
    store, slices = InMemoryDataset.collate([graph_data(pos, edge_index), graph_data(*tetra_cube(3))])
    attach_levels(store, slices, HierarchySpec(2, 2.0))
    item = GraphDataset(store, slices)[0]
    assert item.offset_1.shape == (len(pos), 3) and item.offset_2.shape == (len(levels[0].pos), 3)
    assert item.edge_attr_1.shape[1] == 4 and item.edge_attr_2.shape[1] == 4


# ---------------------------------------------------------------------------------------------
# attach_levels + MultiScaleData batching
# ---------------------------------------------------------------------------------------------

def graph_data(pos, edge_index):
    rel, length = edge_geometry(pos, edge_index)
    return MultiScaleData(pos=pos, edge_index=edge_index, edge_attr=torch.cat([rel, length], 1),
                          x=pos.clone(), num_nodes=len(pos))


def three_graph_dataset(spec):
    meshes = [triangle_grid(10, 13, spacing=0.1, jitter=0.25, seed=3),
              triangle_grid(14, 9, spacing=0.05, origin=(3.0, -2.0), jitter=0.25, seed=4, hole=(4, 8, 3, 6)),
              triangle_grid(16, 16, spacing=0.07, origin=(-1.0, 5.0), jitter=0.25, seed=5, hole=(6, 10, 6, 10))]
    store, slices = InMemoryDataset.collate([graph_data(*mesh) for mesh in meshes])
    attach_levels(store, slices, spec)
    return GraphDataset(store, slices), meshes


def assert_matches_build_levels(batch, levels, num_levels):
    for number, level in enumerate(levels, start=1):
        assert torch.equal(batch[f"cluster_{number}"], level.cluster), number
        assert torch.equal(batch[f"edge_index_{number}"], level.edge_index), number
        torch.testing.assert_close(batch[f"offset_{number}"], level.offset)
        torch.testing.assert_close(batch[f"edge_attr_{number}"], level.edge_attr)
        num_graphs = int(level.graph.max()) + 1
        assert torch.equal(batch[f"num_coarse_{number}"], torch.bincount(level.graph, minlength=num_graphs))
    assert len(levels) == num_levels and f"cluster_{num_levels + 1}" not in batch


def test_batched_levels_equal_build_levels_on_the_batch():
    spec = HierarchySpec(num_levels=3, coarsening=2.0)
    dataset, meshes = three_graph_dataset(spec)

    # one item: local indices, as if the mesh were built alone
    for i, (pos, edge_index) in enumerate(meshes):
        item = dataset[i]
        assert isinstance(item, MultiScaleData)
        levels = build_levels(pos, edge_index, torch.zeros(len(pos), dtype=torch.long), 1, spec)
        assert_matches_build_levels(item, levels, 3)

    # graphs 0 and 2 batched, both through the loader and by hand
    loader = DataLoader(dataset.index_select(torch.tensor([0, 2])), batch_size=2, shuffle=False)
    for batch in (next(iter(loader)), Batch.from_data_list([dataset[0], dataset[2]])):
        assert batch.num_graphs == 2
        levels = build_levels(batch.pos, batch.edge_index, batch.batch, 2, spec)
        assert_matches_build_levels(batch, levels, 3)
        # and the batch separates back into the items
        for k, i in enumerate((0, 2)):
            example = batch.get_example(k)
            for number in (1, 2, 3):
                assert torch.equal(example[f"cluster_{number}"], dataset[i][f"cluster_{number}"])
                assert torch.equal(example[f"edge_index_{number}"], dataset[i][f"edge_index_{number}"])


def test_batched_coarse_indices_stay_inside_their_graph():
    dataset, _ = three_graph_dataset(HierarchySpec(2, 2.0))
    batch = Batch.from_data_list([dataset[2], dataset[1], dataset[0]])
    fine_graph = batch.batch
    for number in (1, 2):
        counts = batch[f"num_coarse_{number}"]
        coarse_graph = torch.repeat_interleave(torch.arange(3), counts)
        assert torch.equal(coarse_graph[batch[f"cluster_{number}"]], fine_graph)
        assert torch.equal(coarse_graph[batch[f"edge_index_{number}"][0]],
                           coarse_graph[batch[f"edge_index_{number}"][1]])
        assert bool((batch[f"edge_index_{number}"][1].diff() >= 0).all())  # still destination-sorted
        fine_graph = coarse_graph


@pytest.mark.parametrize("coarsening", [2.0, 3.0])
def test_attach_levels_slices_match_the_store(coarsening):
    dataset, meshes = three_graph_dataset(HierarchySpec(2, coarsening))
    for i, (pos, _) in enumerate(meshes):
        item = dataset[i]
        assert item.cluster_1.shape == (len(pos),)
        assert int(item.cluster_1.max()) + 1 == int(item.num_coarse_1)
        assert item.cluster_2.shape == (int(item.num_coarse_1),)
        assert int(item.cluster_2.max()) + 1 == int(item.num_coarse_2)
        assert int(item.edge_index_2.max()) < int(item.num_coarse_2)


# ---------------------------------------------------------------------------------------------
# Physical cells (layout 2): one cell size for every mesh, whatever its resolution
# ---------------------------------------------------------------------------------------------

def plate(mesh_size):
    """A real mesh of one part (a plate with two holes) at `mesh_size`: (pos, edge_index)."""
    from meshgnn.data.mesher import Circle, mesh_plate

    mesh = mesh_plate(1.6, [Circle(0.5, 0.5, 0.2), Circle(1.15, 0.4, 0.15)], mesh_size)
    pos = torch.from_numpy(mesh.points).float()
    return pos, edges_from_cells([("triangle", mesh.triangles)], len(pos))


def one_graph_levels(pos, edge_index, spec):
    return build_levels(pos, edge_index, torch.zeros(len(pos), dtype=torch.long), 1, spec)


def test_coarse_levels_of_a_2x_refined_mesh_cover_the_same_physical_cells():
    coarse, fine = plate(0.1), plate(0.05)
    assert len(fine[0]) > 3 * len(coarse[0])
    spec = HierarchySpec(3, 2.0, cell_size=0.2)
    for number, (a, b) in enumerate(zip(one_graph_levels(*coarse, spec), one_graph_levels(*fine, spec)), 1):
        cell = 0.2 * 2.0 ** (number - 1)
        # about as many clusters (the per-mesh rule of layout 1 gives ~4x as many on the finer mesh)
        assert 0.8 <= len(b.pos) / len(a.pos) <= 1.25, (number, len(a.pos), len(b.pos))
        # and every cluster of either mesh has one of the other within one cell
        gap = torch.cdist(a.pos, b.pos)
        assert float(gap.min(dim=1).values.max()) <= cell, number
        assert float(gap.min(dim=0).values.max()) <= cell, number
        # offsets and coarse edges in units of the level's one physical cell size
        assert float(b.offset.abs().max()) < 1.0
        rel = b.pos[b.edge_index[1]] - b.pos[b.edge_index[0]]
        torch.testing.assert_close(b.edge_attr[:, :2].double(), rel / cell, rtol=1e-5, atol=1e-6)
    # the layout-1 rule (cells from each mesh's own edge length) does not: the control the
    # assertions above would fail on
    legacy = HierarchySpec(3, 2.0)
    a, b = one_graph_levels(*coarse, legacy)[-1], one_graph_levels(*fine, legacy)[-1]
    assert len(b.pos) / len(a.pos) > 2.5


def test_physical_cells_are_one_size_for_every_graph_of_a_batch():
    pos, edge_index, node_graph = two_overlapping_graphs()
    spec = HierarchySpec(3, 2.0, cell_size=0.15)
    levels = build_levels(pos, edge_index, node_graph, 2, spec)
    for number, (level, (fine_pos, _)) in enumerate(zip(levels, fine_levels(pos, node_graph, levels)), 1):
        cell = 0.15 * 2.0 ** (number - 1)
        torch.testing.assert_close(level.offset.double() * cell + level.pos[level.cluster], fine_pos,
                                   rtol=0, atol=1e-6)
        # both squares (different resolutions) have the same clusters, up to the hole
        counts = torch.bincount(level.graph)
        assert abs(int(counts[0]) - int(counts[1])) <= max(2, int(counts[0]) // 4), (number, counts)


def test_cells_are_the_same_under_translation_even_for_nodes_on_cell_boundaries():
    # a uniform grid whose nodes sit exactly on the cell boundaries (spacing 0.25, cells 0.5):
    # the rounding of a translated float32 coordinate must not move a node to another cell
    pos, edge_index = triangle_grid(9, 9, spacing=0.25)
    spec = HierarchySpec(3, 2.0, cell_size=0.5)
    moved = (pos.double() + torch.tensor([3.7, -2.2], dtype=torch.float64)).float()
    assert not torch.equal(moved - moved.min(0).values, pos)  # the rounding is there
    for here, there in zip(one_graph_levels(pos, edge_index, spec), one_graph_levels(moved, edge_index, spec)):
        assert torch.equal(here.cluster, there.cluster)
        assert torch.equal(here.edge_index, there.edge_index)
        torch.testing.assert_close(here.offset, there.offset, rtol=0, atol=1e-5)
        torch.testing.assert_close(here.edge_attr, there.edge_attr, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# The run's one cell size: fixed from the training split, stored, read back
# ---------------------------------------------------------------------------------------------

def test_a_run_fixes_one_cell_size_from_the_training_split_and_stores_it(data_cache):
    from conftest import compose_config
    from meshgnn.data.dataset import load_datasets
    from meshgnn.data.features import LAYOUT, FeatureSpec, ModelInputs

    cfg = compose_config(["debug=default", "data.num_samples=10"])
    data = load_datasets(cfg.data, data_cache, ModelInputs.of_model(cfg.model))
    hierarchy = data.features.model_inputs.hierarchy
    train = data.splits["train"]
    lengths = torch.cat([g.edge_len for g in train])  # physical edge lengths of every training graph
    assert hierarchy.cell_size == pytest.approx(cfg.model.coarsening * float(lengths.double().mean()), rel=1e-6)
    # the stored spec gives the same cells back; a spec written before layout 2 is layout 1
    doc = data.features.to_json()
    assert FeatureSpec.from_json(doc) == data.features and doc["model_inputs"]["layout"] == LAYOUT
    old = {**doc, "model_inputs": {k: v for k, v in doc["model_inputs"].items() if k != "layout"}}
    old["model_inputs"]["hierarchy"] = {"num_levels": 3, "coarsening": 2.0}
    assert FeatureSpec.from_json(old).model_inputs.layout == 1
    assert FeatureSpec.from_json(old).model_inputs.hierarchy.cell_size is None
    # the training normaliser alone gives the same size back (what resume and evaluation pass)
    again = load_datasets(cfg.data, data_cache, ModelInputs.of_model(cfg.model), normalizer=data.normalizer)
    assert again.features == data.features
    # a configured model.cell_size is taken as it is, and builds the levels
    cfg.model.cell_size = 0.3
    fixed = load_datasets(cfg.data, data_cache, ModelInputs.of_model(cfg.model))
    assert fixed.features.model_inputs.hierarchy.cell_size == 0.3
    graph = fixed.splits["train"][0]
    levels = build_levels(graph.pos, graph.edge_index, torch.zeros(len(graph.pos), dtype=torch.long), 1,
                          HierarchySpec(3, 2.0, cell_size=0.3))
    assert torch.equal(graph.cluster_1, levels[0].cluster) and torch.equal(graph.cluster_3, levels[2].cluster)
