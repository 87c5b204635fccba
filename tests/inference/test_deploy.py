import pytest
import torch
from torch_geometric.data import Batch, InMemoryDataset

from conftest import TARGETS, heat2d_graph
from meshgnn.data.features import GraphDataset
from meshgnn.data.hierarchy import HierarchySpec, MultiScaleData, attach_levels
from meshgnn.inference.deploy import export_program, load_program, program_inputs, run_program
from meshgnn.models import EdgeGNN



@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Graphs of a few hundred nodes: on a busy machine, intra-op threads contending with other
    work make each forward ~100x slower (module scope: before the export fixture)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def counts(graph, num_levels):
    """Every size the program treats as dynamic."""
    return [graph.num_nodes, graph.edge_index.shape[1]] + [
        n for level in range(1, num_levels + 1)
        for n in (graph[f"nodes_{level}"].shape[0], graph[f"edge_index_{level}"].shape[1])]


@pytest.fixture(scope="module", params=[0, 2], ids=["levels0", "levels2"])
def exported(request, tmp_path_factory):
    """(model, loaded program, num_levels): a residual model exported traced on one mesh."""
    num_levels = request.param
    torch.manual_seed(0)
    traced_on = heat2d_graph(0, num_levels)
    model = EdgeGNN(traced_on.x.shape[1], traced_on.edge_attr.shape[1], TARGETS, hidden_dim=16, num_layers=1,
                    mlp_layers=2, dropout=0.0, aggregation="sum", num_levels=num_levels, residual=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = export_program(model, Batch.from_data_list([traced_on]), tmp_path_factory.mktemp("deploy") / "model.pt2")
    assert model.training  # export works on a copy
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    model.eval()
    return model, load_program(path), num_levels, counts(traced_on, num_levels)


def assert_matches_eager(model, program, batch):
    with torch.no_grad():
        expected, _ = model(batch)
    got = run_program(program, batch)
    assert list(got) == [name for name, _ in TARGETS]
    for name, _ in TARGETS:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-5)


def test_program_matches_eager_on_a_mesh_of_other_sizes(exported):
    model, program, num_levels, traced_counts = exported
    other = heat2d_graph(2, num_levels)
    assert all(a != b for a, b in zip(counts(other, num_levels), traced_counts))
    assert_matches_eager(model, program, Batch.from_data_list([other]))


def test_program_matches_eager_on_a_batch_of_two_meshes(exported):
    model, program, num_levels, _ = exported
    assert_matches_eager(model, program, Batch.from_data_list([heat2d_graph(1, num_levels),
                                                               heat2d_graph(3, num_levels)]))


@pytest.mark.parametrize("exported", [2], indirect=True, ids=["levels2"])
def test_program_takes_a_coarsest_level_of_one_node_and_no_edges(exported):
    # traced with every count >= 2, the program must not have specialised on it
    model, program, num_levels, _ = exported
    tiny = next(g for g in (heat2d_graph(i, num_levels, mesh_size=0.5) for i in range(10))
                if g[f"nodes_{num_levels}"].shape[0] == 1)
    assert tiny[f"edge_index_{num_levels}"].shape[1] == 0
    assert_matches_eager(model, program, Batch.from_data_list([tiny]))
    assert_matches_eager(model, program, Batch.from_data_list([tiny, heat2d_graph(1, num_levels)]))


def test_program_carries_its_contract(exported):
    model, program, num_levels, _ = exported
    assert program.targets == TARGETS and program.num_levels == num_levels and program.residual
    batch = Batch.from_data_list([heat2d_graph(1, num_levels)])
    inputs = program_inputs(batch, num_levels, residual=True)
    assert len(inputs) == len(program.input_names) == 4 + 5 * num_levels
    assert len(program.program.graph_signature.user_inputs) == len(inputs)
    for name, tensor in zip(program.input_names, inputs):
        assert tensor.dtype == (torch.long if name.startswith(("edge_index", "cluster")) else torch.float32), name
    # nothing of meshgnn is needed to run it: the plain ExportedProgram on plain tensors
    outputs = program.program.module()(*inputs)
    assert [tuple(o.shape) for o in outputs] == [(batch.num_nodes, dim) for _, dim in TARGETS]


# ---------------------------------------------------------------------------------------------
# The level-size placeholder `nodes_l` (attach_levels) and its batching
# ---------------------------------------------------------------------------------------------

def test_level_node_placeholders_batch_with_their_level():
    graphs = [heat2d_graph(0, 2), heat2d_graph(1, 2)]
    batch = Batch.from_data_list(graphs)
    for level in (1, 2):
        assert batch[f"nodes_{level}"].shape == (int(batch[f"num_coarse_{level}"].sum()), 0)
        # cluster indices were offset by the same per-graph counts the placeholder adds up
        assert int(batch[f"cluster_{level}"].max()) == batch[f"nodes_{level}"].shape[0] - 1
    # the collated-dataset path (load_datasets) slices them per graph
    store, slices = InMemoryDataset.collate([MultiScaleData(**g.to_dict()) for g in graphs])
    for key in [k for k in store.keys() if k[-1].isdigit()]:
        del store[key], slices[key]
    attach_levels(store, slices, HierarchySpec(2, 2.0))
    dataset = GraphDataset(store, slices)
    for i, graph in enumerate(graphs):
        for level in (1, 2):
            assert dataset[i][f"nodes_{level}"].shape == graph[f"nodes_{level}"].shape


def test_forward_without_placeholders_counts_clusters_the_old_way():
    torch.manual_seed(0)
    batch = Batch.from_data_list([heat2d_graph(0, 2), heat2d_graph(1, 2)])
    model = EdgeGNN(batch.x.shape[1], 3, TARGETS, hidden_dim=16, num_layers=1, mlp_layers=2, dropout=0.0,
                    aggregation="sum", num_levels=2, residual=True).eval()
    with torch.no_grad():
        pred, aux = model(batch)
        del batch["nodes_1"], batch["nodes_2"]
        old, old_aux = model(batch)
    for name, _ in TARGETS:
        assert torch.equal(pred[name], old[name])
    assert torch.equal(aux["node_latent"], old_aux["node_latent"])
