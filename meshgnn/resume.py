"""Where a launch starts from: fresh, resume in place, a branch from an older epoch, or a warm start.

- `resume=<run dir>` (or its `checkpoints/last.ckpt`) continues that run in the same
  directory with the run's own config; command-line overrides apply on top.
- `meshgnn ckpt set-lr <run dir>/checkpoints/last.ckpt LR` writes last_lr_adjusted.ckpt, which
  `resume=<run dir>` then continues from (in place, at the new rate) until the run saves again.
- `resume=<run dir>/checkpoints/epoch_0150.ckpt` (any checkpoint other than last.ckpt)
  starts a *branch*: a new run directory that records its parent in run.json, so checkpoints
  of the abandoned continuation are never mixed with the new ones.
- `resume=auto` with an explicit `hydra.run.dir` resumes if that directory holds a
  checkpoint and starts fresh otherwise (what a requeued cluster job needs).
- `init_from=<run dir | ckpt>` starts a new run from those weights and normaliser with a
  fresh optimiser and schedule; the epoch counter continues (staged training).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from meshgnn.errors import UserError
from meshgnn.run_layout import is_staged

# Overrides that may change on a resume although they sit under data/model: they change
# neither the network's shape nor the samples.
SHAPE_SAFE_KEYS = ("data.batch_size", "data.num_workers", "data.generate_workers", "model.dropout")
ZIP_MAGIC = b"PK\x03\x04"
# Keys that always come from the current launch, never from the saved config.
LAUNCH_KEYS = ("paths", "resume", "init_from")
# Config groups whose options write anywhere in the config (# @package _global_).
GLOBAL_GROUPS = ("experiment", "hparams_search")
# `meshgnn ckpt set-lr` writes <checkpoint stem> + this + .ckpt beside the checkpoint.
LR_ADJUSTED_SUFFIX = "_lr_adjusted"


@dataclass
class StartPoint:
    kind: str  # "fresh" | "resume" | "branch" | "init"
    checkpoint: Path | None = None
    payload: dict[str, Any] | None = None
    applied_overrides: dict[str, Any] | None = None  # resume: key -> (saved, new)
    # Epochs already trained in the lineage. Usually the checkpoint's epoch; a warm start from
    # a run directory takes the best weights but continues counting after the run's last epoch.
    completed_epochs: int | None = None

    @property
    def epoch(self) -> int:
        if self.completed_epochs is not None:
            return self.completed_epochs
        return int(self.payload["epoch"]) if self.payload else 0


def load_checkpoint(path: Path) -> dict[str, Any]:
    """meshgnn.training.checkpoint.load_checkpoint, imported when a checkpoint is read: the
    launch checks import this module before torch."""
    from meshgnn.training.checkpoint import load_checkpoint as load

    return load(path)


def lr_adjusted(checkpoint: Path) -> Path:
    """Where `meshgnn ckpt set-lr` writes a checkpoint's copy with a new learning rate."""
    checkpoint = Path(checkpoint)
    stem = checkpoint.stem.removesuffix(LR_ADJUSTED_SUFFIX)
    return checkpoint.with_name(f"{stem}{LR_ADJUSTED_SUFFIX}.ckpt")


def run_checkpoint(run_dir: Path) -> Path:
    """The checkpoint a run continues from: checkpoints/last.ckpt, or its set-lr copy
    (last_lr_adjusted.ckpt) while that is at the same step, so `resume=<run dir>` continues the
    run in place at the new rate. Once the run saves a later step, last.ckpt is newer again."""
    last = Path(run_dir) / "checkpoints" / "last.ckpt"
    adjusted = lr_adjusted(last)
    if adjusted.is_file() and last.is_file() and _progress(adjusted) == _progress(last):
        return adjusted
    return last


