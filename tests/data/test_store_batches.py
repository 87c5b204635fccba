"""Batches assembled from the store (`StoreBatches`) are PyG's batches of the same graphs:
every attribute, its slices and increments, the batch vector and ptr, for multi-scale and
single-level data, any subset and order of graphs; a DataLoader over them trains the same."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch

from conftest import ROOT, compose_config
from meshgnn.data.dataset import load_datasets, make_loader
from meshgnn.data.features import ModelInputs
from meshgnn.data.store_batches import StoreBatches


@pytest.fixture(scope="module", params=["multiscale_gnn", "edge_gnn"])
def datasets(request, data_cache):
    cfg = compose_config(["trainer=debug", "data.num_samples=20", f"model={request.param}",
                          f"paths.root_dir={ROOT}", f"paths.data_dir={data_cache}"])
    return load_datasets(cfg.data, cfg.paths.data_dir, ModelInputs.of_model(cfg.model))


def _assert_same_batch(ours: Batch, theirs: Batch) -> None:
    assert type(ours).__name__ == type(theirs).__name__ and sorted(ours.keys()) == sorted(theirs.keys())
    for key in theirs.keys():
        if torch.is_tensor(theirs[key]):
            assert ours[key].dtype == theirs[key].dtype and torch.equal(ours[key], theirs[key]), key
        else:
            assert ours[key] == theirs[key], key
    assert ours.num_graphs == theirs.num_graphs and ours.num_nodes == theirs.num_nodes
    assert ours._slice_dict.keys() == theirs._slice_dict.keys()
    for key, slices in theirs._slice_dict.items():
        assert torch.equal(ours._slice_dict[key], slices), key
        assert torch.equal(ours._inc_dict[key], theirs._inc_dict[key]), key
    assert ours._store._num_nodes == theirs._store._num_nodes


@pytest.mark.parametrize("indices", [[0], [3, 1, 2], [5, 5, 0, 11, 7, 2, 9, 15], list(range(16))])
def test_a_batch_from_the_store_is_pyg_s_batch_of_the_same_graphs(datasets, indices):
    train = datasets.splits["train"]  # a subset of the store (index_select): its own graph ids
    ours = StoreBatches(train).batch(indices)
    _assert_same_batch(ours, Batch.from_data_list([train[i] for i in indices]))
    # and a graph taken back out of it is the dataset's graph
    for position, index in enumerate(indices):
        for key, value in train[index].items():
            if torch.is_tensor(value):
                assert torch.equal(ours.get_example(position)[key], value), key


def test_the_loader_gives_pyg_s_batches_in_the_sampler_s_order_also_from_worker_processes(datasets):
    train = datasets.splits["train"]
    for workers in (0, 2):
        loader = make_loader(train, 5, True, 7, workers)
        loader.batch_sampler.set_epoch(3, skip_batches=1)
        order = list(loader.batch_sampler)
        batches = list(loader)
        assert len(batches) == len(order) == 3  # 16 graphs in batches of 5, the first one skipped
        for batch, indices in zip(batches, order):
            _assert_same_batch(batch, Batch.from_data_list([train[i] for i in indices]))
