import torch
from torch_geometric.data import Batch, Data

from meshgnn.models import EdgeGNN


def grid_graph(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.arange(n * n).view(n, n)
    right = torch.stack([idx[:, :-1].reshape(-1), idx[:, 1:].reshape(-1)])
    down = torch.stack([idx[:-1, :].reshape(-1), idx[1:, :].reshape(-1)])
    edge_index = torch.cat([right, down, right.flip(0), down.flip(0)], dim=1)
    pos = torch.stack(torch.meshgrid(torch.linspace(0, 1, n), torch.linspace(0, 1, n), indexing="ij"), -1).view(-1, 2)
    rel = pos[edge_index[1]] - pos[edge_index[0]]
    x = torch.cat([pos, torch.randn(n * n, 2, generator=g)], dim=1)
    y = torch.cat([torch.sin(3 * pos[:, :1]) * pos[:, 1:], (pos ** 2)], dim=1)
    return Data(x=x, edge_index=edge_index, edge_attr=torch.cat([rel, rel.norm(dim=1, keepdim=True)], 1), y=y)


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


def test_overfits_one_small_sample():
    torch.manual_seed(0)
    batch = Batch.from_data_list([grid_graph(6)])
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        pred, _ = model(batch)
        loss = ((pred["a"] - batch.y[:, :1]) ** 2).mean() + ((pred["b"] - batch.y[:, 1:]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 1e-3


def test_split_first_edge_layer_equals_mlp_on_the_concatenation():
    from meshgnn.models.edge_gnn import ProcessorBlock
    torch.manual_seed(0)
    block = ProcessorBlock(hidden_dim=8, mlp_layers=2, dropout=0.0, aggregation="sum")
    g = grid_graph(4)
    h, e = torch.randn(16, 8), torch.randn(g.edge_index.size(1), 8)
    src, dst = g.edge_index
    e_ref = e + block.edge_mlp(torch.cat([e, h[src], h[dst]], dim=-1))
    agg = torch.zeros(16, 8).index_add_(0, dst, e_ref)
    h_ref = h + block.node_mlp(torch.cat([h, agg], dim=-1))
    h_out, e_out = block(h, g.edge_index, e)
    torch.testing.assert_close(e_out, e_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h_out, h_ref, rtol=1e-5, atol=1e-5)
