"""What the in-memory and the per-file datasets share: the feature spec, the per-graph
feature and normalisation steps, splits, and the result type of `load_datasets`.

Its own module so that `dataset` (built-in sources, and the one `load_datasets` dispatcher)
and `folder_dataset` (mesh folders) both import it instead of each other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor
from torch_geometric.data import Data, InMemoryDataset

from meshgnn.data.graph import FourierFeatureMapper, node_features, row_graph, sort_edges_by_destination
from meshgnn.data.hierarchy import HierarchySpec, MultiScaleData, attach_levels
from meshgnn.data.normalizer import Normalizer
from meshgnn.data.sample import FieldSpec, SourceSpec
from meshgnn.data.splits import SPLITS, split_sizes
from meshgnn.errors import UserError

log = logging.getLogger(__name__)

__all__ = ["SPLITS", "LAYOUT", "GraphDataset", "ModelInputs", "FeatureSpec", "MeshDatasets", "split_indices",
           "feature_spec", "fix_cell_size", "add_features", "add_node_features", "add_levels", "normalize",
           "check_normalizer", "check_resumable", "single_graph_store"]

# The input layout a model is trained on. 1: node features start with the raw coordinates and
# coarse cells are sized by each mesh's own mean edge length (everything written before
# layout 2). 2: coordinates relative to the mesh's bounding-box corner, coarse cells of one
# physical size per run (`fix_cell_size`). A spec read without a layout is layout 1, and is
# served by the same code (`ModelInputs.layout`, `HierarchySpec.cell_size` None), so old
# packages predict exactly as they did.
LAYOUT = 2


class GraphDataset(InMemoryDataset):
    """An InMemoryDataset over an already collated store (no files of its own)."""

    def __init__(self, store: Data, slices: dict[str, Tensor]) -> None:
        super().__init__(root=None)
        self.data, self.slices = store, slices


@dataclass(frozen=True)
class ModelInputs:
    """What the model config asks of the data: whether it sees the sample's global parameters
    on every node, whether it needs the analytic baseline in normalised target units (`prior`,
    for a model that predicts a correction of it), the coarse graphs of a multi-scale
    model (None for a single-level one), and the input layout (`LAYOUT`) it is trained on."""

    broadcast_globals: bool
    residual: bool
    hierarchy: HierarchySpec | None
    layout: int = LAYOUT

    @classmethod
    def of_model(cls, model_cfg: DictConfig) -> "ModelInputs":
        """What a configured model (the `model` group) needs the data pipeline to build; a
        null `model.cell_size` is fixed from the training split (`fix_cell_size`). A config
        written before `model.cell_size` existed reads as null."""
        hierarchy = (HierarchySpec(model_cfg.num_levels, model_cfg.coarsening, model_cfg.get("cell_size"))
                     if model_cfg.num_levels > 0 else None)
        return cls(model_cfg.broadcast_globals, model_cfg.residual, hierarchy)


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

    @property
    def relative_coordinates(self) -> bool:
        """Node coordinates relative to the mesh's bounding-box corner (layout 2), not raw."""
        return self.model_inputs.layout >= 2

    def fingerprint_keys(self) -> dict:
        """The feature settings that change what a trained model sees (layout 1 keeps the keys
        it had, so its fingerprints are unchanged)."""
        keys = {"features": [self.fourier_features, self.fourier_scale, self.boundary_distance,
                             self.baseline_input, self.model_inputs.broadcast_globals, self.residual]}
        return keys if self.model_inputs.layout < 2 else {**keys, "layout": self.model_inputs.layout}

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
                             "residual": self.model_inputs.residual, "layout": self.model_inputs.layout,
                             "hierarchy": None if hierarchy is None else
                             {"num_levels": hierarchy.num_levels, "coarsening": hierarchy.coarsening,
                              "cell_size": hierarchy.cell_size}},
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "FeatureSpec":
        """Without `layout` (written before layout 2): layout 1, per-mesh cells. Raises
        ValueError for a layout this version does not know or a layout-2 hierarchy without
        its cell size (the package loader makes either one line)."""
        src, inputs = doc["source"], doc["model_inputs"]
        source = SourceSpec(tuple(src["node_types"]), tuple(FieldSpec(n, int(d)) for n, d in src["inputs"]),
                            tuple(FieldSpec(n, int(d)) for n, d in src["targets"]),
                            tuple(src["global_names"]), int(src["spatial_dim"]), bool(src["has_baseline"]))
        layout = int(inputs.get("layout", 1))
        if layout not in (1, LAYOUT):
            raise ValueError(f"feature layout {layout} is not one this meshgnn reads (1 to {LAYOUT}); "
                             "upgrade meshgnn")
        hierarchy = inputs["hierarchy"]
        if hierarchy is not None:
            cell_size = None if hierarchy.get("cell_size") is None else float(hierarchy["cell_size"])
            if layout >= 2 and not (cell_size and cell_size > 0):
                raise ValueError(f"layout {layout} needs a positive hierarchy cell_size, found {cell_size}")
            hierarchy = HierarchySpec(int(hierarchy["num_levels"]), float(hierarchy["coarsening"]),
                                      cell_size if layout >= 2 else None)
        return cls(source, int(doc["fourier_features"]), float(doc["fourier_scale"]), int(doc["fourier_seed"]),
                   bool(doc["boundary_distance"]), bool(doc["baseline_input"]),
                   ModelInputs(bool(inputs["broadcast_globals"]), bool(inputs["residual"]), hierarchy, layout))


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


