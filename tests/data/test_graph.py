import numpy as np
import pytest
import torch

from torch_geometric.data import Data, InMemoryDataset

from meshgnn.data.graph import (FourierFeatureMapper, edges_from_cells, node_features, sort_edges_by_destination,
                                unit_coordinates)
from meshgnn.errors import UserError


def test_two_triangles_give_five_undirected_edges_both_directions():
    # 0-1-2 and 0-2-3 share the diagonal 0-2: 5 undirected edges, 10 directed.
    cells = [("triangle", np.array([[0, 1, 2], [0, 2, 3]]))]
    edges = edges_from_cells(cells, 4)
    assert edges.shape == (2, 10)
    pairs = set(map(tuple, edges.t().tolist()))
    assert pairs == {(0, 1), (1, 0), (1, 2), (2, 1), (0, 2), (2, 0), (2, 3), (3, 2), (0, 3), (3, 0)}


def test_edges_are_symmetric_and_unique_on_mixed_cells():
    cells = [("quad", np.array([[0, 1, 4, 3], [1, 2, 5, 4]])), ("triangle", np.array([[3, 4, 6]]))]
    edges = edges_from_cells(cells, 7)
    pairs = list(map(tuple, edges.t().tolist()))
    assert len(pairs) == len(set(pairs))
    assert set(pairs) == {(j, i) for i, j in pairs}
    assert len(pairs) == 2 * 9  # 7 quad edges (one shared) + 2 new triangle edges


def assert_sorted_by_destination_then_source(edges, num_nodes):
    key = edges[1] * num_nodes + edges[0]
    assert bool((key[1:] > key[:-1]).all())


def test_edges_come_sorted_by_destination_then_source():
    cells = [("quad", np.array([[0, 1, 4, 3], [1, 2, 5, 4]])), ("triangle", np.array([[3, 4, 6]]))]
    assert_sorted_by_destination_then_source(edges_from_cells(cells, 7), 7)


def test_load_time_sort_puts_old_source_ordered_graphs_in_the_order_new_ones_have():
    """A cache written before edges were destination-sorted holds (source, destination) order;
    after `sort_edges_by_destination` each graph equals its freshly built self, features
    travelling with their edges."""
    meshes = [([("triangle", np.array([[0, 1, 2], [0, 2, 3]]))], 4),
              ([("quad", np.array([[0, 1, 4, 3], [1, 2, 5, 4]])), ("triangle", np.array([[3, 4, 6]]))], 7)]

    def graph(edge_index, n):
        return Data(pos=torch.randn(n, 2, generator=torch.Generator().manual_seed(n)), edge_index=edge_index,
                    edge_attr=(edge_index[0] * 10 + edge_index[1]).float()[:, None], num_nodes=n)

    new = [graph(edges_from_cells(cells, n), n) for cells, n in meshes]
    old = []
    for g in new:
        order = torch.argsort(g.edge_index[0] * g.num_nodes + g.edge_index[1])
        old.append(graph(g.edge_index[:, order], g.num_nodes))
    store, slices = InMemoryDataset.collate(old)
    assert not torch.equal(store.edge_index, InMemoryDataset.collate(new)[0].edge_index)
    sort_edges_by_destination(store, slices)
    expected, _ = InMemoryDataset.collate(new)
    assert torch.equal(store.edge_index, expected.edge_index)
    assert torch.equal(store.edge_attr, expected.edge_attr)
    sort_edges_by_destination(store, slices)  # already sorted: unchanged
    assert torch.equal(store.edge_index, expected.edge_index)


def test_tetra_has_six_edges():
    assert edges_from_cells([("tetra", np.array([[0, 1, 2, 3]]))], 4).shape == (2, 12)


def test_unknown_cell_type_is_a_user_error():
    with pytest.raises(UserError, match="polygon"):
        edges_from_cells([("polygon", np.array([[0, 1, 2]]))], 3)


