"""Typed schemas for every config group, registered in Hydra's ConfigStore.

`conf/config.yaml` puts `config_schema` first in its defaults list, so every YAML file and
every command-line override is merged into these dataclasses: a misspelt key or a value of
the wrong type fails at composition, before any data work. The values themselves live only in
conf/ (fields here are MISSING), so there is one source of truth for every default. Semantic
checks that types cannot express (positive counts, ratios summing to one) live in `validate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from meshgnn.errors import UserError


@dataclass
class SplitConfig:
    train: float = MISSING
    val: float = MISSING
    test: float = MISSING


@dataclass
class DataConfig:
    """Keys every dataset has. Each conf/data/*.yaml extends one of the subclasses below
    (its first default), so a built-in dataset has no folder keys and a folder no generator
    keys, and a typo in either fails at composition."""

    name: str = MISSING
    seed: int = MISSING
    split: SplitConfig = field(default_factory=SplitConfig)
    fourier_features: int = MISSING
    fourier_scale: float = MISSING
    boundary_distance: bool = MISSING
    baseline_input: bool = MISSING
    std_floor: float = MISSING
    batch_size: int = MISSING
    num_workers: int = MISSING


@dataclass
class GeneratedDataConfig(DataConfig):
    num_samples: int = MISSING
    mesh_size: float = MISSING
    max_holes: int = MISSING
    generate_workers: int = MISSING


@dataclass
class SplitGlobs:
    train: Optional[str] = MISSING
    val: Optional[str] = MISSING
    test: Optional[str] = MISSING


@dataclass
class MeshFolderDataConfig(DataConfig):
    path: str = MISSING
    pattern: str = MISSING
    inputs: List[str] = MISSING
    targets: List[str] = MISSING
    node_type_field: Optional[str] = MISSING
    node_type_values: List[int] = MISSING
    globals: List[str] = MISSING
    split_globs: SplitGlobs = field(default_factory=SplitGlobs)
    process_workers: int = MISSING


@dataclass
class ModelConfig:
    name: str = MISSING
    hidden_dim: int = MISSING
    num_layers: int = MISSING
    mlp_layers: int = MISSING
    dropout: float = MISSING
    aggregation: str = MISSING
    num_levels: int = MISSING
    coarsening: float = MISSING
    broadcast_globals: bool = MISSING
    residual: bool = MISSING


@dataclass
class LossConfig:
    name: str = MISSING
    l1_weight: float = MISSING
    relative_l1_weight: float = MISSING
    smoothness_weight: float = MISSING
    gradient_consistency_weight: float = MISSING
    curvature_weight: float = MISSING
    target_weights: Dict[str, float] = MISSING
    eps: float = MISSING


@dataclass
class OptimConfig:
    name: str = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING
    betas: List[float] = MISSING
    warmup_epochs: float = MISSING
    schedule: str = MISSING
    min_lr: float = MISSING


@dataclass
class TrainerConfig:
    epochs: int = MISSING
    grad_clip: float = MISSING
    save_every: int = MISSING
    early_stop_patience: int = MISSING
    device: str = MISSING
    deterministic: bool = MISSING
    log_every_steps: int = MISSING
    image_every: int = MISSING
    precision: str = MISSING
    compile: bool = MISSING
    activation_checkpointing: bool = MISSING
    data_on_gpu: bool = MISSING
    threads: int = MISSING
    max_time: float = MISSING


@dataclass
class PathsConfig:
    root_dir: str = MISSING
    data_dir: str = MISSING
    output_dir: str = MISSING


@dataclass
class StageConfig:
    """One stage of staged training: its loss, and changes to optim/trainer for that stage."""

    loss: LossConfig = field(default_factory=LossConfig)
    optim: Dict[str, Any] = field(default_factory=dict)
    trainer: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    data: Any = MISSING  # typed by the data option's own schema (see DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = MISSING
    objective: str = MISSING
    objective_mode: str = MISSING
    resume: Optional[str] = None
    init_from: Optional[str] = None
    stages: Dict[str, StageConfig] = field(default_factory=dict)


def register_configs() -> None:
    """Register the schema and the resolver hydra.run.dir uses to resume runs in place."""
    from meshgnn.run_dir import run_dir_resolver

    store = ConfigStore.instance()
    store.store(name="config_schema", node=Config)
    # Outside the data group, so `--help` does not list them as data options.
    store.store(group="schema/data", name="generated", node=GeneratedDataConfig)
    store.store(group="schema/data", name="mesh_folder", node=MeshFolderDataConfig)
    OmegaConf.register_new_resolver("meshgnn_run_dir", run_dir_resolver, replace=True)
    OmegaConf.register_new_resolver("meshgnn_direction", lambda mode: {"min": "minimize", "max": "maximize"}[mode],
                                    replace=True)


_CHOICES = {
    "data.name": ("heat2d", "elasticity2d", "elasticity3d", "mesh_folder"),
    "model.aggregation": ("sum", "mean", "max"),
    "optim.schedule": ("cosine", "constant"),
    "trainer.device": ("auto", "cpu", "cuda"),
    "trainer.precision": ("fp32", "bf16", "fp16"),
    "objective_mode": ("min", "max"),
}


def _get(cfg: DictConfig, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def validate(cfg: DictConfig) -> None:
    """Reject values that have the right type but cannot work, naming the key and the fix."""
    for key, allowed in _CHOICES.items():
        value = _get(cfg, key)
        if value not in allowed and not (key == "trainer.device" and str(value).startswith("cuda:")):
            raise UserError(f"{key}={value!r} is not one of {', '.join(allowed)}; pick one of those")
    generated = ("num_samples" in cfg.data)
    positive = ("data.batch_size", "data.fourier_scale", "data.std_floor",
                "model.hidden_dim", "model.num_layers", "model.mlp_layers", "optim.lr",
                "trainer.save_every")
    positive += ("data.num_samples", "data.mesh_size") if generated else ()
    for key in positive:
        if not _get(cfg, key) > 0:
            raise UserError(f"{key}={_get(cfg, key)} must be positive; set e.g. {key}=1 or larger")
    non_negative = ("trainer.epochs", "data.fourier_features", "data.num_workers",
                    "optim.weight_decay", "optim.warmup_epochs",
                    "optim.min_lr", "trainer.grad_clip", "trainer.early_stop_patience", "trainer.max_time",
                    "trainer.image_every",
                    "loss.l1_weight", "loss.relative_l1_weight", "loss.smoothness_weight",
                    "loss.gradient_consistency_weight", "loss.curvature_weight")
    non_negative += ("data.max_holes", "data.generate_workers") if generated else ("data.process_workers",)
    for key in non_negative:
        if _get(cfg, key) < 0:
            raise UserError(f"{key}={_get(cfg, key)} must be >= 0")
    if not generated:
        _validate_mesh_folder(cfg.data)
    if cfg.model.num_levels < 0:
        raise UserError(f"model.num_levels={cfg.model.num_levels} must be >= 0 (0 = single-level)")
    if not cfg.model.coarsening >= 1.5:
        raise UserError(f"model.coarsening={cfg.model.coarsening} must be >= 1.5 so each level is "
                        "coarser than the one below; 2.0 halves the resolution per level")
    if not 0.0 <= cfg.model.dropout < 1.0:
        raise UserError(f"model.dropout={cfg.model.dropout} must be in [0, 1)")
    split = cfg.data.split
    ratios = (split.train, split.val, split.test)
    if any(r < 0 for r in ratios) or not math.isclose(sum(ratios), 1.0, abs_tol=1e-6):
        raise UserError(
            f"data.split ratios train={split.train}, val={split.val}, test={split.test} sum to "
            f"{sum(ratios):g}; they must be >= 0 and sum to 1 (e.g. data.split.train=0.8 "
            "data.split.val=0.1 data.split.test=0.1)")
    for name, weight in cfg.loss.target_weights.items():
        if weight < 0:
            raise UserError(f"loss.target_weights.{name}={weight} must be >= 0")


def _validate_mesh_folder(data: DictConfig) -> None:
    for key, example in (("path", "data.path=results/"), ("targets", "data.targets=[temperature]")):
        if OmegaConf.is_missing(data, key) or (key == "targets" and not data.targets):
            raise UserError(f"data={data.name} needs data.{key}; set it, e.g. {example}")
    if bool(data.node_type_field) != bool(data.node_type_values):
        raise UserError("data.node_type_field and data.node_type_values go together: name the integer "
                        "field and list the values it may take, interior first, e.g. "
                        "data.node_type_field=node_type data.node_type_values=[0,1,2]")
    globs = [data.split_globs.train, data.split_globs.val, data.split_globs.test]
    if any(globs) and not all(globs):
        raise UserError("set all of data.split_globs.train/val/test (globs relative to data.path) or none")
    if data.baseline_input:
        raise UserError(f"data={data.name} has no analytic baseline; set data.baseline_input=false")
