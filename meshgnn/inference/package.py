"""Model packages: a trained model as a folder anyone can load without pickle or our configs.

    model.safetensors    weights (safetensors: tensors only, nothing executable)
    config.json          model settings, feature spec (input fields, targets, node types,
                         globals, Fourier mapping, coarse levels) and how mesh files are read
    normalization.json   the training split's feature and target statistics
    manifest.json        format, library versions, source run and checkpoint, its metrics,
                         and the SHA-256 of every other file (checked on every load)
    program.pt2          optional: a torch.export program (`meshgnn export --program`)

The same `Package` object is built straight from a checkpoint, so `predict` and `ensemble`
accept run directories and .ckpt files as well as package folders. Loading verifies the
checksums, every field (`package_fields`) and that the weights fit the model; writing a
package lives in `export.py`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from meshgnn.data.features import FeatureSpec, ModelInputs, feature_spec
from meshgnn.data.folder_spec import FolderSpec
from meshgnn.data.normalizer import Normalizer
from meshgnn.data.sources import get_source
from meshgnn.errors import UserError
from meshgnn.inference import package_fields as fields
from meshgnn.inference.precision import prune_linear_weights
from meshgnn.models import build_model
from meshgnn.run_layout import final_stage_dir
from meshgnn.weights import load_weights

FORMAT = "meshgnn-package"
FORMAT_VERSION = 1
WEIGHTS, CONFIG, NORMALIZATION, MANIFEST, PROGRAM = (
    "model.safetensors", "config.json", "normalization.json", "manifest.json", "program.pt2")
REQUIRED = (WEIGHTS, CONFIG, NORMALIZATION)
WEIGHT_DTYPES = dict(zip(fields.WEIGHT_DTYPE_NAMES, (torch.float32, torch.bfloat16, torch.float16)))
# The node-type field of files written by `meshgnn data export` (built-in sources).
BUILTIN_NODE_TYPE_FIELD = "node_type"
# Model keys added after packages of format 1 were first written, with the value that means
# what such a package did: a package without them still loads (its features say its layout).
MODEL_KEYS_ADDED = {"cell_size": None}


@dataclass(frozen=True)
class MeshReader:
    """Which point_data fields, node-type values and globals a mesh file must carry."""

    inputs: tuple[str, ...]
    targets: tuple[str, ...]
    node_type_field: str | None
    node_type_values: tuple[int, ...]
    globals: tuple[str, ...]
    dims: dict[str, int]

    def folder_spec(self, root: Path) -> FolderSpec:
        return FolderSpec(path=root, inputs=self.inputs, targets=self.targets,
                          node_type_field=self.node_type_field, node_type_values=self.node_type_values,
                          globals=self.globals, targets_required=False)

    def to_json(self) -> dict[str, Any]:
        return {"inputs": list(self.inputs), "targets": list(self.targets),
                "node_type_field": self.node_type_field, "node_type_values": list(self.node_type_values),
                "globals": list(self.globals), "dims": dict(self.dims)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "MeshReader":
        return cls(tuple(doc["inputs"]), tuple(doc["targets"]), doc["node_type_field"],
                   tuple(int(v) for v in doc["node_type_values"]), tuple(doc["globals"]),
                   {k: int(v) for k, v in doc["dims"].items()})


@dataclass
class Package:
    """A model ready to predict: weights in eval mode, normaliser, features, file reader.

    `data` is the training run's resolved data config and `source` the built-in generator it
    used (None for mesh folders): the analytic baseline of a built-in source is recomputed
    from a new mesh's inputs when the model needs it. `path` is the package folder, run
    directory or checkpoint it was loaded from.
    """

    model: nn.Module
    normalizer: Normalizer
    features: FeatureSpec
    reader: MeshReader
    model_config: dict[str, Any]
    data: dict[str, Any]
    origin: dict[str, Any]
    name: str
    pruning: float = 0.0
    weight_dtype: str = "fp32"
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # what it was loaded from (an input outputs must stay away from)

    @property
    def targets(self) -> list[tuple[str, int]]:
        return [(f.name, f.dim) for f in self.features.source.targets]

    @property
    def source(self) -> str | None:
        return None if self.data["name"] == "mesh_folder" else self.data["name"]

    def config_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "model": self.model_config,
                "features": self.features.to_json(), "reader": self.reader.to_json(), "data": self.data,
                "node_dim": int(self.normalizer.mean["x"].numel()),
                "edge_dim": int(self.normalizer.mean["edge_attr"].numel()),
                "weights": {"dtype": self.weight_dtype, "pruning": self.pruning}}


def mesh_reader(data_cfg: dict[str, Any], features: FeatureSpec) -> MeshReader:
    """How the training data's files look: a mesh folder's own settings, or the layout that
    `meshgnn data export` writes for a built-in source."""
    source = features.source
    dims = {f.name: f.dim for f in (*source.inputs, *source.targets)}
    if data_cfg["name"] == "mesh_folder":
        globals_ = tuple(data_cfg["globals"])
        for name in globals_:  # a list-valued global became columns name[0], name[1], ...
            dims[name] = sum(1 for g in source.global_names if g == name or g.startswith(f"{name}["))
        return MeshReader(tuple(data_cfg["inputs"]), tuple(data_cfg["targets"]), data_cfg["node_type_field"],
                          tuple(data_cfg["node_type_values"]), globals_, dims)
    dims.update({g: 1 for g in source.global_names})
    return MeshReader(tuple(f.name for f in source.inputs), tuple(f.name for f in source.targets),
                      BUILTIN_NODE_TYPE_FIELD, tuple(range(len(source.node_types))),
                      tuple(source.global_names), dims)


# ------------------------------------------------------------------ from a checkpoint


def checkpoint_of(path: Path) -> Path:
    """A run directory's best.ckpt (last.ckpt if it has none), or the .ckpt file given. A
    staged run (`experiment=two_stage`) is read at its last finished stage
    (`run_layout.final_stage_dir`); a stage folder or a checkpoint picks another."""
    path = Path(path)
    if path.is_dir():
        run_dir = final_stage_dir(path)
        for name in ("best.ckpt", "last.ckpt"):
            candidate = run_dir / "checkpoints" / name
            if candidate.is_file():
                return candidate
        where = f"its stage {run_dir.name} (the one it is read at) has" if run_dir != path else "has"
        raise UserError(f"{path}: {where} no checkpoints/best.ckpt or last.ckpt; pass a run directory of "
                        "`python train.py`, a .ckpt file or a package folder")
    if not path.exists():
        raise UserError(f"{path}: no such run directory, checkpoint or package")
    return path


def package_from_checkpoint(path: Path) -> Package:
    """The model of a checkpoint (or a run directory's best one) as a Package."""
    from meshgnn.training.checkpoint import load_checkpoint

    ckpt = checkpoint_of(path)
    payload = load_checkpoint(ckpt)
    cfg = OmegaConf.create(payload["config_yaml"])
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    if "features" in payload:
        try:
            features = FeatureSpec.from_json(payload["features"])
        except ValueError as exc:  # a layout of a newer meshgnn
            raise UserError(f"{ckpt}: {exc}") from exc
    elif cfg.data.name != "mesh_folder":  # older still: its features were those of layout 1
        inputs = replace(ModelInputs.of_model(cfg.model), layout=1)
        if inputs.hierarchy is not None:
            inputs = replace(inputs, hierarchy=replace(inputs.hierarchy, cell_size=None))
        features = feature_spec(cfg.data, get_source(cfg.data.name).spec, inputs)
    else:
        raise UserError(f"{ckpt}: this checkpoint predates model packages and does not record its "
                        "mesh folder's fields; resume it for one epoch to write a current checkpoint")
    normalizer = Normalizer.from_state_dict(payload["normalizer"])
    model_config = {**MODEL_KEYS_ADDED, **OmegaConf.to_container(cfg.model, resolve=True)}
    model = _build(model_config, normalizer, features)
    load_weights(model, payload["model"], str(ckpt), "its config's model.* settings are not the ones it "
                 "was trained with; restore them (`meshgnn ckpt inspect` shows them) or use an unedited "
                 "checkpoint")
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    origin = {"run_dir": str(run_dir.resolve()), "checkpoint": str(ckpt.resolve()),
              "data_dir": str(cfg.paths.data_dir) if "paths" in cfg else None,
              "epoch": int(payload["epoch"]), "global_step": int(payload["global_step"]),
              "metrics": {k: float(v) for k, v in (payload.get("metrics") or {}).items()},
              "test_metrics": _test_metrics(run_dir, ckpt)}
    return Package(model.eval(), normalizer, features, mesh_reader(data_cfg, features), model_config,
                   data_cfg, origin, name=_display(ckpt), path=Path(path))


def _display(path: Path) -> str:
    """`path` relative to the working directory when it is below it (shorter tables)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _test_metrics(run_dir: Path, ckpt: Path) -> dict[str, float] | None:
    """The run's results.json test metrics, when they describe these weights (best.ckpt)."""
    results = run_dir / "results.json"
    if ckpt.name != "best.ckpt" or not results.is_file():
        return None
    doc = json.loads(results.read_text())
    return {k: float(v) for k, v in doc.get("model", {}).items()}


def _build(model_config: dict[str, Any], normalizer: Normalizer, features: FeatureSpec) -> nn.Module:
    targets = [(f.name, f.dim) for f in features.source.targets]
    return build_model(OmegaConf.create(model_config), int(normalizer.mean["x"].numel()),
                       int(normalizer.mean["edge_attr"].numel()), targets, residual=features.residual)


def apply_pruning(package: Package, amount: float) -> None:
    """L1-prune every Linear weight of the package's model by `amount`, made permanent."""
    if package.pruning:
        raise UserError(f"{package.name} is already pruned by {package.pruning:g}; prune the "
                        "unpruned model instead of pruning twice")
    prune_linear_weights(package.model, amount)
    package.pruning = float(amount)


# --------------------------------------------------------------------- package folders


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_package(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def load_package(path: str | Path) -> Package:
    """A package folder, verified (format, every checksum, every field, weights that fit the
    model of config.json) and ready to predict."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    manifest = _read_json(path, MANIFEST, "the folder is not a meshgnn package; create one with "
                                          "`meshgnn export RUN_DIR OUT_DIR`")
    if manifest.get("format") != FORMAT:
        raise UserError(f"{path / MANIFEST}: not a meshgnn package manifest (format "
                        f"{manifest.get('format')!r}, expected {FORMAT!r})")
    fields.check_fields(manifest, fields.MANIFEST_FIELDS, path / MANIFEST)
    if manifest["format_version"] > FORMAT_VERSION:
        raise UserError(f"{path}: package format {manifest['format_version']} is newer than this meshgnn "
                        f"reads ({FORMAT_VERSION}); upgrade meshgnn")
    _verify_files(path, manifest["files"])
    config = _read_json(path, CONFIG, fields.REEXPORT)
    if isinstance(config.get("model"), dict):
        config["model"] = {**MODEL_KEYS_ADDED, **config["model"]}
    fields.check_config(config, path / CONFIG)
    features = fields.parse_field(path / CONFIG, "features", lambda: FeatureSpec.from_json(config["features"]))
    normalizer = Normalizer.load(path / NORMALIZATION)
    fields.check_normalization(normalizer.mean, normalizer.std, config["node_dim"], config["edge_dim"],
                               path / NORMALIZATION)
    model = _build(config["model"], normalizer, features)
    try:
        state = load_file(str(path / WEIGHTS))
    except SafetensorError as exc:
        raise UserError(f"{path / WEIGHTS}: not readable safetensors ({exc}); {fields.REEXPORT}") from exc
    load_weights(model, {k: v.float() if v.is_floating_point() else v for k, v in state.items()},
                 str(path / WEIGHTS), f"they are not the weights of the model in {CONFIG}; {fields.REEXPORT}")
    weights = config["weights"]
    return Package(model.eval(), normalizer, features, MeshReader.from_json(config["reader"]),
                   config["model"], config["data"], manifest.get("origin", {}), name=_display(path),
                   pruning=float(weights["pruning"]), weight_dtype=weights["dtype"], manifest=manifest,
                   path=path)


def _verify_files(path: Path, listed: dict[str, str]) -> None:
    """The manifest lists the required files and no others we do not know; each is there
    with its recorded SHA-256."""
    for name in REQUIRED:
        if name not in listed:
            raise UserError(f"{path}: the manifest does not list {name}; the package is incomplete, "
                            f"{fields.REEXPORT}")
    for name, digest in listed.items():
        if name not in (*REQUIRED, PROGRAM):
            raise UserError(f"{path / MANIFEST}: lists {name!r}, which is not a package file; "
                            f"{fields.REEXPORT}")
        if not (path / name).is_file():
            raise UserError(f"{path}: {name} is missing; the package is incomplete, {fields.REEXPORT}")
        if sha256(path / name) != digest:
            raise UserError(f"{path / name}: checksum mismatch, the file changed after export; "
                            f"{fields.REEXPORT}")


def _read_json(folder: Path, name: str, fix: str) -> dict[str, Any]:
    path = folder / name
    if not folder.is_dir():
        raise UserError(f"{folder}: no such package folder")
    if not path.is_file():
        raise UserError(f"{folder}: has no {name}; {fix}")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); {fields.REEXPORT}") from exc
    if not isinstance(doc, dict):
        raise UserError(f"{path}: not a JSON object; {fields.REEXPORT}")
    return doc


def load_model(path: str | Path, prune: float = 0.0) -> Package:
    """A package folder, a run directory or a checkpoint, as a Package."""
    path = Path(path)
    package = load_package(path) if is_package(path) else package_from_checkpoint(path)
    if prune:
        apply_pruning(package, prune)
    return package