def test_fourier_features_are_deterministic_bounded_and_sized():
    mapper = FourierFeatureMapper(8, 2.0, 2, seed=3)
    pos = torch.rand(50, 2)
    feats = mapper(pos)
    assert feats.shape == (50, 16) and mapper.out_dim == 16
    assert torch.equal(feats, FourierFeatureMapper(8, 2.0, 2, seed=3)(pos))
    assert not torch.equal(feats, FourierFeatureMapper(8, 2.0, 2, seed=4)(pos))
    # sin^2 + cos^2 = 1 for every frequency
    torch.testing.assert_close(feats[:, :8] ** 2 + feats[:, 8:] ** 2, torch.ones(50, 8))


def test_zero_fourier_features_is_allowed():
    assert FourierFeatureMapper(0, 1.0, 2, seed=0)(torch.rand(5, 2)).shape == (5, 0)


def test_unit_coordinates_per_graph():
    pos = torch.tensor([[0.0, 0.0], [2.0, 1.0], [10.0, 10.0], [11.0, 10.5]])
    unit = unit_coordinates(pos, torch.tensor([0, 0, 1, 1]), 2)
    torch.testing.assert_close(unit, torch.tensor([[0.0, 0.0], [1.0, 0.5], [0.0, 0.0], [1.0, 0.5]]))


def test_node_features_layout_and_bad_node_type():
    mapper = FourierFeatureMapper(4, 1.0, 2, seed=0)
    pos = torch.rand(3, 2)
    x = node_features(pos, torch.tensor([0, 1, 2]), torch.ones(3, 1), torch.full((3, 2), 5.0),
                      torch.zeros(3, dtype=torch.long), 1, 3, mapper, boundary_distance=True)
    assert x.shape == (3, 2 + 8 + 3 + 2 + 1 + 2)
    torch.testing.assert_close(x[:, 10:13], torch.eye(3))
    unit = (pos - pos.min(0).values) / (pos.max(0).values - pos.min(0).values).max()
    # distance to the one node of each boundary kind, in units of the longest side
    torch.testing.assert_close(x[:, 13], (unit - unit[1]).norm(dim=1))
    torch.testing.assert_close(x[:, 14], (unit - unit[2]).norm(dim=1))
    no_distance = node_features(pos, torch.tensor([0, 1, 2]), torch.ones(3, 1), torch.zeros(3, 0),
                                torch.zeros(3, dtype=torch.long), 1, 3, mapper, boundary_distance=False)
    assert no_distance.shape == (3, 2 + 8 + 3 + 1)
    with pytest.raises(UserError, match="node_type"):
        node_features(pos, torch.tensor([0, 1, 3]), torch.ones(3, 1), torch.zeros(3, 0),
                      torch.zeros(3, dtype=torch.long), 1, 3, mapper, boundary_distance=False)


def test_node_coordinates_are_relative_to_each_graphs_corner_so_translation_does_not_change_them():
    mapper = FourierFeatureMapper(4, 1.0, 2, seed=0)
    pos = torch.rand(6, 2)
    graph_id = torch.tensor([0, 0, 0, 1, 1, 1])
    moved = pos + torch.tensor([[3.7, -2.2]] * 3 + [[-40.0, 12.5]] * 3)

    def features(p, relative=True):
        return node_features(p, torch.tensor([0, 1, 2] * 2), torch.ones(6, 1), torch.zeros(6, 0), graph_id, 2, 3,
                             mapper, boundary_distance=True, relative_coordinates=relative)

    x = features(pos)
    corner = torch.stack([pos[:3].min(0).values, pos[3:].min(0).values])[graph_id]
    torch.testing.assert_close(x[:, :2], pos - corner)  # in physical units, not over the extent
    torch.testing.assert_close(features(moved), x, rtol=0, atol=1e-4)  # float32 rounding of the move
    # layout 1 (relative_coordinates=False) starts with the raw coordinates, as before
    raw = features(moved, relative=False)
    torch.testing.assert_close(raw[:, :2], moved)
    torch.testing.assert_close(raw[:, 2:], x[:, 2:], rtol=0, atol=1e-4)
