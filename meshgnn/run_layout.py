"""Where a run directory keeps its parts, for the tools that read finished runs.

A plain run holds metrics.jsonl, checkpoints/ and results.json itself. A staged run
(`experiment=two_stage`) holds one such plain run per stage, `<run dir>/<stage>/`, in the
order of its config's `stages`, and its first launch's config under .hydra/launches/01/.
Tools (diagnose, plot, export, predict, evaluate) resolve a directory here instead of each
guessing the layout. Torch-free: the launch checks import it.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


def staged_run_config(run_dir: Path) -> Path:
    """Where a staged run keeps its first launch's config (it has no checkpoints/ of its own)."""
    return Path(run_dir) / ".hydra" / "launches" / "01" / "config.yaml"


def stage_names(run_dir: Path) -> list[str]:
    """A staged run's stages in training order; [] for a plain run (its first launch's config
    is kept there too, with `stages: {}`) or a folder that is no run."""
    config = staged_run_config(run_dir)
    if not config.is_file():
        return []
    try:
        stages = OmegaConf.load(config).get("stages") or {}
    except (OSError, ValueError, yaml.YAMLError, OmegaConfBaseException):  # unreadable: no layout to resolve
        return []
    return [str(name) for name in stages]


def is_staged(run_dir: Path) -> bool:
    return bool(stage_names(run_dir))


def stage_dirs(run_dir: Path) -> list[Path]:
    """A staged run's stage directories that exist, in training order ([] for a plain run)."""
    return [Path(run_dir) / name for name in stage_names(run_dir) if (Path(run_dir) / name).is_dir()]


def finished(run_dir: Path) -> bool:
    """A plain run (or one stage) that trained to its end and was tested."""
    return (Path(run_dir) / "results.json").is_file()


def final_stage_dir(run_dir: Path) -> Path:
    """The plain run a tool should read by default: a plain run itself; for a staged run the
    last stage that finished, else the last one that saved a checkpoint, else the first."""
    stages = stage_dirs(run_dir)
    if not stages:
        return Path(run_dir)
    for predicate in (finished, lambda d: (d / "checkpoints").is_dir()):
        done = [d for d in stages if predicate(d)]
        if done:
            return done[-1]
    return stages[0]
