"""Padding batches to size buckets (what CUDA graphs replay on), on the CPU: the padded step
computes the same loss, logged values and gradients as the unpadded one; pad rows are
unreachable from real rows; buckets are few and fixed."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
from torch_geometric.data import Batch

from conftest import ROOT, compose_config
from meshgnn.data.dataset import make_loader
from meshgnn.experiment import run
from meshgnn.training.padding import GRAPHS, BatchLayout, SizeBuckets, pad_batch
from training_parts import ALL_TERMS, training_parts

def _setup(data_cache, model: str):
    parts = training_parts(data_cache, model)
    return parts.data, parts.model.double(), parts.loss_fn.double()


def _loss_and_gradients(net, loss_fn, batch):
    batch = batch.clone()
    for key in batch.keys():
        if torch.is_tensor(batch[key]) and batch[key].is_floating_point():
            batch[key] = batch[key].double()
    net.zero_grad(set_to_none=True)
    pred, _ = net(batch)
    loss, logged = loss_fn(pred, batch)
    loss.backward()
    return {k: float(v) for k, v in logged.items()}, [p.grad.clone() for p in net.parameters()]


def _batches(data, sizes):
    dataset = data.splits["train"]
    start = 0
    for size in sizes:
        yield Batch.from_data_list([dataset[i] for i in range(start, start + size)])
        start += size


@pytest.mark.parametrize("model", ["multiscale_gnn", "edge_gnn"])
@pytest.mark.parametrize("graphs", [1, 4])
def test_a_padded_batch_gives_the_same_loss_logged_values_and_gradients(data_cache, model, graphs):
    data, net, loss_fn = _setup(data_cache, model)
    batch = next(_batches(data, [graphs]))
    layout = BatchLayout.of(batch)
    # a generous bucket: many pad rows of every kind, and pad graphs beyond the dummy one
    capacity = {kind: 2 * rows + 7 for kind, rows in layout.kinds.items()}
    padded = pad_batch(batch, layout, capacity)
    assert padded.real_graphs == graphs and padded.ptr.shape[0] == capacity[GRAPHS] + 1
    plain_logged, plain_grads = _loss_and_gradients(net, loss_fn, batch)
    padded_logged, padded_grads = _loss_and_gradients(net, loss_fn, padded)
    assert padded_logged.keys() == plain_logged.keys()
    for key, value in plain_logged.items():
        assert padded_logged[key] == pytest.approx(value, rel=1e-10, abs=1e-12), key
    for plain, pad in zip(plain_grads, padded_grads):
        torch.testing.assert_close(pad, plain, rtol=1e-9, atol=1e-12)


def test_pad_rows_are_unreachable_from_real_rows_and_edges_stay_sorted(data_cache):
    data, _, _ = _setup(data_cache, "multiscale_gnn")
    batch = next(_batches(data, [3]))
    layout = BatchLayout.of(batch)
    capacity = {kind: rows + 5 for kind, rows in layout.kinds.items()}
    padded = pad_batch(batch, layout, capacity)
    nodes, padded_nodes = batch.num_nodes, capacity[layout.node_kind]
    # what the model indexes: the mesh's edges and every level's clusters and edges
    assert set(layout.index_kind) == {"edge_index", *(f"{k}_{level}" for k in ("cluster", "edge_index")
                                                     for level in (1, 2, 3))}
    for key, kind in layout.index_kind.items():
        real = batch[key].shape[-1] if key.startswith("edge_index") else batch[key].shape[0]
        pad = padded[key][..., real:] if key.startswith("edge_index") else padded[key][real:]
        assert (pad == capacity[kind] - 1).all(), key  # the last pad row of the kind indexed
        assert torch.equal(padded[key][..., :real] if key.startswith("edge_index") else padded[key][:real],
                           batch[key])
        if key.startswith("edge_index"):  # still sorted by destination, as aggregation needs
            assert bool((padded[key][1].diff() >= 0).all()), key
    assert (padded.batch[nodes:] == capacity[GRAPHS] - 1).all() and padded.batch.shape[0] == padded_nodes
    assert padded.graph_weight.tolist() == [1.0] * 3 + [0.0] * (capacity[GRAPHS] - 3)
    assert padded.ptr[-1] == padded_nodes and (padded.ptr[4:-1] == nodes).all()
    assert float(padded.x[nodes:].abs().sum()) == 0.0


def test_a_layout_follows_the_batch_not_attribute_names(data_cache):
    """An attribute a future source adds (here one per edge, one per node and an index into
    the nodes) is padded by its kind without padding.py knowing its name."""
    data, _, _ = _setup(data_cache, "edge_gnn")
    graphs = [data.splits["train"][i] for i in range(2)]
    for graph in graphs:
        graph.edge_weight = torch.ones(graph.edge_index.shape[1])
        graph.node_score = torch.ones(graph.num_nodes, 2)
        graph.corner_index = torch.tensor([0, 1])
    batch = Batch.from_data_list(graphs)
    layout = BatchLayout.of(batch)
    assert layout.attribute_kind["edge_weight"] == layout.attribute_kind["edge_attr"]
    assert layout.attribute_kind["node_score"] == layout.node_kind
    assert layout.index_kind["corner_index"] == layout.node_kind
    padded = pad_batch(batch, layout, {kind: rows + 3 for kind, rows in layout.kinds.items()})
    assert padded.edge_weight.shape[0] == padded.edge_attr.shape[0]
    assert padded.corner_index[4:].tolist() == [padded.num_nodes - 1] * 3


def test_buckets_are_rungs_of_one_ladder_that_fit_every_kind_with_a_pad_row(data_cache):
    data, _, _ = _setup(data_cache, "multiscale_gnn")
    buckets = SizeBuckets(1.1)
    loader = make_loader(data.splits["train"], 3, True, 0, 0)  # 16 meshes: five of 3 and one of 1
    for batch in loader:
        layout = BatchLayout.of(batch)
        capacity = buckets.capacities(layout)
        assert all(capacity[kind] >= rows + 1 for kind, rows in layout.kinds.items())
        # every kind at the same rung k: reference x 1.1^k, whichever batch reached it
        rungs = [k for k in range(-40, 40)
                 if all(capacity[kind] == math.ceil(buckets.reference[kind] * 1.1 ** k - 1e-6) for kind in capacity)]
        assert len(rungs) == 1, capacity
    with pytest.raises(ValueError, match="above 1"):
        SizeBuckets(1.0)


def test_batches_of_similar_size_share_a_few_buckets(data_cache):
    data, _, _ = _setup(data_cache, "multiscale_gnn")
    buckets = SizeBuckets(1.1)
    loader = make_loader(data.splits["train"], 4, True, 0, 0)
    captured = set()
    batches = 0
    for epoch in range(3):
        loader.batch_sampler.set_epoch(epoch)
        for batch in loader:
            captured.add(tuple(sorted(buckets.capacities(BatchLayout.of(batch)).items())))
            batches += 1
    # 12 batches of 4 random meshes: rows per batch vary by about +-20 %, a handful of rungs
    assert len(captured) <= 6 < batches, (len(captured), batches)


@pytest.mark.slow
def test_train_py_with_cuda_graphs_on_a_cpu_pads_its_batches_and_trains_like_eager(tmp_path, data_cache, caplog):
    """Without CUDA the padded steps run eagerly: train.py's results are the unpadded run's to
    float rounding, and the log says no graphs were captured."""
    metrics = {}
    for graphs in (False, True):
        run_dir = tmp_path / str(graphs)
        overrides = ["trainer=debug", "data.num_samples=20", "model.hidden_dim=16", "logger=csv", *ALL_TERMS,
                     f"trainer.cuda_graphs={str(graphs).lower()}", "trainer.log_every_steps=3",
                     f"paths.root_dir={ROOT}", f"paths.data_dir={data_cache}", f"paths.output_dir={run_dir}"]
        with caplog.at_level(logging.WARNING):
            run(compose_config(overrides), overrides)
        metrics[graphs] = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("padded to size buckets but run eagerly" in r.getMessage() for r in caplog.records)
    assert len(metrics[True]) == len(metrics[False]) == 2
    for padded, plain in zip(metrics[True], metrics[False]):
        for key, value in plain.items():
            if key != "epoch_time_s":
                assert padded[key] == pytest.approx(value, rel=1e-4, abs=1e-7), key
