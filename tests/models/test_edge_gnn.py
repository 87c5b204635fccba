import pytest
import torch
from torch_geometric.data import Batch, Data, InMemoryDataset

from conftest import CONF, compose_config
from meshgnn.data.features import GraphDataset
from meshgnn.data.hierarchy import HierarchySpec, MultiScaleData, attach_levels
from meshgnn.data.features import ModelInputs
from meshgnn.models import EdgeGNN, build_model
from meshgnn.models.edge_gnn import ProcessorBlock
from meshgnn.segments import destination_offsets, segment_aggregate


@pytest.fixture(autouse=True)
def one_thread():
    """These graphs have tens of nodes: intra-op threads only add overhead, and on a busy
    machine two threads contending with other work make the overfitting tests 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def grid_graph(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.arange(n * n).view(n, n)
    right = torch.stack([idx[:, :-1].reshape(-1), idx[:, 1:].reshape(-1)])
    down = torch.stack([idx[:-1, :].reshape(-1), idx[1:, :].reshape(-1)])
    edge_index = torch.cat([right, down, right.flip(0), down.flip(0)], dim=1)
    edge_index = edge_index[:, torch.argsort(edge_index[1] * n * n + edge_index[0])]  # as the data pipeline
    pos = torch.stack(torch.meshgrid(torch.linspace(0, 1, n), torch.linspace(0, 1, n), indexing="ij"), -1).view(-1, 2)
    rel = pos[edge_index[1]] - pos[edge_index[0]]
    x = torch.cat([pos, torch.randn(n * n, 2, generator=g)], dim=1)
    y = torch.cat([torch.sin(3 * pos[:, :1]) * pos[:, 1:], (pos ** 2)], dim=1)
    return Data(x=x, edge_index=edge_index, edge_attr=torch.cat([rel, rel.norm(dim=1, keepdim=True)], 1), y=y,
                pos=pos)


def make_model(aggregation="sum", dropout=0.0):
    return EdgeGNN(4, 3, [("a", 1), ("b", 2)], hidden_dim=32, num_layers=3, mlp_layers=2,
                   dropout=dropout, aggregation=aggregation)


def test_output_shapes_per_target_and_aggregations():
    batch = Batch.from_data_list([grid_graph(4), grid_graph(5)])
    for aggregation in ("sum", "mean", "max"):
        pred, aux = make_model(aggregation)(batch)
        assert pred["a"].shape == (41, 1) and pred["b"].shape == (41, 2)
        assert aux["node_latent"].shape == (41, 32)


def test_batching_does_not_mix_graphs():
    model = make_model().eval()
    g1, g2 = grid_graph(4, 0), grid_graph(5, 1)
    alone, _ = model(Batch.from_data_list([g1]))
    together, _ = model(Batch.from_data_list([g1, g2]))
    torch.testing.assert_close(together["a"][:16], alone["a"], rtol=1e-5, atol=1e-5)


def fit_loss(model, batch, steps: int) -> float:
    """Final training loss of `steps` Adam steps on one batch (can the model overfit it?)."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        pred, _ = model(batch)
        loss = ((pred["a"] - batch.y[:, :1]) ** 2).mean() + ((pred["b"] - batch.y[:, 1:]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())


def test_overfits_one_small_sample():
    torch.manual_seed(0)
    assert fit_loss(make_model(), Batch.from_data_list([grid_graph(6)]), steps=300) < 1e-3


def test_split_first_edge_layer_equals_mlp_on_the_concatenation():
    torch.manual_seed(0)
    block = ProcessorBlock(hidden_dim=8, mlp_layers=2, dropout=0.0, aggregation="sum")
    g = grid_graph(4)
    h, e = torch.randn(16, 8), torch.randn(g.edge_index.size(1), 8)
    src, dst = g.edge_index
    e_ref = e + block.edge_mlp(torch.cat([e, h[src], h[dst]], dim=-1))
    agg = torch.zeros(16, 8).index_add_(0, dst, e_ref)
    h_ref = h + block.node_mlp(torch.cat([h, agg], dim=-1))
    h_out, e_out = block(h, g.edge_index, e, destination_offsets(g.edge_index, 16))
    torch.testing.assert_close(e_out, e_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h_out, h_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("aggregation", ["sum", "mean", "max"])
def test_segment_aggregation_over_sorted_edges_equals_a_scatter(aggregation):
    """Nodes 0 and 6 have no incoming edges (the empty segments at both ends and in the middle
    of the offsets) and must aggregate to zero, as a scatter gives them."""
    from torch_geometric.utils import scatter
    torch.manual_seed(0)
    num_nodes, num_edges = 9, 40
    dst = torch.randint(1, num_nodes, (num_edges,))
    dst[dst == 6] = 5
    edge_index = torch.stack([torch.randint(0, num_nodes, (num_edges,)), dst])
    edge_index = edge_index[:, torch.argsort(edge_index[1] * num_nodes + edge_index[0])]
    e = torch.randn(num_edges, 8, requires_grad=True)
    ptr = destination_offsets(edge_index, num_nodes)
    assert ptr.tolist()[:2] == [0, 0] and ptr[7] == ptr[6] and ptr[-1] == num_edges
    out = segment_aggregate(e, edge_index, ptr, aggregation)
    expected = scatter(e, edge_index[1], dim=0, dim_size=num_nodes, reduce=aggregation)
    torch.testing.assert_close(out, expected)
    assert out[[0, 6]].abs().sum() == 0
    grad = torch.randn(num_nodes, 8)
    (got,) = torch.autograd.grad(out, e, grad)
    (want,) = torch.autograd.grad(expected, e, grad)
    torch.testing.assert_close(got, want)


def test_activation_checkpointing_gives_the_same_outputs_and_gradients():
    """Dropout on, so the recomputation must also replay the same random masks."""
    batch = Batch.from_data_list(with_levels([grid_graph(5), grid_graph(4, seed=1)], num_levels=2))
    results, kept = [], []
    for checkpointed in (False, True):
        torch.manual_seed(0)
        model = EdgeGNN(4, 3, [("a", 1), ("b", 2)], hidden_dim=16, num_layers=2, mlp_layers=2,
                        dropout=0.2, aggregation="sum", num_levels=2)
        model.checkpoint_blocks = checkpointed
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            pred, _ = model(batch)
        kept.append(sum(saved))
        loss = (pred["a"] ** 2).mean() + pred["b"].sin().mean()
        loss.backward()
        results.append((pred, [p.grad for p in model.parameters()]))
    assert kept[1] < 0.5 * kept[0], kept  # what backward holds on to between the passes
    (pred, grads), (pred_ckpt, grads_ckpt) = results
    torch.testing.assert_close(pred_ckpt, pred, rtol=0, atol=0)
    for grad, grad_ckpt in zip(grads, grads_ckpt):
        torch.testing.assert_close(grad_ckpt, grad, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# Multi-scale (num_levels > 0)
# ---------------------------------------------------------------------------------------------

def with_levels(graphs, num_levels, coarsening=2.0):
    """The graphs as dataset items carrying their coarse levels, built the way load_datasets
    builds them (collate, attach_levels, index the GraphDataset)."""
    # (one graph more: InMemoryDataset.collate of a single graph gives no slices)
    store, slices = InMemoryDataset.collate([MultiScaleData(**g.to_dict()) for g in [*graphs, graphs[0]]])
    attach_levels(store, slices, HierarchySpec(num_levels, coarsening))
    dataset = GraphDataset(store, slices)
    return [dataset[i] for i in range(len(graphs))]


def make_multiscale_model(num_levels=2, num_layers=2, hidden_dim=32):
    return EdgeGNN(4, 3, [("a", 1), ("b", 2)], hidden_dim=hidden_dim, num_layers=num_layers, mlp_layers=2,
                   dropout=0.0, aggregation="sum", num_levels=num_levels)


def test_multiscale_output_shapes():
    batch = Batch.from_data_list(with_levels([grid_graph(4), grid_graph(5)], num_levels=2))
    assert int(batch.num_coarse_1.sum()) < 41 and int(batch.num_coarse_2.sum()) < int(batch.num_coarse_1.sum())
    pred, aux = make_multiscale_model()(batch)
    assert pred["a"].shape == (41, 1) and pred["b"].shape == (41, 2)
    assert aux["node_latent"].shape == (41, 32)


def test_multiscale_batching_does_not_mix_graphs():
    torch.manual_seed(0)
    model = make_multiscale_model(num_levels=2).eval()
    g1, g2 = grid_graph(4, 0), grid_graph(5, 1)
    alone1, _ = model(Batch.from_data_list(with_levels([g1], 2)))
    alone2, _ = model(Batch.from_data_list(with_levels([g2], 2)))
    together, _ = model(Batch.from_data_list(with_levels([g1, g2], 2)))
    for name in ("a", "b"):
        torch.testing.assert_close(together[name][:16], alone1[name], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(together[name][16:], alone2[name], rtol=1e-5, atol=1e-5)


def test_coarse_levels_carry_information_beyond_the_fine_blocks():
    # With one block per level, the finest level alone (processor + up[0]) reaches 2 hops; the
    # coarse graphs must carry a change at one corner of a 10 x 10 grid to the opposite corner.
    torch.manual_seed(0)
    g = grid_graph(10)
    perturbed = g.clone()
    perturbed.x = g.x.clone()
    perturbed.x[0] += 1.0
    for num_levels, reaches in ((0, False), (3, True)):
        model = make_multiscale_model(num_levels=num_levels, num_layers=1).eval()
        graphs = with_levels([g, perturbed], num_levels) if num_levels else [g, perturbed]
        pred = [model(Batch.from_data_list([item]))[0]["a"] for item in graphs]
        changed = (pred[0] - pred[1]).abs().squeeze(1) > 1e-6
        assert bool(changed[0])
        assert bool(changed[99]) == reaches


def test_multiscale_overfits_one_small_sample():
    torch.manual_seed(0)
    batch = Batch.from_data_list(with_levels([grid_graph(6)], num_levels=2))
    assert int(batch.num_coarse_2.sum()) > 1  # both levels are real graphs, not a single node
    model = make_multiscale_model(num_levels=2, num_layers=1)  # 5 blocks: 1 + 2 down + 2 up
    assert fit_loss(model, batch, steps=200) < 1e-3


# ---------------------------------------------------------------------------------------------
# Presets in conf/model
# ---------------------------------------------------------------------------------------------

PRESETS = sorted(path.stem for path in (CONF / "model").glob("*.yaml"))
HEAT2D_TARGETS = [("temperature", 1), ("heat_flux", 2)]


def test_the_expected_presets_exist():
    assert {"edge_gnn", "multiscale_gnn", "meshgraphnet"} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_every_model_preset_composes_builds_and_runs(name):
    cfg = compose_config([f"model={name}"])
    assert cfg.model.name == name
    inputs = ModelInputs.of_model(cfg.model)
    assert (inputs.hierarchy is None) == (cfg.model.num_levels == 0)
    model = build_model(cfg.model, 12, 3, HEAT2D_TARGETS).eval()
    assert model.num_levels == cfg.model.num_levels
    graphs = []
    for n, seed in ((7, 0), (9, 1)):
        g = grid_graph(n, seed)
        g.x = torch.randn(n * n, 12, generator=torch.Generator().manual_seed(seed))
        if inputs.residual:
            g.prior = torch.randn(n * n, 3, generator=torch.Generator().manual_seed(seed))
        graphs.append(g)
    if inputs.hierarchy is not None:
        graphs = with_levels(graphs, inputs.hierarchy.num_levels, inputs.hierarchy.coarsening)
    with torch.no_grad():
        pred, aux = model(Batch.from_data_list(graphs))
    assert pred["temperature"].shape == (130, 1) and pred["heat_flux"].shape == (130, 2)
    assert aux["node_latent"].shape == (130, cfg.model.hidden_dim)
    assert all(bool(p.isfinite().all()) for p in pred.values())
    if inputs.residual:  # the heads correct the prior: shifting it shifts the answer
        shifted = Batch.from_data_list(graphs)
        shifted.prior = shifted.prior + 1.0
        with torch.no_grad():
            moved, _ = model(shifted)
        torch.testing.assert_close(moved["heat_flux"], pred["heat_flux"] + 1.0)


def test_meshgraphnet_preset_is_the_classic_shape():
    cfg = compose_config(["model=meshgraphnet"]).model
    assert (cfg.hidden_dim, cfg.num_layers, cfg.mlp_layers, cfg.aggregation) == (128, 15, 2, "sum")
    assert cfg.broadcast_globals is False and cfg.num_levels == 0 and cfg.residual is False
    assert ModelInputs.of_model(cfg).hierarchy is None and ModelInputs.of_model(cfg).broadcast_globals is False

    H, L, node_dim, edge_dim = 128, 15, 12, 3
    linear = lambda i, o: i * o + o  # noqa: E731
    layer_norm = 2 * H
    encoder = lambda i: linear(i, H) + linear(H, H) + layer_norm  # noqa: E731
    block = (linear(3 * H, H) + linear(H, H) + layer_norm) + (linear(2 * H, H) + linear(H, H) + layer_norm)
    decoder = lambda dim: linear(H, H) + linear(H, dim)  # noqa: E731
    expected = (encoder(node_dim) + encoder(edge_dim) + L * block
                + sum(decoder(dim) for _, dim in HEAT2D_TARGETS))
    model = build_model(cfg, node_dim, edge_dim, HEAT2D_TARGETS)
    assert sum(p.numel() for p in model.parameters()) == expected
