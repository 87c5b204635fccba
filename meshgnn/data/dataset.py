"""Datasets ready for training: cached graphs -> features -> split -> normalised.

The whole dataset is held collated (PyG's InMemoryDataset layout: one big tensor per attribute
plus slice offsets), so features and normalisation are a handful of vectorised operations and
a cached dataset loads in well under a second.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor
from torch_geometric.data import Dataset, InMemoryDataset
from torch_geometric.loader import DataLoader

from meshgnn.data.cache import cached, config_hash
from meshgnn.data.features import (SPLITS, GraphDataset, MeshDatasets, ModelInputs, add_levels, add_node_features,
                                   check_normalizer, feature_spec, fix_cell_size, normalize, split_indices)
from meshgnn.data.generate import generate_samples, plain_mesh_size
from meshgnn.data.graph import row_graph, sample_to_graph
from meshgnn.data.hierarchy import MultiScaleData
from meshgnn.data.interrupt import interruptible
from meshgnn.data.normalizer import Normalizer
from meshgnn.data.sampler import EpochBatchSampler
from meshgnn.data.sources import get_source
from meshgnn.data.store_batches import BatchedDataset, as_batch

log = logging.getLogger(__name__)


def generating_keys(cfg: DictConfig) -> dict:
    """The data keys that change generated samples (and so the cache key), the source's own
    knobs (e.g. heat2d's shepard_neighbours, ranges, families) included, as plain values."""
    source = get_source(cfg.name)
    mesh_size = plain_mesh_size(cfg.mesh_size)
    return {"name": cfg.name, "version": source.version, "num_samples": cfg.num_samples,
            "mesh_size": list(mesh_size) if isinstance(mesh_size, tuple) else mesh_size,
            "max_holes": cfg.max_holes, "seed": cfg.seed,
            **source.knob_values(cfg)}


def _generate(cfg: DictConfig) -> dict:
    """Samples -> graphs -> one collated store; a stop signal on the way caches nothing."""
    source = get_source(cfg.name)
    with interruptible(f"generating the {cfg.name} dataset",
                       lambda stop: "nothing was cached. Run the same command again to generate it"):
        samples = generate_samples(source, cfg.num_samples, cfg.seed, cfg.mesh_size, cfg.max_holes,
                                   cfg.generate_workers, data=cfg)
        graphs = [sample_to_graph(s, source.spec) for s in samples]
        store, slices = InMemoryDataset.collate(graphs)
    return {"store": store.to_dict(), "slices": slices}


def _collated_problem(raw: object) -> str | None:
    """What keeps a loaded data.pt from being a collated store ({'store', 'slices'} of tensors)."""
    if not isinstance(raw, dict) or not {"store", "slices"} <= raw.keys():
        found = sorted(map(str, raw)) if isinstance(raw, dict) else type(raw).__name__
        return f"expected a dict with 'store' and 'slices', found {found}"
    for part in ("store", "slices"):
        if not isinstance(raw[part], dict) or "pos" not in raw[part]:
            return f"'{part}' has no 'pos' tensor"
    if not all(isinstance(v, Tensor) for v in raw["slices"].values()):
        return "'slices' holds values other than tensors"
    return None


def load_datasets(cfg: DictConfig, data_dir: str | Path, model_inputs: ModelInputs,
                  normalizer: Normalizer | None = None) -> MeshDatasets:
    """The configured dataset, normalised and split: a built-in source (generated, or loaded
    from cache, and held in memory) or a folder of mesh files (see `folder_dataset`).

    `normalizer` (from a checkpoint) replaces fitting: a resumed or warm-started model must
    see its inputs scaled exactly as during its training.
    """
    if cfg.name == "mesh_folder":
        from meshgnn.data.folder_dataset import load_folder_datasets

        return load_folder_datasets(cfg, Path(data_dir), model_inputs, normalizer)
    source = get_source(cfg.name)
    keys = generating_keys(cfg)
    raw, folder = cached(Path(data_dir), cfg.name, keys, lambda: _generate(cfg), _collated_problem,
                         f"the {cfg.name} generator")
    store, slices = MultiScaleData.from_dict(raw["store"]), raw["slices"]
    num_graphs = len(slices["pos"]) - 1
    features = feature_spec(cfg, source.spec, model_inputs)
    add_node_features(store, slices, features)

    index = split_indices(num_graphs, (cfg.split.train, cfg.split.val, cfg.split.test), cfg.seed)
    if normalizer is None:
        is_train = torch.zeros(num_graphs, dtype=torch.bool)
        is_train[index["train"]] = True
        node_train, edge_train = is_train[row_graph(slices["pos"])], is_train[row_graph(slices["edge_attr"])]
        normalizer = Normalizer.fit({"x": store.x[node_train], "edge_attr": store.edge_attr[edge_train],
                                     "y": store.y[node_train]}, std_floor=cfg.std_floor)
    check_normalizer(normalizer, store.x.shape[1], cfg.name)
    features = fix_cell_size(features, normalizer)  # the levels' cells need the edge statistics
    add_levels(store, slices, features)
    normalize(store, slices, normalizer, features.residual)

    full = GraphDataset(store, slices)
    splits = {name: full.index_select(index[name]) for name in SPLITS}
    log.info("dataset %s: %d graphs (train %d, val %d, test %d), cache %s", cfg.name, num_graphs,
             len(splits["train"]), len(splits["val"]), len(splits["test"]), folder)
    fingerprint = config_hash({**keys, **features.fingerprint_keys(),
                               "split": [cfg.split.train, cfg.split.val, cfg.split.test]})
    return MeshDatasets(splits, features, normalizer, fingerprint, folder)


def make_loader(dataset: GraphDataset, batch_size: int, shuffle: bool, seed: int,
                num_workers: int, pin_memory: bool = False, rank: int = 0, world_size: int = 1,
                pad: bool = False) -> DataLoader:
    """A loader whose batch order depends only on `seed` and the epoch (see sampler);
    `pin_memory` for non-blocking copies to a GPU. An in-memory dataset's batches are gathered
    from its store (`store_batches`: no per-graph work, nothing waits for a GPU store); a
    per-file dataset's are PyG's collation of its graphs. Under DDP each rank loads its own shard
    (`rank`, `world_size`), of equal size for every rank with `pad`."""
    sampler = EpochBatchSampler(len(dataset), batch_size, shuffle, seed, rank, world_size, pad)
    if isinstance(dataset, GraphDataset):  # in memory: each batch gathered from the store at once
        return torch.utils.data.DataLoader(BatchedDataset(dataset), batch_sampler=sampler, collate_fn=as_batch,
                                           num_workers=num_workers, persistent_workers=num_workers > 0,
                                           pin_memory=pin_memory)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                      persistent_workers=num_workers > 0, pin_memory=pin_memory)


def move_to_device(datasets: dict[str, Dataset], device: torch.device, budget_bytes: int) -> bool:
    """Put in-memory datasets (splits sharing one collated store) on `device` when the store
    takes at most `budget_bytes`; True if they moved. Per-file datasets stay where they are."""
    stores = {id(ds._data): ds._data for ds in datasets.values() if isinstance(ds, GraphDataset)}
    if len(stores) != 1 or len(datasets) != sum(isinstance(ds, GraphDataset) for ds in datasets.values()):
        return False
    (store,) = stores.values()
    size = sum(v.numel() * v.element_size() for v in store.values() if isinstance(v, Tensor))
    if size > budget_bytes:
        return False
    store.to(device)  # in place: every split indexes the same store
    for dataset in datasets.values():
        dataset._data_list = None  # graphs read before the move are cached on the host
    return True