def _progress(checkpoint: Path) -> tuple[int, int]:
    """(epoch, global step) of a checkpoint; read once per file version (a launch asks several times)."""
    stat = checkpoint.stat()
    return _progress_of(checkpoint.resolve(), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _progress_of(checkpoint: Path, mtime_ns: int, size: int) -> tuple[int, int]:
    """`mtime_ns` and `size` only key the cache: a rewritten file is read again."""
    payload = load_checkpoint(checkpoint)
    return int(payload["epoch"]), int(payload["global_step"])


def find_checkpoint(path: str, key: str, prefer: tuple[str, ...] = ("last.ckpt",)) -> Path:
    """A checkpoint file from a run directory (the run's own, run_checkpoint, for last.ckpt) or a
    checkpoint path, or one clear error."""
    p = Path(path).expanduser()
    if p.is_dir():
        for name in prefer:
            if (p / "checkpoints" / name).is_file():
                return run_checkpoint(p) if name == "last.ckpt" else p / "checkpoints" / name
        raise UserError(f"{key}={path}: not a meshgnn run directory (no checkpoints/{' or '.join(prefer)}); "
                        f"pass a run directory that has trained at least one epoch, or a .ckpt file")
    if p.is_file():
        return p
    raise UserError(f"{key}={path}: no such run directory or checkpoint file")


def check_start_paths(resume: str | None, init_from: str | None) -> None:
    """Before Hydra creates or writes into any directory: refuse, in one line, a resume= or
    init_from= that is not a run directory (with a checkpoint, or a staged run) or not a
    meshgnn checkpoint file. A file is read (torch is loaded) to verify it. (That both are set
    is refused by the config's own relation, checked before this.)"""
    for key, path, prefer in (("resume", resume, ("last.ckpt",)), ("init_from", init_from, ("best.ckpt", "last.ckpt"))):
        if not path or (key == "resume" and path == "auto"):
            continue
        p = Path(path).expanduser()
        if key == "resume" and p.is_dir() and is_staged(p):
            continue
        ckpt = find_checkpoint(path, key, prefer)
        if not p.is_dir():
            with ckpt.open("rb") as f:  # torch writes zip files: anything else is refused before torch loads
                if f.read(4) != ZIP_MAGIC:
                    raise UserError(f"{key}={path}: not a meshgnn checkpoint (not a file torch wrote); pass "
                                    "a run directory or a .ckpt file from its checkpoints/")
            load_checkpoint(ckpt)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config container as {"dotted.key": leaf}, for comparing configs key by key."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def touched(overrides: list[str]) -> tuple[list[str], bool]:
    """Config paths the command-line overrides name, and whether a global group was chosen."""
    keys, global_group = [], False
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if key.startswith("hydra") or key in LAUNCH_KEYS:
            continue
        if key in GLOBAL_GROUPS:
            global_group = True
        keys.append(key)
    return keys, global_group


def merge_resumed_config(saved_yaml: str, composed: DictConfig, overrides: list[str]) -> tuple[DictConfig, dict]:
    """The saved config, with what this launch's command line changes applied on top.

    Raises when such a change would alter the model or the data (the saved weights and
    optimiser state would no longer fit): those need a warm start with `init_from`.
    """
    try:
        with open_dict(composed):  # `stages` is an open mapping: a staged run's names are new keys
            saved = OmegaConf.merge(composed, OmegaConf.create(saved_yaml))
    except OmegaConfBaseException as exc:
        raise UserError(f"the checkpoint's config does not fit this version of meshgnn's config "
                        f"schema ({str(exc).splitlines()[0]}); start a new run with init_from=<checkpoint>") from exc
    keys, global_group = touched(overrides)
    new = flatten(OmegaConf.to_container(composed, resolve=False))
    old = flatten(OmegaConf.to_container(saved, resolve=False))
    changed = {}
    for path in sorted(set(new) | set(old)):
        if path.split(".")[0] in LAUNCH_KEYS or new.get(path) == old.get(path):
            continue
        if global_group or any(path == k or path.startswith(k + ".") for k in keys):
            changed[path] = (old.get(path), new.get(path))
    blocked = [p for p in changed if p.split(".")[0] in ("data", "model") and p not in SHAPE_SAFE_KEYS]
    if blocked:
        raise UserError(f"cannot change {', '.join(blocked)} when resuming: the saved weights and data "
                        "would no longer fit. To start from these weights with a new model or data, use "
                        "init_from=<run dir or ckpt> instead of resume=")
    for path, (_, value) in changed.items():
        OmegaConf.update(saved, path, value, merge=False, force_add=True)
    for key in LAUNCH_KEYS:
        saved[key] = composed[key]
    return saved, changed


def recorded_choices(start: StartPoint) -> dict[str, Any]:
    """The config-group choices a checkpoint records (what `meshgnn ckpt inspect` composes to
    diff against): this launch's for a fresh run or a warm start; on a resume or a branch the
    resumed checkpoint's own, with the groups this launch's command line chose on top. A resume
    composes only the defaults plus its overrides, so its own choices would say trainer=default
    (or debug=null) of a run that trained with trainer=debug."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    launch = dict(HydraConfig.get().runtime.choices)
    if start.kind not in ("resume", "branch") or not start.payload:
        return launch
    chosen = dict(start.payload.get("hydra_choices") or launch)
    for override in OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task)):
        if override.key_or_group in launch:
            chosen[override.key_or_group] = launch[override.key_or_group]
    return chosen


def start_point(cfg: DictConfig, overrides: list[str], run_dir: Path) -> tuple[DictConfig, StartPoint]:
    """Decide how this launch starts and with which effective config (`cfg` validated: never
    both resume= and init_from=)."""
    if cfg.resume:
        if cfg.resume == "auto":
            if not run_checkpoint(run_dir).is_file():
                return cfg, StartPoint("fresh")
            ckpt = run_checkpoint(run_dir)
        else:
            ckpt = find_checkpoint(cfg.resume, "resume")
        payload = load_checkpoint(ckpt)
        merged, changed = merge_resumed_config(payload["config_yaml"], cfg, overrides)
        kind = "resume" if ckpt.resolve() == run_checkpoint(run_dir).resolve() else "branch"
        return merged, StartPoint(kind, ckpt, payload, changed)
    if cfg.init_from:
        ckpt = find_checkpoint(cfg.init_from, "init_from", prefer=("best.ckpt", "last.ckpt"))
        start = StartPoint("init", ckpt, load_checkpoint(ckpt))
        if Path(cfg.init_from).is_dir():
            start.completed_epochs = int(load_checkpoint(run_checkpoint(Path(cfg.init_from)))["epoch"])
        if start.epoch >= cfg.trainer.epochs > 0:  # trainer.epochs=0: only test these weights
            raise UserError(f"init_from={cfg.init_from} has trained {start.epoch} epochs and "
                            f"trainer.epochs={cfg.trainer.epochs} is the total: nothing left to train; "
                            f"raise trainer.epochs above {start.epoch}")
        return cfg, start
    return cfg, StartPoint("fresh")
