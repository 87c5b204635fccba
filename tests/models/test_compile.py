"""The compiled forward (trainer.compile) traces the model's tensor computation as a whole,
with dynamic sizes, and computes what the eager model computes. Inductor code generation is
exercised on the GPU tests; here dynamo's tracing runs with the "eager" backend (seconds, not
the minutes inductor takes on 2 CPU cores)."""

import torch
from torch_geometric.data import Batch

from conftest import TARGETS, heat2d_graph
from meshgnn.models import EdgeGNN
from meshgnn.models.build import compiled_forward


def test_compiled_forward_matches_eager_on_meshes_of_other_sizes():
    torch._dynamo.reset()
    torch.manual_seed(0)
    graphs = [heat2d_graph(index, num_levels=2) for index in range(3)]
    model = EdgeGNN(graphs[0].x.shape[1], graphs[0].edge_attr.shape[1], TARGETS, hidden_dim=16,
                    num_layers=1, mlp_layers=2, dropout=0.0, aggregation="sum", num_levels=2,
                    residual=True).eval()
    forward = compiled_forward(model, backend="eager")
    for batch in (Batch.from_data_list(graphs[:1]), Batch.from_data_list(graphs[1:]), graphs[2]):
        with torch.no_grad():
            expected, _ = model(batch)
            got, aux = forward(batch)
        for name, _ in TARGETS:
            torch.testing.assert_close(got[name], expected[name])
        assert aux["node_latent"].shape[0] == batch.num_nodes
