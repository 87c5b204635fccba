"""Staged training in one run directory (experiment=two_stage): each stage in
<run dir>/<stage>/, from the previous stage's best weights; resume=<run dir> continues
whichever stage was interrupted.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from meshgnn.config import stage_config as config_stage
from meshgnn.config import validate
from meshgnn.errors import Interrupted, StorageError, UserError
from meshgnn.model_run import resume_command, train
from meshgnn.objectives import objective_value
from meshgnn.resume import merge_resumed_config, run_checkpoint, start_point, touched
from meshgnn.run_layout import finished, staged_run_config
from meshgnn.training.metrics_log import read_metrics

log = logging.getLogger("meshgnn")
# What a stage sets for itself (stages.<name>.{loss, optim, trainer}).
STAGE_SECTIONS = ("loss", "optim", "trainer")


def resumed_staged_config(cfg: DictConfig, overrides: list[str], run_dir: Path) -> DictConfig:
    """`resume=<staged run dir>`: the staged run's own config, overrides on top."""
    first = staged_run_config(run_dir)
    if not cfg.resume or run_checkpoint(run_dir).is_file() or not first.is_file():
        return cfg
    saved = OmegaConf.load(first)
    if not saved.get("stages"):
        return cfg
    unreached = [k for k in touched(overrides)[0] if k.split(".")[0] in STAGE_SECTIONS]
    if unreached:
        raise UserError(
            f"resume={cfg.resume} is a staged run: {', '.join(unreached)} would not reach the stage it "
            f"resumes (each stage resumes with its own saved settings); to change an interrupted stage's "
            f"learning rate: meshgnn ckpt set-lr {run_dir}/<stage>/checkpoints/last.ckpt LR, then run the "
            f"command it prints")
    merged, _ = merge_resumed_config(OmegaConf.to_yaml(saved), cfg, overrides)
    merged.resume = None
    return merged


def stage_config(cfg: DictConfig, name: str) -> DictConfig:
    """The plain config of one stage (meshgnn.config.stage_config) in its own folder."""
    out = config_stage(cfg, name)
    out.paths.output_dir = str(Path(cfg.paths.output_dir) / name)
    return out


def run_stages(cfg: DictConfig, overrides: list[str], run_dir: Path) -> float:
    """Train the stages in order, each in `<run dir>/<stage>/`, each from the previous one's
    best weights; a finished stage (results.json) is skipped, an interrupted one resumed."""
    names = list(cfg.stages)
    objective = math.nan
    for index, name in enumerate(names):
        stage_cfg = stage_config(cfg, name)
        validate(stage_cfg)
        stage_dir = Path(stage_cfg.paths.output_dir)
        if finished(stage_dir):
            log.info("stage %s already finished; skipping", name)
            objective = objective_value(stage_cfg, read_metrics(stage_dir))
            continue
        if run_checkpoint(stage_dir).is_file():
            stage_cfg.resume = str(stage_dir)
        elif index > 0:
            stage_cfg.init_from = str(run_dir / names[index - 1])
        log.info("stage %s (%d/%d): loss=%s, %s", name, index + 1, len(names), stage_cfg.loss.name,
                 "resuming" if stage_cfg.resume else "warm start" if stage_cfg.init_from else "fresh")
        stage_dir.mkdir(parents=True, exist_ok=True)
        stage_cfg, start = start_point(stage_cfg, [], stage_dir)
        try:
            objective = train(stage_cfg, start, stage_dir)
        except (Interrupted, StorageError) as exc:  # continue the staged run, not the stage alone
            raise type(exc)(str(exc).replace(resume_command(stage_dir), resume_command(run_dir))) from None
    return objective

