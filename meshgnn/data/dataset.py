"""Datasets ready for training: cached graphs -> features -> split -> normalised.

The whole dataset is held collated (PyG's InMemoryDataset layout: one big tensor per attribute
plus slice offsets), so features and normalisation are a handful of vectorised operations and
a cached dataset loads in well under a second.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor
from torch_geometric.data import Data, Dataset, InMemoryDataset
from torch_geometric.loader import DataLoader

from meshgnn.data.cache import cached, config_hash
from meshgnn.data.generate import generate_samples
from meshgnn.data.graph import (FourierFeatureMapper, node_features, row_graph, sample_to_graph,
                                sort_edges_by_destination)
from meshgnn.data.hierarchy import HierarchySpec, MultiScaleData, attach_levels
from meshgnn.data.normalizer import Normalizer
from meshgnn.data.sample import FieldSpec, SourceSpec
from meshgnn.data.sampler import EpochBatchSampler
from meshgnn.data.sources import get_source
from meshgnn.errors import UserError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class GraphDataset(InMemoryDataset):
    """An InMemoryDataset over an already collated store (no files of its own)."""

    def __init__(self, store: Data, slices: dict[str, Tensor]) -> None:
        super().__init__(root=None)
        self.data, self.slices = store, slices


@dataclass(frozen=True)
class ModelInputs:
    """What the model config asks of the data: whether it sees the sample's global parameters
    on every node, whether it needs the analytic baseline in normalised target units (`prior`,
    for a model that predicts a correction of it), and the coarse graphs of a multi-scale
    model (None for a single-level one)."""

    broadcast_globals: bool
    residual: bool
    hierarchy: HierarchySpec | None


@dataclass(frozen=True)
class FeatureSpec:
    """Everything needed to turn a new mesh into exactly the model's input (packages use it)."""

    source: SourceSpec
    fourier_features: int
    fourier_scale: float
    fourier_seed: int
    boundary_distance: bool
    baseline_input: bool
    model_inputs: ModelInputs

    def mapper(self) -> FourierFeatureMapper:
        return FourierFeatureMapper(self.fourier_features, self.fourier_scale,
                                    self.source.spatial_dim, self.fourier_seed)

    @property
    def residual(self) -> bool:
        """Whether the data carries a `prior` for the model to correct."""
        return self.model_inputs.residual and self.source.has_baseline

    def fingerprint_keys(self) -> dict:
        """The feature settings that change what a trained model sees."""
        return {"features": [self.fourier_features, self.fourier_scale, self.boundary_distance,
                             self.baseline_input, self.model_inputs.broadcast_globals, self.residual]}

    def to_json(self) -> dict[str, Any]:
        """Plain values (checkpoints and model packages store it; `from_json` inverts it)."""
        source, hierarchy = self.source, self.model_inputs.hierarchy
        return {
            "source": {"node_types": list(source.node_types),
                       "inputs": [[f.name, f.dim] for f in source.inputs],
                       "targets": [[f.name, f.dim] for f in source.targets],
                       "global_names": list(source.global_names), "spatial_dim": source.spatial_dim,
                       "has_baseline": source.has_baseline},
            "fourier_features": self.fourier_features, "fourier_scale": self.fourier_scale,
            "fourier_seed": self.fourier_seed, "boundary_distance": self.boundary_distance,
            "baseline_input": self.baseline_input,
            "model_inputs": {"broadcast_globals": self.model_inputs.broadcast_globals,
                             "residual": self.model_inputs.residual,
                             "hierarchy": None if hierarchy is None else
                             {"num_levels": hierarchy.num_levels, "coarsening": hierarchy.coarsening}},
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "FeatureSpec":
        src, inputs = doc["source"], doc["model_inputs"]
        source = SourceSpec(tuple(src["node_types"]), tuple(FieldSpec(n, int(d)) for n, d in src["inputs"]),
                            tuple(FieldSpec(n, int(d)) for n, d in src["targets"]),
                            tuple(src["global_names"]), int(src["spatial_dim"]), bool(src["has_baseline"]))
        hierarchy = inputs["hierarchy"]
        return cls(source, int(doc["fourier_features"]), float(doc["fourier_scale"]), int(doc["fourier_seed"]),
                   bool(doc["boundary_distance"]), bool(doc["baseline_input"]),
                   ModelInputs(bool(inputs["broadcast_globals"]), bool(inputs["residual"]),
                               None if hierarchy is None else
                               HierarchySpec(int(hierarchy["num_levels"]), float(hierarchy["coarsening"]))))


@dataclass
class MeshDatasets:
    splits: dict[str, GraphDataset]
    features: FeatureSpec
    normalizer: Normalizer
    fingerprint: str
    cache_dir: Path

    @property
    def node_dim(self) -> int:
        return int(self.splits["train"][0].x.shape[1])

    @property
    def edge_dim(self) -> int:
        return int(self.splits["train"][0].edge_attr.shape[1])


def generating_keys(cfg: DictConfig) -> dict:
    """The data keys that change generated samples (and so the cache key)."""
    source = get_source(cfg.name)
    return {"name": cfg.name, "version": source.version, "num_samples": cfg.num_samples,
            "mesh_size": cfg.mesh_size, "max_holes": cfg.max_holes, "seed": cfg.seed}


def _generate(cfg: DictConfig) -> dict:
    source = get_source(cfg.name)
    samples = generate_samples(source, cfg.num_samples, cfg.seed, cfg.mesh_size, cfg.max_holes,
                               cfg.generate_workers)
    graphs = [sample_to_graph(s, source.spec) for s in samples]
    store, slices = InMemoryDataset.collate(graphs)
    return {"store": store.to_dict(), "slices": slices}


def split_indices(num: int, ratios: tuple[float, float, float], seed: int) -> dict[str, Tensor]:
    """A seeded permutation cut by the ratios; every split gets at least one sample."""
    order = torch.randperm(num, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(ratios[1] * num))
    n_test = max(1, round(ratios[2] * num))
    n_train = num - n_val - n_test
    if n_train < 1:
        raise ValueError(f"{num} samples cannot fill train/val/test splits")
    return {"train": order[:n_train], "val": order[n_train:n_train + n_val],
            "test": order[n_train + n_val:]}


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
    raw, folder = cached(Path(data_dir), cfg.name, keys, lambda: _generate(cfg))
    store, slices = MultiScaleData.from_dict(raw["store"]), raw["slices"]
    num_graphs = len(slices["pos"]) - 1
    features = feature_spec(cfg, source.spec, model_inputs)
    add_features(store, slices, features)

    index = split_indices(num_graphs, (cfg.split.train, cfg.split.val, cfg.split.test), cfg.seed)
    if normalizer is None:
        is_train = torch.zeros(num_graphs, dtype=torch.bool)
        is_train[index["train"]] = True
        node_train, edge_train = is_train[row_graph(slices["pos"])], is_train[row_graph(slices["edge_attr"])]
        normalizer = Normalizer.fit({"x": store.x[node_train], "edge_attr": store.edge_attr[edge_train],
                                     "y": store.y[node_train]}, std_floor=cfg.std_floor)
    check_normalizer(normalizer, store.x.shape[1], cfg.name)
    normalize(store, slices, normalizer, features.residual)

    full = GraphDataset(store, slices)
    splits = {name: full.index_select(index[name]) for name in SPLITS}
    log.info("dataset %s: %d graphs (train %d, val %d, test %d), cache %s", cfg.name, num_graphs,
             len(splits["train"]), len(splits["val"]), len(splits["test"]), folder)
    fingerprint = config_hash({**keys, **features.fingerprint_keys(),
                               "split": [cfg.split.train, cfg.split.val, cfg.split.test]})
    return MeshDatasets(splits, features, normalizer, fingerprint, folder)


def feature_spec(cfg: DictConfig, source: SourceSpec, model_inputs: ModelInputs) -> FeatureSpec:
    if cfg.baseline_input and not source.has_baseline:
        raise UserError(f"data.baseline_input=true but data={cfg.name} has no analytic baseline; "
                        "set data.baseline_input=false")
    if model_inputs.residual and not source.has_baseline:
        log.warning("model.residual=true has no effect: data=%s has no analytic baseline to correct",
                    cfg.name)
    return FeatureSpec(source, cfg.fourier_features, cfg.fourier_scale, cfg.seed,
                       cfg.boundary_distance, cfg.baseline_input, model_inputs)


def add_features(store: Data, slices: dict[str, Tensor], features: FeatureSpec) -> None:
    """Node features (`x`), edge lengths and, for a multi-scale model, the coarse levels, on a
    collated store of one graph or many (the in-memory and the per-file datasets share it)."""
    num_graphs = len(slices["pos"]) - 1
    node_graph = row_graph(slices["pos"])
    sort_edges_by_destination(store, slices)
    inputs = store.inputs
    if features.baseline_input:
        inputs = torch.cat([inputs, store.baseline], dim=1)
    node_globals = (store.globals[node_graph] if features.model_inputs.broadcast_globals
                    else inputs[:, :0])
    store.x = node_features(store.pos, store.node_type, inputs, node_globals, node_graph, num_graphs,
                            len(features.source.node_types), features.mapper(), features.boundary_distance)
    slices["x"] = slices["pos"]
    store.edge_len = store.edge_attr[:, -1].clone()
    slices["edge_len"] = slices["edge_attr"]
    for unused in ("inputs", "globals"):
        del store[unused]
        del slices[unused]
    if features.model_inputs.hierarchy is not None:
        attach_levels(store, slices, features.model_inputs.hierarchy)


def normalize(store: Data, slices: dict[str, Tensor], normalizer: Normalizer, residual: bool) -> None:
    """Standardise features and targets in place; with `residual`, add the baseline in target
    units as `prior` (what a residual model corrects)."""
    for key in ("x", "edge_attr", "y"):
        store[key] = normalizer.normalize(key, store[key])
    if residual:
        store.prior = normalizer.normalize("y", store.baseline)
        slices["prior"] = slices["pos"]


def check_normalizer(normalizer: Normalizer, node_dim: int, data_name: str) -> None:
    if normalizer.mean["x"].numel() != node_dim:
        raise UserError(f"the checkpoint's normaliser has {normalizer.mean['x'].numel()} node features but "
                        f"data={data_name} with these data.* settings gives {node_dim}; use the "
                        "data settings of the run the checkpoint came from")


def single_graph_store(graph: Data) -> tuple[MultiScaleData, dict[str, Tensor]]:
    """One graph as a collated store with its slice offsets (what `add_features` takes)."""
    store = MultiScaleData(**{key: value for key, value in graph.items()})
    slices = {key: torch.tensor([0, value.size(store.__cat_dim__(key, value))])
              for key, value in store.items() if isinstance(value, Tensor)}
    return store, slices


def make_loader(dataset: GraphDataset, batch_size: int, shuffle: bool, seed: int,
                num_workers: int, pin_memory: bool = False, rank: int = 0, world_size: int = 1,
                pad: bool = False) -> DataLoader:
    """A PyG loader whose batch order depends only on `seed` and the epoch (see sampler);
    `pin_memory` for non-blocking copies to a GPU. Under DDP each rank loads its own shard
    (`rank`, `world_size`), of equal size for every rank with `pad`."""
    sampler = EpochBatchSampler(len(dataset), batch_size, shuffle, seed, rank, world_size, pad)
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
