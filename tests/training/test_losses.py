"""Each loss term on hand-computed cases."""

import pytest
import torch
from torch_geometric.data import Batch, Data

from conftest import TARGETS, heat2d_graph
from meshgnn.training.losses import TERMS, CompositeLoss


def path_graph(values, lengths=(1.0, 2.0)):
    """Three nodes on a line, 0-1 (length lengths[0]) and 1-2 (length lengths[1]); edges sorted by
    destination, as the data pipeline gives them."""
    edge_index = torch.tensor([[1, 0, 2, 1], [0, 1, 1, 2]])
    edge_len = torch.tensor([lengths[0], lengths[0], lengths[1], lengths[1]])
    return Data(y=torch.tensor(values).view(-1, 1), edge_index=edge_index, edge_len=edge_len, num_nodes=3)


def make_loss(weights=None, mean=0.0, std=1.0, target_weights=None):
    weights = weights or {t: 1.0 for t in TERMS}
    return CompositeLoss([("u", 1)], weights, target_weights or {}, torch.tensor([mean]),
                         torch.tensor([std]), eps=1e-12)


def components(loss, pred, batch):
    total, logged = loss({"u": pred}, batch)
    return total, logged


def test_perfect_prediction_is_zero_for_every_term():
    batch = Batch.from_data_list([path_graph([1.0, 2.0, 4.0])])
    total, logged = components(make_loss(), batch.y.clone(), batch)
    assert float(total.detach()) == 0.0
    assert all(float(logged[f"loss/{t}"]) == 0.0 for t in TERMS)


def test_truth_plus_constant_has_zero_gradient_and_curvature_terms():
    batch = Batch.from_data_list([path_graph([1.0, 2.0, 4.0])])
    _, logged = components(make_loss(), batch.y + 0.5, batch)
    assert float(logged["loss/gradient_consistency"]) == 0.0
    assert float(logged["loss/curvature"]) == 0.0
    assert float(logged["loss/smoothness"]) == 0.0
    assert float(logged["loss/l1"]) == pytest.approx(0.5)


def test_hand_checked_values_on_a_tiny_mesh():
    # truth [1, 2, 4], prediction [1, 3, 4]; physical = 2 * normalised + 1
    batch = Batch.from_data_list([path_graph([1.0, 2.0, 4.0])])
    pred = torch.tensor([[1.0], [3.0], [4.0]])
    _, logged = components(make_loss(mean=1.0, std=2.0), pred, batch)
    assert float(logged["loss/l1"]) == pytest.approx(1 / 3)
    # physical truth [3, 5, 9], prediction [3, 7, 9]: |err| sum 2 / sum |truth| 17
    assert float(logged["loss/relative_l1"]) == pytest.approx(2 / 17)
    # d along edges (src - dst)/l: truth (-1, 1, -1, 1), pred (-2, 2, -0.5, 0.5)
    assert float(logged["loss/gradient_consistency"]) == pytest.approx((1 + 1 + 0.5 + 0.5) / 4)
    # smoothness penalises only |d pred| > |d true|: edges 0-1 both ways exceed by 1
    assert float(logged["loss/smoothness"]) == pytest.approx(2 / 4)
    # L f_i = sum_j (f_i - f_j): truth (-1, -1, 2), pred (-2, 1, 1) -> |diff| (1, 2, 1)
    assert float(logged["loss/curvature"]) == pytest.approx(4 / 3)


def test_terms_average_per_graph_then_over_graphs():
    small = path_graph([0.0, 0.0, 0.0])
    big = Data(y=torch.zeros(6, 1), edge_index=torch.tensor([[1, 0], [0, 1]]), edge_len=torch.ones(2), num_nodes=6)
    batch = Batch.from_data_list([small, big])
    pred = torch.cat([torch.ones(3, 1), torch.zeros(6, 1)])
    _, logged = components(make_loss(), pred, batch)
    assert float(logged["loss/l1"]) == pytest.approx(0.5)  # (1 + 0) / 2 graphs, not 3 / 9 nodes


def test_total_is_the_weighted_sum_and_zero_weight_terms_carry_no_gradient():
    batch = Batch.from_data_list([path_graph([1.0, 2.0, 4.0])])
    pred = torch.tensor([[1.0], [3.0], [4.0]], requires_grad=True)
    weights = {"l1": 2.0, "relative_l1": 0.0, "smoothness": 0.0, "gradient_consistency": 0.0, "curvature": 0.0}
    loss = make_loss(weights, target_weights={"u": 3.0})
    total, logged = components(loss, pred, batch)
    assert float(total.detach()) == pytest.approx(3.0 * 2.0 * (1 / 3))
    assert float(logged["loss/curvature"]) > 0  # still computed for logging
    total.backward()
    # only the l1 term flows: d/dpred of 6 * mean|err| is 6/3 * sign at the wrong node
    torch.testing.assert_close(pred.grad, torch.tensor([[0.0], [2.0], [0.0]]))


def scatter_reference(pred, batch, loss):
    """The terms as DESIGN.md defines them, with scatters by graph and node id (no reliance on
    any ordering): what the segment sums over sorted rows must equal."""
    from torch_geometric.utils import scatter
    src, dst = batch.edge_index
    node_graph, edge_graph, graphs = batch.batch, batch.batch[dst], batch.num_graphs

    def graph_mean(values, owner):
        return scatter(values, owner, dim=0, dim_size=graphs, reduce="mean").mean()

    def derivative(f):
        return (f[src] - f[dst]) / batch.edge_len.unsqueeze(-1)

    def laplacian(f):
        return scatter(f[dst] - f[src], dst, dim=0, dim_size=f.shape[0], reduce="sum")

    out = {term: 0.0 for term in TERMS}
    for name, _ in TARGETS:
        p, t = pred[name], batch.y[:, loss.columns[name]]
        pp, tp = loss.physical(name, p), loss.physical(name, t)
        out["l1"] += graph_mean((p - t).abs().mean(-1), node_graph)
        out["relative_l1"] += (scatter((pp - tp).abs().sum(-1), node_graph, dim=0, dim_size=graphs)
                               / (scatter(tp.abs().sum(-1), node_graph, dim=0, dim_size=graphs) + 1e-12)).mean()
        out["smoothness"] += graph_mean(torch.relu(derivative(p).abs() - derivative(t).abs()).mean(-1), edge_graph)
        out["gradient_consistency"] += graph_mean((derivative(p) - derivative(t)).abs().mean(-1), edge_graph)
        out["curvature"] += graph_mean((laplacian(p) - laplacian(t)).abs().mean(-1), node_graph)
    return out


def test_segment_sums_over_a_real_batch_equal_scatters_by_graph_and_node():
    batch = Batch.from_data_list([heat2d_graph(index, num_levels=0) for index in range(3)])
    torch.manual_seed(0)
    pred = {"temperature": batch.y[:, :1] + 0.1 * torch.randn(batch.num_nodes, 1),
            "heat_flux": batch.y[:, 1:] + 0.1 * torch.randn(batch.num_nodes, 2)}
    loss = CompositeLoss(TARGETS, {t: 1.0 for t in TERMS}, {}, torch.tensor([1.0, -2.0, 0.5]),
                         torch.tensor([2.0, 3.0, 0.5]), eps=1e-12)
    _, logged = loss(pred, batch)
    for term, value in scatter_reference(pred, batch, loss).items():
        assert float(logged[f"loss/{term}"]) == pytest.approx(float(value), rel=1e-5), term
