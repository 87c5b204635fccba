"""Datasets from a folder of mesh files, which may be larger than memory.

Every file is checked (all problems of the folder reported at once), then converted to a
feature-free graph in parallel worker processes and cached as a file of its own under
`paths.data_dir`, keyed by the file's path, size and modification time and by the field
selection: an unchanged folder loads without reading a mesh file, and a changed file is
converted again. The cache's manifest records each graph's size and SHA-256: a graph whose
size changed is rebuilt at open, one whose bytes changed when it is read, each after one
warning line; a damaged manifest is rebuilt with every graph. Training reads one cached graph
per sample, adding features and normalisation with the same functions the in-memory datasets
use, and the normaliser is fit in one streaming pass over the training graphs; peak memory is
a few batches, not the dataset.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor
from torch_geometric.data import Data, Dataset

from meshgnn.atomic import remove_orphaned_temp_files
from meshgnn.data.cache import (MANIFEST, CorruptEntry, config_hash, load_entry, locked, read_manifest, save_entry,
                                write_manifest)
from meshgnn.data.features import (
    SPLITS,
    FeatureSpec,
    MeshDatasets,
    ModelInputs,
    add_features,
    check_normalizer,
    feature_spec,
    fix_cell_size,
    normalize,
    single_graph_store,
    split_indices,
)
from meshgnn.data.graph import sample_to_graph
from meshgnn.data.folder_report import check_folder, require_enough_files
from meshgnn.data.folder_spec import FolderSpec, source_spec
from meshgnn.data.mesh_files import list_mesh_files
from meshgnn.data.mesh_read import read_sample
from meshgnn.data.normalizer import Moments, Normalizer
from meshgnn.data.interrupt import StopSignal, interruptible
from meshgnn.data.parallel import parallel_map
from meshgnn.data.sample import SourceSpec
from meshgnn.errors import UserError

log = logging.getLogger(__name__)

GRAPHS = "graphs"


@dataclass(frozen=True)
class GraphEntry:
    """One cached graph: the mesh file it comes from and its file."""

    mesh: Path
    graph: Path


@dataclass(frozen=True)
class Converter:
    """Turns a mesh file into its cached graph (picklable: worker processes run it)."""

    spec: FolderSpec
    dims: dict[str, int]
    source: SourceSpec

    def __call__(self, pair: tuple[Path, Path]) -> dict[str, Any]:
        mesh_file, graph_file = pair
        graph = sample_to_graph(read_sample(mesh_file, self.spec, self.dims), self.source)
        return save_entry(graph.to_dict(), graph_file)


class FileGraphDataset(Dataset):
    """Cached graphs read one at a time, verified against their manifest record (the bytes are
    in hand anyway, so the hash costs little; see the README), with features and normalisation
    added on access. A damaged graph is one warning line, then rebuilt from its mesh file.

    `records` (the manifest's, by graph name) is one dict shared by every split of a load, so
    a graph rebuilt while fitting the normaliser is not taken for damaged by its split."""

    def __init__(self, entries: list[GraphEntry], records: dict[str, Any], convert: Converter,
                 features: FeatureSpec, normalizer: Normalizer | None) -> None:
        super().__init__(root=None)
        self.entries, self.records, self.convert = entries, records, convert
        self.features, self.normalizer = features, normalizer

    def len(self) -> int:
        return len(self.entries)

    def get(self, idx: int) -> Data:
        entry = self.entries[idx]
        try:
            raw = load_entry(entry.graph, self.records.get(_name(entry.graph)), _graph_problem)
        except CorruptEntry as exc:
            log.warning("graph cache %s: %s; rebuilding it from %s", entry.graph, exc, entry.mesh)
            self.records[_name(entry.graph)] = _rebuild(entry, self.convert)
            raw = load_entry(entry.graph, self.records[_name(entry.graph)], _graph_problem)
        store, slices = single_graph_store(Data.from_dict(raw))
        add_features(store, slices, self.features)
        if self.normalizer is not None:
            normalize(store, slices, self.normalizer, self.features.residual)
        return store


_GRAPH_KEYS = ("pos", "edge_index", "edge_attr", "node_type", "y")


def _graph_problem(raw: object) -> str | None:
    if not isinstance(raw, dict):
        return f"expected a dict of graph tensors, found {type(raw).__name__}"
    missing = [key for key in _GRAPH_KEYS if not isinstance(raw.get(key), Tensor)]
    return f"no {', '.join(missing)} tensor" if missing else None


def _rebuild(entry: GraphEntry, convert: Converter) -> dict[str, Any]:
    """Convert one mesh file again and record it in the manifest (under the cache's lock)."""
    cache = entry.graph.parent.parent
    with locked(cache):
        record = convert((entry.mesh, entry.graph))
        try:
            manifest = read_manifest(cache)
        except CorruptEntry:
            manifest = None  # the next open rebuilds it
        if manifest is not None:
            manifest["files"][_name(entry.graph)] = record
            write_manifest(cache, manifest)
    return record


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
    graphs = [cache / GRAPHS / f"{key}.pt" for key in file_keys]
    index = _split(cfg, spec.path, files)  # too few files is refused before any conversion
    records, convert = _prepare_cache(spec, cfg.process_workers, cache, files, graphs)
    entries = [GraphEntry(mesh, graph) for mesh, graph in zip(files, graphs)]

    features = feature_spec(cfg, convert.source, model_inputs)
    if normalizer is None:
        normalizer = _fit_normalizer(FileGraphDataset([entries[i] for i in index["train"]], records, convert,
                                                      features, None), cfg.std_floor)
    features = fix_cell_size(features, normalizer)  # one cell size for every file, from the training files
    splits = {name: FileGraphDataset([entries[i] for i in index[name]], records, convert, features, normalizer)
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


def _name(graph: Path) -> str:
    """A graph's key in the manifest: its path inside the cache folder."""
    return f"{GRAPHS}/{graph.name}"


def _prepare_cache(spec: FolderSpec, workers: int, cache: Path, files: list[Path],
                   graphs: list[Path]) -> tuple[dict[str, Any], Converter]:
    """Check and convert the files without a sound cached graph; return the manifest's records.

    At open a graph counts as sound when the manifest lists it with its current size (a stat,
    no read: a folder may be larger than memory); its hash is checked when it is read."""
    try:  # fast path, no lock
        manifest = read_manifest(cache)
        if manifest is not None and all(_size_matches(g, manifest["files"]) for g in graphs):
            return manifest["files"], _converter(spec, manifest)
    except CorruptEntry:
        pass
    with locked(cache):
        try:
            manifest = read_manifest(cache)
        except CorruptEntry as exc:
            log.warning("mesh folder cache %s: %s; rebuilding it and its graphs from the mesh files",
                        cache / MANIFEST, exc)
            manifest = None
        listed = manifest["files"] if manifest is not None else {}
        todo = []
        for mesh, graph in zip(files, graphs):
            if _name(graph) in listed and not _size_matches(graph, listed):
                size = graph.stat().st_size if graph.exists() else 0
                log.warning("graph cache %s: truncated or changed (%d bytes, %d written); rebuilding it "
                            "from %s", graph, size, listed[_name(graph)]["size"], mesh)
            if not _size_matches(graph, listed):
                todo.append((mesh, graph))
        if manifest is None or todo:
            report = check_folder(spec, workers=workers)
            report.raise_if_problems()
            for warning in report.warnings:
                log.warning("mesh folder %s: %s", spec.path, warning)
            manifest = {"dims": report.dims, "spatial_dim": report.spatial_dim, "files": dict(listed)}
        convert = _converter(spec, manifest)
        if todo:
            _convert(todo, convert, workers, cache, manifest)
        else:
            write_manifest(cache, manifest)
    return manifest["files"], convert


def _size_matches(graph: Path, listed: dict[str, Any]) -> bool:
    record = listed.get(_name(graph))
    try:
        return record is not None and graph.stat().st_size == record["size"]
    except OSError:
        return False


def _converter(spec: FolderSpec, manifest: dict[str, Any]) -> Converter:
    return Converter(spec, manifest["dims"], source_spec(spec, manifest["dims"], manifest["spatial_dim"]))


def _convert(todo: list[tuple[Path, Path]], convert: Converter, workers: int, cache: Path,
             manifest: dict[str, Any]) -> None:
    """Convert in worker processes and record the graphs in the manifest; on a stop signal
    the graphs finished so far are recorded (the next launch converts only the rest)."""
    remove_orphaned_temp_files(cache / GRAPHS)  # left by a killed converter; this one holds the lock

    def record(done: list[dict[str, Any]]) -> None:
        for (_, graph), entry in zip(todo, done):
            manifest["files"][_name(graph)] = entry
        write_manifest(cache, manifest)

    def kept(stop: StopSignal) -> str:
        record(stop.done)
        return (f"the {len(stop.done)} graphs converted so far are cached. Run the same command again "
                "to convert the rest")

    with interruptible(f"converting the mesh files of {convert.spec.path}", kept):
        record(parallel_map(convert, todo, workers, "converting mesh files", unit="files"))
    log.info("converted %d mesh files", len(todo))


def _split(cfg: DictConfig, root: Path, files: list[Path]) -> dict[str, Tensor]:
    """Train/val/test indices of the files: by data.split_globs where set (each must match a
    file), else a seeded cut by the data.split ratios, refusing too few files in one line by
    the rule `meshgnn data check --split` applies."""
    globs = cfg.split_globs
    if not globs.train:
        ratios = (cfg.split.train, cfg.split.val, cfg.split.test)
        require_enough_files(root, cfg.pattern, len(files), ratios, "data.split")
        return split_indices(len(files), ratios, cfg.seed)
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


def _fit_normalizer(train: FileGraphDataset, std_floor: float) -> Normalizer:
    """One streaming pass over the training graphs (features on, normalisation off; the
    coarse levels do not change the statistics, so they are not built here)."""
    features = train.features
    flat = FileGraphDataset(train.entries, train.records, train.convert,
                            replace(features, model_inputs=replace(features.model_inputs, hierarchy=None)), None)
    moments = Moments()
    for graph in flat:
        moments.add({"x": graph.x, "edge_attr": graph.edge_attr, "y": graph.y})
    return moments.normalizer(std_floor)