def split_indices(num: int, ratios: tuple[float, float, float], seed: int) -> dict[str, Tensor]:
    """A seeded permutation cut by the ratios; every split gets at least one sample."""
    order = torch.randperm(num, generator=torch.Generator().manual_seed(seed))
    n_train, n_val, _ = split_sizes(num, ratios)
    if n_train < 1:
        raise ValueError(f"{num} samples cannot fill train/val/test splits")
    return {"train": order[:n_train], "val": order[n_train:n_train + n_val],
            "test": order[n_train + n_val:]}


def feature_spec(cfg: DictConfig, source: SourceSpec, model_inputs: ModelInputs) -> FeatureSpec:
    if cfg.baseline_input and not source.has_baseline:
        raise UserError(f"data.baseline_input=true but data={cfg.name} has no analytic baseline; "
                        "set data.baseline_input=false")
    if model_inputs.residual and not source.has_baseline:
        log.warning("model.residual=true has no effect: data=%s has no analytic baseline to correct",
                    cfg.name)
    return FeatureSpec(source, cfg.fourier_features, cfg.fourier_scale, cfg.seed,
                       cfg.boundary_distance, cfg.baseline_input, model_inputs)


def fix_cell_size(features: FeatureSpec, normalizer: Normalizer) -> FeatureSpec:
    """The spec with its level-1 cell size fixed for a run: the configured `model.cell_size`,
    else `coarsening` times the training split's mean edge length, which is the normaliser's
    mean of the edge-length column (edge features are fit in physical units). One length for
    the whole dataset, not per mesh; and because a resumed or warm-started run, a package and
    an evaluation all carry the training normaliser, each derives the same cells. Layout 1
    and single-level specs are returned as they are."""
    hierarchy = features.model_inputs.hierarchy
    if hierarchy is None or hierarchy.cell_size is not None or features.model_inputs.layout < 2:
        return features
    mean_edge = float(normalizer.mean["edge_attr"][-1])
    if not mean_edge > 0:
        raise UserError(f"the training meshes' mean edge length is {mean_edge:g}, so the coarse cells cannot "
                        "be sized from it; set model.cell_size to the level-1 cell size in mesh units")
    fixed = replace(hierarchy, cell_size=hierarchy.coarsening * mean_edge)
    return replace(features, model_inputs=replace(features.model_inputs, hierarchy=fixed))


def add_features(store: Data, slices: dict[str, Tensor], features: FeatureSpec) -> None:
    """Node features (`x`), edge lengths and, for a multi-scale model, the coarse levels, on a
    collated store of one graph or many (the in-memory and the per-file datasets share it).
    `features` has its cell size fixed (`fix_cell_size`)."""
    add_node_features(store, slices, features)
    add_levels(store, slices, features)


def add_node_features(store: Data, slices: dict[str, Tensor], features: FeatureSpec) -> None:
    """Node features and edge lengths, without coarse levels: what the normaliser is fit on
    (the levels need the fitted edge statistics, `fix_cell_size`)."""
    num_graphs = len(slices["pos"]) - 1
    node_graph = row_graph(slices["pos"]).to(store.pos.device)
    sort_edges_by_destination(store, slices)
    inputs = store.inputs
    if features.baseline_input:
        inputs = torch.cat([inputs, store.baseline], dim=1)
    node_globals = (store.globals[node_graph] if features.model_inputs.broadcast_globals
                    else inputs[:, :0])
    store.x = node_features(store.pos, store.node_type, inputs, node_globals, node_graph, num_graphs,
                            len(features.source.node_types), features.mapper(), features.boundary_distance,
                            features.relative_coordinates)
    slices["x"] = slices["pos"]
    store.edge_len = store.edge_attr[:, -1].clone()
    slices["edge_len"] = slices["edge_attr"]
    for unused in ("inputs", "globals"):
        del store[unused]
        del slices[unused]


def add_levels(store: Data, slices: dict[str, Tensor], features: FeatureSpec) -> None:
    """The coarse levels of a multi-scale model (none for a single-level one)."""
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


def check_resumable(features_doc: dict[str, Any] | None, checkpoint: Path) -> None:
    """Refuse, in one line, to resume a checkpoint trained on layout 1: its run would go on
    with inputs it was not trained on. Its weights still start a new run (init_from=)."""
    layout = (features_doc or {}).get("model_inputs", {}).get("layout", 1)
    if layout < LAYOUT:
        raise UserError(f"{checkpoint}: trained with the input layout of meshgnn before coarse cells were sized "
                        f"in physical units (layout {layout}, now {LAYOUT}), so it cannot be resumed; start a new "
                        f"run from its weights with init_from={checkpoint} (prediction with it works as before)")


def single_graph_store(graph: Data) -> tuple[MultiScaleData, dict[str, Tensor]]:
    """One graph as a collated store with its slice offsets (what `add_features` takes)."""
    store = MultiScaleData(**{key: value for key, value in graph.items()})
    slices = {key: torch.tensor([0, value.size(store.__cat_dim__(key, value))])
              for key, value in store.items() if isinstance(value, Tensor)}
    return store, slices
