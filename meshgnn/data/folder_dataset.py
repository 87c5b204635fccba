"""Datasets from a folder of mesh files, which may be larger than memory.

Every file is checked (all problems of the folder reported at once), then converted to a
feature-free graph in parallel worker processes and cached as a file of its own under
`paths.data_dir`, keyed by the file's path, size and modification time and by the field
selection: an unchanged folder loads without reading a mesh file, and a changed file is
converted again. Training reads one cached graph per sample, adding features and
normalisation with the same functions the in-memory datasets use, and the normaliser is fit in
one streaming pass over the training graphs; peak memory is a few batches, not the dataset.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor
from torch_geometric.data import Data, Dataset

from meshgnn.atomic import atomic_torch_save, atomic_write_text
from meshgnn.data.cache import config_hash
from meshgnn.data.features import (
    SPLITS,
    FeatureSpec,
    MeshDatasets,
    ModelInputs,
    add_features,
    check_normalizer,
    feature_spec,
    normalize,
    single_graph_store,
    split_indices,
)
from meshgnn.data.graph import sample_to_graph
from meshgnn.data.mesh_folder import FolderSpec, check_folder, list_mesh_files, read_sample, source_spec
from meshgnn.data.normalizer import Moments, Normalizer
from meshgnn.data.parallel import parallel_map
from meshgnn.data.sample import SourceSpec
from meshgnn.errors import UserError

log = logging.getLogger(__name__)


class FileGraphDataset(Dataset):
    """Cached graphs read one at a time, with features and normalisation added on access."""

    def __init__(self, paths: list[Path], features: FeatureSpec, normalizer: Normalizer | None) -> None:
        super().__init__(root=None)
        self.paths, self.features, self.normalizer = paths, features, normalizer

    def len(self) -> int:
        return len(self.paths)

    def get(self, idx: int) -> Data:
        store, slices = single_graph_store(Data.from_dict(torch.load(self.paths[idx], weights_only=True)))
        add_features(store, slices, self.features)
        if self.normalizer is not None:
            normalize(store, slices, self.normalizer, self.features.residual)
        return store


def folder_spec(cfg: DictConfig) -> FolderSpec:
    return FolderSpec(path=Path(cfg.path).expanduser().resolve(), pattern=cfg.pattern,
                      inputs=tuple(cfg.inputs), targets=tuple(cfg.targets),
                      node_type_field=cfg.node_type_field, node_type_values=tuple(cfg.node_type_values),
                      globals=tuple(cfg.globals))


def load_folder_datasets(cfg: DictConfig, data_dir: Path, model_inputs: ModelInputs,
                         normalizer: Normalizer | None) -> MeshDatasets:
    spec = folder_spec(cfg)
    files = list_mesh_files(spec)
    spec_keys = {"path": str(spec.path), "pattern": spec.pattern, "inputs": spec.inputs,
                 "targets": spec.targets, "node_type_field": spec.node_type_field,
                 "node_type_values": spec.node_type_values, "globals": spec.globals}
    cache = data_dir / f"mesh_folder-{config_hash(spec_keys)}"
    file_keys = [_file_key(spec.path, f) for f in files]
    graphs = [cache / "graphs" / f"{key}.pt" for key in file_keys]
    source = _prepare_cache(spec, cfg.process_workers, cache, files, graphs)

    features = feature_spec(cfg, source, model_inputs)
    index = _split(cfg, spec.path, files)
    if normalizer is None:
        normalizer = _fit_normalizer([graphs[i] for i in index["train"]], features, cfg.std_floor)
    splits = {name: FileGraphDataset([graphs[i] for i in index[name]], features, normalizer)
              for name in SPLITS}
    check_normalizer(normalizer, int(splits["train"][0].x.shape[1]), cfg.name)
    log.info("dataset %s: %d files in %s (train %d, val %d, test %d), cache %s", cfg.name, len(files),
             spec.path, *(len(splits[name]) for name in SPLITS), cache)
    fingerprint = config_hash({**spec_keys, "files": file_keys, **features.fingerprint_keys(),
                               "split": [[int(i) for i in index[name]] for name in SPLITS]})
    return MeshDatasets(splits, features, normalizer, fingerprint, cache)


def _file_key(root: Path, path: Path) -> str:
    stat = path.stat()
    return config_hash({"file": str(path.relative_to(root)), "size": stat.st_size, "mtime": stat.st_mtime_ns})


def _prepare_cache(spec: FolderSpec, workers: int, cache: Path, files: list[Path],
                   graphs: list[Path]) -> SourceSpec:
    """Check and convert the files without a cached graph; return the folder's SourceSpec."""
    manifest = cache / "manifest.json"
    todo = [(f, g) for f, g in zip(files, graphs) if not g.is_file()]
    if todo or not manifest.is_file():
        report = check_folder(spec, workers=workers)
        report.raise_if_problems()
        (cache / "graphs").mkdir(parents=True, exist_ok=True)
        atomic_write_text(manifest, json.dumps({"dims": report.dims, "spatial_dim": report.spatial_dim}))
    meta = json.loads(manifest.read_text())
    source = source_spec(spec, meta["dims"], meta["spatial_dim"])
    if todo:
        _convert(todo, spec, meta["dims"], source, workers)
    return source


def _convert(todo: list[tuple[Path, Path]], spec: FolderSpec, dims: dict[str, int], source: SourceSpec,
             workers: int) -> None:
    parallel_map(partial(_convert_one, spec=spec, dims=dims, source=source), todo, workers,
                 "converting mesh files")
    log.info("converted %d mesh files", len(todo))


def _convert_one(pair: tuple[Path, Path], spec: FolderSpec, dims: dict[str, int], source: SourceSpec) -> None:
    mesh_file, graph_file = pair
    graph = sample_to_graph(read_sample(mesh_file, spec, dims), source)
    atomic_torch_save(graph.to_dict(), graph_file)


def _split(cfg: DictConfig, root: Path, files: list[Path]) -> dict[str, Tensor]:
    globs = cfg.split_globs
    if not globs.train:
        return split_indices(len(files), (cfg.split.train, cfg.split.val, cfg.split.test), cfg.seed)
    names = [str(f.relative_to(root)) for f in files]
    index = {split: torch.tensor([i for i, n in enumerate(names) if fnmatch.fnmatch(n, globs[split])],
                                 dtype=torch.long) for split in SPLITS}
    for split in SPLITS:
        if len(index[split]) == 0:
            raise UserError(f"data.split_globs.{split}={globs[split]!r} matches none of the {len(files)} "
                            f"files in {root}; use a glob relative to data.path, e.g. 'train/*'")
    claimed = torch.cat(list(index.values()))
    if len(claimed) != len(torch.unique(claimed)):
        raise UserError("data.split_globs: a file matches more than one of train/val/test; make the "
                        "globs disjoint")
    return index


def _fit_normalizer(paths: list[Path], features: FeatureSpec, std_floor: float) -> Normalizer:
    """One streaming pass over the training graphs (features on, normalisation off; the
    coarse levels do not change the statistics, so they are not built here)."""
    flat = replace(features, model_inputs=replace(features.model_inputs, hierarchy=None))
    moments = Moments()
    for graph in FileGraphDataset(paths, flat, normalizer=None):
        moments.add({"x": graph.x, "edge_attr": graph.edge_attr, "y": graph.y})
    return moments.normalizer(std_floor)
