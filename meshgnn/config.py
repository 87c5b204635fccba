"""Typed schemas for every config group, registered in Hydra's ConfigStore, with each key's
constraint beside it.

`conf/config.yaml` puts `config_schema` first in its defaults list, so every YAML file and
every command-line override is merged into these dataclasses: a misspelt key or a value of
the wrong type fails at composition, before any data work. The values themselves live only in
conf/ (fields here are MISSING), so there is one source of truth for every default.

What types cannot say is data too: `key(<check>)` puts a field's range or choices in its
metadata, and a schema's `relations` (a class variable, so not a config key) check fields
against each other (min_lr <= lr, ratios summing to one). `validate` applies them to a composed
config (every stage of a staged run included), `check_group` to one group of a plain dict such
as a model package's config.json. tests/test_config.py fails for a key without a constraint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, List, Mapping, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from meshgnn.constraints import (Each, EachValue, Nested, OneOf, Range, Relation, Text, at_least, check_values,
                                 fraction, key, positive)
from meshgnn.data.splits import min_samples, split_sizes
from meshgnn.data_config import (Elasticity2dRanges, Flow2dRanges, GeometryNames, Heat2dRanges, MeshSize,
                                 holes_fit_the_length)
from meshgnn.errors import UserError
from meshgnn.logger_config import LoggerConfig

SEED = Range(0, 2**32 - 1)  # numpy's seed range; every seed in the config takes it
LOSS_TERMS = ("l1", "relative_l1", "smoothness", "gradient_consistency", "curvature")


def _split_ratios(v: Mapping[str, Any], prefix: str) -> Optional[str]:
    ratios = (v["train"], v["val"], v["test"])
    if not math.isclose(sum(ratios), 1.0, abs_tol=1e-6) or not v["train"] > 0:
        return (f"{prefix} ratios train={v['train']}, val={v['val']}, test={v['test']} sum to {sum(ratios):g}; "
                f"they must sum to 1 with train > 0 (e.g. {prefix}.train=0.8 {prefix}.val=0.1 {prefix}.test=0.1)")
    return None


def _one_heat2d_baseline(v: Mapping[str, Any], prefix: str) -> Optional[str]:
    if v["shepard_cell"] is None and v["shepard_neighbours"] is None:
        return (f"{prefix}.shepard_cell=null needs {prefix}.shepard_neighbours (data version 5's nearest-node "
                f"baseline); set {prefix}.shepard_cell=0.08 (the patch baseline) or {prefix}.shepard_neighbours=64")
    return None


def _graphs_without_fp16(v: Mapping[str, Any], prefix: str) -> Optional[str]:
    if v["cuda_graphs"] and v["precision"] == "fp16":
        return (f"{prefix}.cuda_graphs=true cannot run with {prefix}.precision=fp16 (its loss scaler reads "
                f"every step's gradients back to decide on the update); use {prefix}.precision=bf16 or "
                f"{prefix}.cuda_graphs=false")
    return None


def _enough_samples(v: Mapping[str, Any], prefix: str) -> Optional[str]:
    ratios = (v["split"]["train"], v["split"]["val"], v["split"]["test"])
    if split_sizes(v["num_samples"], ratios)[0] >= 1:
        return None
    need = min_samples(ratios)
    return (f"{prefix}.num_samples={v['num_samples']} is too few for the train/val/test splits (ratios "
            f"{ratios[0]:g}/{ratios[1]:g}/{ratios[2]:g} need at least {need}); set {prefix}.num_samples={need} or more")


def _folder_node_types(v: Mapping[str, Any], prefix: str) -> Optional[str]:
    if bool(v["node_type_field"]) != bool(v["node_type_values"]):
        return (f"{prefix}.node_type_field and {prefix}.node_type_values go together: name the integer "
                f"field and list the values it may take, interior first, e.g. "
                f"{prefix}.node_type_field=node_type {prefix}.node_type_values=[0,1,2]")
    return None


def _folder_globs(v: Mapping[str, Any], prefix: str) -> Optional[str]:
    globs = [v["split_globs"][s] for s in ("train", "val", "test")]
    if any(globs) and not all(globs):
        return f"set all of {prefix}.split_globs.train/val/test (globs relative to {prefix}.path) or none"
    return None


def _folder_no_baseline(v: Mapping[str, Any], prefix: str) -> Optional[str]:
    if v["baseline_input"]:
        return f"{prefix}={v['name']} has no analytic baseline; set {prefix}.baseline_input=false"
    return None


def _some_loss_weight(v: Mapping[str, Any], prefix: str) -> Optional[str]:
    if not any(v[f"{t}_weight"] > 0 for t in LOSS_TERMS):
        return (f"every {prefix} term weight is 0 ({', '.join(f'{prefix}.{t}_weight' for t in LOSS_TERMS)}): "
                f"nothing to train on; set at least one above 0, e.g. {prefix}.l1_weight=1")
    return None


def _min_lr_below_lr(v: Mapping[str, Any], prefix: str) -> Optional[str]:
    if v["min_lr"] > v["lr"]:
        return (f"{prefix}.min_lr={v['min_lr']} is above {prefix}.lr={v['lr']}: the schedule decays from lr "
                f"to min_lr; set {prefix}.min_lr <= {prefix}.lr, e.g. {prefix}.min_lr={v['lr'] / 100:g}")
    return None


def _one_start(v: Mapping[str, Any], prefix: str) -> Optional[str]:
    if v.get("resume") and v.get("init_from"):
        return "set either resume= (continue a run) or init_from= (warm start), not both"
    return None


@dataclass
class SplitConfig:
    train: float = key(fraction())
    val: float = key(fraction())
    test: float = key(fraction())
    relations: ClassVar[tuple[Relation, ...]] = (_split_ratios,)


@dataclass
class DataConfig:
    """Keys every dataset has. Each conf/data/*.yaml extends one of the subclasses below
    (its first default), so a built-in dataset has no folder keys and a folder no generator
    keys, and a typo in either fails at composition."""

    name: str = key(OneOf(("heat2d", "elasticity2d", "elasticity3d", "flow2d", "mesh_folder")))
    seed: int = key(SEED)
    split: SplitConfig = key(Nested(), default_factory=SplitConfig)
    fourier_features: int = key(at_least(0, "0 = no Fourier features"))
    fourier_scale: float = key(positive())
    boundary_distance: bool = MISSING
    baseline_input: bool = MISSING
    std_floor: float = key(positive(eg=1e-6))
    batch_size: int = key(at_least(1))
    num_workers: int = key(at_least(0, "0 = load in the main process"))


@dataclass
class GeneratedDataConfig(DataConfig):
    num_samples: int = key(at_least(1))
    # A number, or [min, max] drawn per sample (meshgnn.data.generate.sample_mesh_size).
    mesh_size: Any = key(MeshSize())
    max_holes: int = key(at_least(0))
    generate_workers: int = key(at_least(0, "0 = one per core"))
    relations: ClassVar[tuple[Relation, ...]] = (_enough_samples,)


@dataclass
class Parts2dDataConfig(GeneratedDataConfig):
    """The 2D generators' parts (meshgnn.data.geometry.random_part) and their labels' mesh."""

    families: List[str] = key(GeometryNames("FAMILIES"))
    hole_shapes: List[str] = key(GeometryNames("HOLE_SHAPES"))
    label_refinement: int = key(at_least(0, "0 = labels solved on the training mesh itself"))
    relations: ClassVar[tuple[Relation, ...]] = (_enough_samples, holes_fit_the_length)


@dataclass
class Heat2dDataConfig(Parts2dDataConfig):
    """heat2d's own keys: its parameter ranges and its Shepard baseline's boundary patches
    (meshgnn.data.sources.heat2d)."""

    ranges: Heat2dRanges = key(Nested(), default_factory=Heat2dRanges)
    shepard_cell: Optional[float] = key(positive("side of the boundary patches the Shepard baseline weights; "
                                                 "null = data version 5's nearest-node baseline", eg=0.08))
    # Data version 5's nearest-node baseline (with shepard_cell null; old runs' configs carry them).
    shepard_neighbours: Optional[int] = key(at_least(1, "Dirichlet nodes each node's baseline averages over"))
    shepard_spacing: Optional[float] = key(positive("Dirichlet node spacing at which shepard_neighbours "
                                                    "holds; null = that many nodes on every mesh", eg=0.08))
    relations: ClassVar[tuple[Relation, ...]] = (_enough_samples, holes_fit_the_length, _one_heat2d_baseline)


@dataclass
class Elasticity2dDataConfig(Parts2dDataConfig):
    """elasticity2d's own keys: its parameter ranges (meshgnn.data.sources.elasticity2d)."""

    ranges: Elasticity2dRanges = key(Nested(), default_factory=Elasticity2dRanges)


@dataclass
class Flow2dDataConfig(GeneratedDataConfig):
    """flow2d's own keys: its channels' obstacles, parameter ranges and Newton solve
    (meshgnn.data.sources.flow2d)."""

    max_holes: int = key(at_least(1, "obstacles in a channel: 1..max_holes"))
    hole_shapes: List[str] = key(GeometryNames("HOLE_SHAPES"))
    ranges: Flow2dRanges = key(Nested(), default_factory=Flow2dRanges)
    newton_tolerance: float = key(positive("relative Newton update norm at which a solve has converged", eg=1e-10))
    newton_max_iterations: int = key(at_least(1, "Newton iterations before a sample fails"))


@dataclass
class SplitGlobs:
    train: Optional[str] = key(Text(required=False))
    val: Optional[str] = key(Text(required=False))
    test: Optional[str] = key(Text(required=False))


@dataclass
class MeshFolderDataConfig(DataConfig):
    path: str = key(Text(example="results/"))
    pattern: str = key(Text(example="'*.vtu'"))
    inputs: List[str] = key(Each(Text()))
    targets: List[str] = key(Each(Text(), min_len=1, example="[temperature]"))
    node_type_field: Optional[str] = key(Text(required=False))
    node_type_values: List[int] = key(Each(at_least(0)))
    globals: List[str] = key(Each(Text()))
    split_globs: SplitGlobs = key(Nested(), default_factory=SplitGlobs)
    process_workers: int = key(at_least(0, "0 = one per core"))
    relations: ClassVar[tuple[Relation, ...]] = (_folder_node_types, _folder_globs, _folder_no_baseline)


@dataclass
class ModelConfig:
    name: str = key(Text(example="edge_gnn"))
    hidden_dim: int = key(at_least(1))
    num_layers: int = key(at_least(1))
    mlp_layers: int = key(at_least(1))
    dropout: float = key(fraction(hi_open=True))
    aggregation: str = key(OneOf(("sum", "mean", "max")))
    num_levels: int = key(at_least(0, "0 = single-level"))
    coarsening: float = key(at_least(1.5, "each level coarser than the one below; 2.0 halves the resolution"))
    cell_size: Optional[float] = key(positive("level-1 coarse cell side in mesh length units; null = "
                                              "model.coarsening x the training meshes' mean edge length", eg=0.16))
    broadcast_globals: bool = MISSING
    residual: bool = MISSING


@dataclass
class LossConfig:
    name: str = key(Text(example="stage1"))
    l1_weight: float = key(at_least(0))
    relative_l1_weight: float = key(at_least(0))
    smoothness_weight: float = key(at_least(0))
    gradient_consistency_weight: float = key(at_least(0))
    curvature_weight: float = key(at_least(0))
    target_weights: Dict[str, float] = key(EachValue(at_least(0)))
    eps: float = key(positive("guards a division by zero", eg=1e-8))
    relations: ClassVar[tuple[Relation, ...]] = (_some_loss_weight,)


@dataclass
class OptimConfig:
    name: str = key(OneOf(("adamw",)))
    lr: float = key(positive(eg=1e-3))
    weight_decay: float = key(at_least(0))
    betas: List[float] = key(Each(fraction(hi_open=True), length=2, example="[0.9,0.999]"))
    warmup_epochs: float = key(at_least(0, "0 = no warm-up"))
    schedule: str = key(OneOf(("cosine", "constant")))
    min_lr: float = key(at_least(0))
    relations: ClassVar[tuple[Relation, ...]] = (_min_lr_below_lr,)


@dataclass
class TrainerConfig:
    epochs: int = key(at_least(0, "0 = only test the weights of init_from"))
    grad_clip: float = key(at_least(0, "0 = no clipping"))
    save_every: int = key(at_least(1))
    early_stop_patience: int = key(at_least(0, "0 = off"))
    device: str = key(OneOf(("auto", "cpu", "cuda"), prefixes=("cuda:",)))
    deterministic: bool = MISSING
    log_every_steps: int = key(at_least(1))
    image_every: int = key(at_least(0, "0 = no field images"))
    precision: str = key(OneOf(("fp32", "bf16", "fp16")))
    compile: bool = MISSING
    activation_checkpointing: bool = MISSING
    data_on_gpu: bool = MISSING
    threads: int = key(at_least(0, "0 = torch's default"))
    max_time: float = key(at_least(0, "seconds; 0 = no limit"))
    divergence_factor: float = key(at_least(0, "0 = off"))
    cuda_graphs: bool = MISSING
    bucket_growth: float = key(Range(lo=1, lo_open=True, meaning="padding adds at most this factor of rows",
                                     eg=1.1))
    relations: ClassVar[tuple[Relation, ...]] = (_graphs_without_fp16,)


@dataclass
class PathsConfig:
    root_dir: str = key(Text())
    data_dir: str = key(Text())
    output_dir: str = key(Text())


@dataclass
class StageConfig:
    """One stage of staged training: its loss, and changes to optim/trainer for that stage
    (checked as part of the stage's merged config, see `stage_config`)."""

    loss: LossConfig = key(Nested(), default_factory=LossConfig)
    optim: Dict[str, Any] = key(Nested(), default_factory=dict)
    trainer: Dict[str, Any] = key(Nested(), default_factory=dict)


@dataclass
class Config:
    data: Any = key(Nested())  # typed by the data option's own schema (see DataConfig)
    model: ModelConfig = key(Nested(), default_factory=ModelConfig)
    loss: LossConfig = key(Nested(), default_factory=LossConfig)
    optim: OptimConfig = key(Nested(), default_factory=OptimConfig)
    trainer: TrainerConfig = key(Nested(), default_factory=TrainerConfig)
    paths: PathsConfig = key(Nested(), default_factory=PathsConfig)
    logger: LoggerConfig = key(Nested(), default_factory=LoggerConfig)
    seed: int = key(SEED)
    objective: str = key(Text(example="val/loss/total"))
    objective_mode: str = key(OneOf(("min", "max")))
    resume: Optional[str] = key(Text(required=False), default=None)
    init_from: Optional[str] = key(Text(required=False), default=None)
    task_name: str = key(Text(example="train"))
    tags: List[str] = key(Each(Text()))
    stages: Dict[str, StageConfig] = key(Nested(), default_factory=dict)
    max_epochs_per_stage: int = key(at_least(0, "0 = no limit"))
    relations: ClassVar[tuple[Relation, ...]] = (_one_start,)


def register_configs() -> None:
    """Register the schema and the resolvers hydra.run.dir uses (resume in place, readable names)."""
    from meshgnn.run_dir import run_dir_resolver
    from meshgnn.run_names import run_name

    store = ConfigStore.instance()
    store.store(name="config_schema", node=Config)
    # Outside the data group, so `--help` does not list them as data options.
    store.store(group="schema/data", name="generated", node=GeneratedDataConfig)
    store.store(group="schema/data", name="heat2d", node=Heat2dDataConfig)
    store.store(group="schema/data", name="elasticity2d", node=Elasticity2dDataConfig)
    store.store(group="schema/data", name="flow2d", node=Flow2dDataConfig)
    store.store(group="schema/data", name="mesh_folder", node=MeshFolderDataConfig)
    OmegaConf.register_new_resolver("meshgnn_run_dir", run_dir_resolver, replace=True)
    OmegaConf.register_new_resolver("meshgnn_run_name", lambda task_name, overrides: run_name(task_name, overrides),
                                    replace=True)
    OmegaConf.register_new_resolver("meshgnn_direction", lambda mode: {"min": "minimize", "max": "maximize"}[mode],
                                    replace=True)


GROUPS: dict[str, type] = {"model": ModelConfig, "loss": LossConfig, "optim": OptimConfig,
                           "trainer": TrainerConfig, "paths": PathsConfig}


def data_schema(values: Mapping[str, Any]) -> type:
    """The schema of a data section: a mesh folder's, a built-in generator's own, or the
    generators' common one (elasticity3d)."""
    return {"mesh_folder": MeshFolderDataConfig, "heat2d": Heat2dDataConfig, "elasticity2d": Elasticity2dDataConfig,
            "flow2d": Flow2dDataConfig}.get(values.get("name"), GeneratedDataConfig)


def check_group(group: str, values: Mapping[str, Any], where: str) -> None:
    """Check one group of a plain mapping (e.g. a model package's config.json section) against
    the same constraints as training configs, refusing unknown and missing keys too: raises
    UserError "<where>: model.aggregation='median' is not one of sum, mean, max; ...".
    `group` is a top-level key: data, model, loss, optim, trainer or paths."""
    if not isinstance(values, Mapping):
        raise UserError(f"{where}: {group} must be a mapping of keys to values, not {type(values).__name__}")
    schema = data_schema(values) if group == "data" else GROUPS.get(group)
    if schema is None:
        raise ValueError(f"no config group {group!r}")  # a caller's bug, not the user's
    check_values(schema, values, group, where, strict=True)


def _plain(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain values, interpolations resolved except under `paths` (they name
    Hydra's runtime, not known before Hydra starts; their values are only paths)."""
    out: dict[str, Any] = {}
    for name in cfg:
        if name == "hydra":
            continue
        node = cfg._get_node(name)
        if OmegaConf.is_config(node):
            out[name] = OmegaConf.to_container(node, resolve=name != "paths")
        else:
            out[name] = cfg[name] if not OmegaConf.is_missing(cfg, name) else "???"
    return out


def validate(cfg: DictConfig, where: str = "") -> None:
    """Refuse, in one line naming the key and the fix, any value that has the right type but
    cannot work; then every stage of a staged run, as that stage will train."""
    values = _plain(cfg)
    check_values(Config, values, "", where, strict=False)
    check_values(data_schema(values["data"]), values["data"], "data", where, strict=False)
    for name in values.get("stages") or {}:
        validate(stage_config(cfg, name), where=f"stages.{name}")


def stage_config(cfg: DictConfig, name: str) -> DictConfig:
    """The plain config of one stage (its loss, its optim/trainer changes), without stages or
    a resume/init_from of its own; the stage's folder is the caller's business."""
    stage = cfg.stages[name]
    out = cfg.copy()
    try:
        out.loss = stage.loss
        out.optim = OmegaConf.merge(cfg.optim, stage.optim)
        out.trainer = OmegaConf.merge(cfg.trainer, stage.trainer)
    except OmegaConfBaseException as exc:  # an unknown key or a wrong type
        raise UserError(f"stages.{name}: {str(exc).splitlines()[0]}; stage optim/trainer entries must be "
                        "keys of optim/trainer") from exc
    out.trainer.epochs = stage_end_epochs(cfg)[name]
    out.stages = {}
    out.resume = out.init_from = None
    out.max_epochs_per_stage = 0
    return out


def stage_end_epochs(cfg: DictConfig) -> dict[str, int]:
    """The epoch each stage ends at (stage epochs count from the start of the first stage),
    with max_epochs_per_stage applied: a stage ends at most that many epochs after the one
    before it, so debug=default shrinks any staged experiment, whatever its stage names."""
    limit, previous, ends = int(cfg.max_epochs_per_stage), 0, {}
    for name, stage in cfg.stages.items():
        epochs = int(stage.trainer.get("epochs", cfg.trainer.epochs))
        ends[name] = previous = min(epochs, previous + limit) if limit > 0 else epochs
    return ends
