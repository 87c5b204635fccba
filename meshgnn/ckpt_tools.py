"""Offline checkpoint tools behind `meshgnn ckpt ...`: inspect, and set the learning rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from meshgnn.resume import LAUNCH_KEYS, flatten, lr_adjusted, run_checkpoint
from meshgnn.run_layout import finished, stage_names
from meshgnn.training.checkpoint import load_checkpoint, save_checkpoint


def describe(path: Path, payload: dict[str, Any]) -> list[str]:
    """Human-readable summary lines of a verified checkpoint."""
    stop = payload["early_stopping"]
    progress = payload["epoch_progress"]
    lines = [
        f"checkpoint     {path} ({path.stat().st_size / 1e6:.2f} MB), checksum OK",
        f"format         {payload['format']} v{payload['format_version']}",
        f"epoch          {payload['epoch']} completed, global step {payload['global_step']}"
        + (f", {progress['batches_done']} batches into epoch {payload['epoch'] + 1}"
           if progress["batches_done"] else ""),
        f"learning rate  {payload['optimizer']['param_groups'][0]['lr']:.3g} (last step); "
        f"schedule peak {payload['scheduler']['lr']:.3g}, {payload['scheduler']['kind']}",
        f"early stopping best val/loss/total {stop['best_value']:.6g} at epoch {stop['best_epoch']}, "
        f"{stop['bad_epochs']} epochs without improvement",
        f"dataset        fingerprint {payload['dataset_fingerprint']}",
    ]
    lineage = payload.get("lineage", {})
    lines.append("lineage        " + (", ".join(f"{k}={v}" for k, v in lineage.items()
                                              if k != "changed") or "fresh"))
    for key, change in lineage.get("changed", {}).items():
        lines.append(f"               changed {key}: {change['from']} -> {change['to']}")
    metrics = payload.get("metrics") or {}
    shown = [k for k in ("train/loss/total", "val/loss/total") if k in metrics]
    shown += sorted(k for k in metrics if k.endswith("/rel_l2"))
    if shown:
        lines.append("metrics        " + ", ".join(f"{k}={metrics[k]:.4g}" for k in shown))
    return lines


def config_differences(saved_yaml: str, current: Any) -> list[str]:
    """`key: saved (conf/: current)` for every leaf that differs, paths and launch keys aside.
    A checkpoint holds its config resolved; a conf/ interpolation (debug's
    `max_epochs_per_stage: ${trainer.epochs}`) is no difference when it gives the saved value
    from the saved config's own keys (only the key it follows was changed), else it is shown
    with conf/'s value; one that cannot resolve outside a run is compared as written."""
    saved_config = OmegaConf.create(saved_yaml)
    saved = flatten(OmegaConf.to_container(saved_config, resolve=False))
    now = flatten(OmegaConf.to_container(current, resolve=False))
    rows = []
    for key in sorted(set(saved) | set(now)):
        if key.split(".")[0] in LAUNCH_KEYS:
            continue
        if isinstance(now.get(key), str) and "${" in now[key]:
            now[key] = _interpolated(key, now[key], saved_config, current, saved.get(key))
        if saved.get(key) == now.get(key):
            continue
        rows.append(f"  {key}: {saved.get(key, '<absent>')} (conf/: {now.get(key, '<absent>')})")
    return rows


def _interpolated(key: str, expression: str, saved: DictConfig, current: Any, saved_value: Any) -> Any:
    """conf/'s `expression` at `key`: the saved value when it follows from the saved config,
    else its value in conf/, else the expression itself."""
    probe = saved.copy()
    try:
        OmegaConf.update(probe, key, expression, merge=False, force_add=True)
        if OmegaConf.select(probe, key, throw_on_resolution_failure=True) == saved_value:
            return saved_value
    except OmegaConfBaseException:
        pass
    try:
        return OmegaConf.select(current, key, throw_on_resolution_failure=True)
    except OmegaConfBaseException:
        return expression


def composed_like(payload: dict[str, Any], conf_dir: Path) -> tuple[DictConfig, list[str], list[str]]:
    """`conf_dir` composed with the config-group choices the checkpoint recorded (its
    hydra_choices: trainer, debug, experiment, ...), as one stage when the checkpoint is a stage's
    of a staged run; also the choices used and those skipped because `conf_dir` no longer has
    that option (each as "group=choice"). Nested choices (`debug/data@data`) follow from their
    parent's and are not passed; neither are Hydra's own."""
    from hydra import compose, initialize_config_dir

    from meshgnn.config import register_configs, stage_config

    used, skipped = [], []
    for group, choice in (payload.get("hydra_choices") or {}).items():
        if choice is None or group.startswith("hydra") or "@" in group or "/" in group:
            continue
        exists = str(choice).startswith("[") or (conf_dir / group / f"{choice}.yaml").is_file()
        (used if exists else skipped).append(f"{group}={choice}")
    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base="1.3"):
        composed = compose(config_name="config", overrides=used)
    stage = Path(str(OmegaConf.create(payload["config_yaml"]).paths.output_dir)).name
    if composed.stages and stage in composed.stages:
        composed = stage_config(composed, stage)
    return composed, used, skipped


def set_lr(path: Path, lr: float) -> Path:
    """Write `<name>_lr_adjusted.ckpt` (resume.lr_adjusted; set-lr on that copy rewrites it):
    same state, learning rate `lr` from its next step on.

    The optimiser's parameter groups, the saved config and the schedule all get the new rate,
    and the schedule restarts at the checkpoint without warmup, so a resume from the new file
    trains at `lr` on its first step and decays from there.
    """
    payload = load_checkpoint(path)
    for group in payload["optimizer"]["param_groups"]:
        group["lr"] = lr
        group["initial_lr"] = lr
    config = OmegaConf.create(payload["config_yaml"])
    config.optim.lr = lr
    config.optim.warmup_epochs = 0.0
    payload["config_yaml"] = OmegaConf.to_yaml(config)
    payload["scheduler"] = {**payload["scheduler"], "lr": lr, "warmup_steps": 0}
    payload["schedule_origin"] = [payload["epoch"], payload["global_step"]]
    payload.setdefault("lineage", {})["lr_adjusted"] = {"from_checkpoint": str(path), "lr": lr}
    payload = {k: v for k, v in payload.items() if k not in ("checksum", "format", "format_version")}
    out = lr_adjusted(path)
    save_checkpoint(payload, out)
    return out


def continue_command(written: Path, source: Path) -> str:
    """How to train on from `written` (set_lr's copy of `source`), as one sentence with the
    command. The run's last.ckpt: `resume=<run dir>` continues in place (a stage's: the staged
    run's directory), since resume takes last_lr_adjusted.ckpt while it is at last.ckpt's step;
    with `trainer.epochs` raised when the run already trained all its epochs. Any other
    checkpoint: `resume=<that file>`, which starts a branch (a new run directory)."""
    payload = load_checkpoint(written)
    epoch = int(payload["epoch"])
    epochs = int(OmegaConf.create(payload["config_yaml"]).trainer.epochs)
    run_dir = source.parent.parent
    if source.parent.name != "checkpoints" or run_checkpoint(run_dir) != written:
        return (f"branch off at epoch {epoch} into a new run directory (its parent stays as it is) with: "
                f"python train.py resume={written}" + ("" if epoch < epochs else f" trainer.epochs={2 * epochs}"))
    staged_run = run_dir.parent if run_dir.name in stage_names(run_dir.parent) else None
    if staged_run is not None:
        if finished(run_dir):
            return (f"stage {run_dir.name} of {staged_run} has finished, and a staged run does not train a "
                    f"finished stage again; branch off at epoch {epoch} into a new run directory with: "
                    f"python train.py resume={written} trainer.epochs={2 * epochs}")
        return f"continue the run in place from epoch {epoch + 1} with: python train.py resume={staged_run}"
    if epoch >= epochs:
        return (f"the run has trained all its trainer.epochs={epochs}; continue it in place with more epochs: "
                f"python train.py resume={run_dir} trainer.epochs={2 * epochs}")
    return f"continue the run in place from epoch {epoch + 1} with: python train.py resume={run_dir}"
