"""Train one model in one run directory: data, model, loss, optimiser and trainer wired
together from the config and the start point (fresh, resumed, branched, warm-started), then
tested on the best weights. Staged runs call it once per stage (meshgnn.stages).

Everything a user can get wrong is checked before any expensive work, and every such mistake
ends in one line naming the key, file or path (UserError), never a traceback.
"""

from __future__ import annotations

import logging
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import DictConfig, OmegaConf

from meshgnn.data.dataset import load_datasets, make_loader, move_to_device
from meshgnn.data.features import ModelInputs, check_resumable
from meshgnn.data.normalizer import Normalizer
from meshgnn.devices import resolve_device
from meshgnn.distributed import Dist, relaunch_command
from meshgnn.errors import Interrupted, StorageError, UserError
from meshgnn.loggers.base import RunInfo, run_name
from meshgnn.loggers.fanout import check_logger_packages, open_loggers
from meshgnn.models import build_model
from meshgnn.models.build import compiled_forward, data_parallel_forward
from meshgnn.objectives import check_objective, check_target_weights, objective_value, target_names
from meshgnn.resume import StartPoint, recorded_choices, run_checkpoint
from meshgnn.run_records import (describe_start, hparam_settings, lineage_of, record_divergence, write_results,
                                 write_run_json)
from meshgnn.sweeps.pruning import PruningReporter, is_sweep_trial
from meshgnn.training.checkpoint import load_checkpoint
from meshgnn.training.divergence import TrainingDiverged
from meshgnn.training.losses import TERMS, CompositeLoss
from meshgnn.training.metrics_log import MetricsLog, read_metrics
from meshgnn.training.rng import seed_everything
from meshgnn.training.schedule import Schedule
from meshgnn.training.trainer import Trainer, TrainerSettings
from meshgnn.weights import load_weights

log = logging.getLogger("meshgnn")


def train(cfg: DictConfig, start: StartPoint, run_dir: Path) -> float:
    """Train one model in `run_dir` from `start`, test it, and return the objective.

    A failed write (StorageError) gets the way to continue once the cause is removed; a
    diverged run is recorded in run.json and diagnosed (diagnosis.json) before it stops. A
    resume of a finished run (resume=auto on a requeued job) says so, and how to train on."""
    if start.kind == "resume" and start.epoch >= cfg.trainer.epochs > 0:
        log.info("run %s is finished: it has trained all trainer.epochs=%d epochs, so nothing is trained and "
                 "its best weights are tested again; to train further, raise the total: %s trainer.epochs=%d",
                 run_dir, cfg.trainer.epochs, resume_command(run_dir), 2 * cfg.trainer.epochs)
    try:
        return _train(cfg, start, run_dir)
    except StorageError as exc:
        raise StorageError(f"{exc}; then {_continue_hint(run_dir)}") from exc
    except TrainingDiverged as exc:
        if Dist.current().is_main:
            record_divergence(run_dir, exc.record)
        raise


def _continue_hint(run_dir: Path) -> str:
    if run_checkpoint(run_dir).is_file():
        return f"resume with: {resume_command(run_dir)}"
    return "run the same command again (no epoch was saved yet)"


def _train(cfg: DictConfig, start: StartPoint, run_dir: Path) -> float:
    names = target_names(cfg.data)
    check_target_weights(cfg, names)
    check_objective(cfg, names)
    check_logger_packages(cfg.logger)
    dist = Dist.current()
    device = _device(cfg.trainer.device, dist)
    _configure_torch(cfg)

    if start.kind in ("resume", "branch"):
        check_resumable(start.payload.get("features"), start.checkpoint)
    saved_normalizer = Normalizer.from_state_dict(start.payload["normalizer"]) if start.payload else None
    data = _in_turn(dist, lambda: load_datasets(cfg.data, cfg.paths.data_dir, ModelInputs.of_model(cfg.model),
                                                normalizer=saved_normalizer))
    if start.kind in ("resume", "branch") and start.payload["dataset_fingerprint"] != data.fingerprint:
        raise UserError(f"{start.checkpoint}: was trained on a different dataset (fingerprint "
                        f"{start.payload['dataset_fingerprint']}, now {data.fingerprint}); the generator or "
                        "data config changed. Use init_from= to start a new run from these weights")

    targets = [(f.name, f.dim) for f in data.features.source.targets]
    model = build_model(cfg.model, data.node_dim, data.edge_dim, targets,
                        residual=data.features.residual).to(device)
    model.checkpoint_blocks = cfg.trainer.activation_checkpointing
    loss_fn = CompositeLoss(targets, {t: cfg.loss[f"{t}_weight"] for t in TERMS},
                            dict(cfg.loss.target_weights), data.normalizer.mean["y"],
                            data.normalizer.std["y"], cfg.loss.eps).to(device)
    on_gpu = device.type == "cuda" and cfg.trainer.data_on_gpu and move_to_device(
        data.splits, device, torch.cuda.mem_get_info(device)[0] // 4)
    if on_gpu:
        log.info("dataset held on %s: batches are assembled there", device)
    # data.batch_size is per process: under DDP a step trains on batch_size x world_size graphs.
    loaders = {name: make_loader(ds, cfg.data.batch_size, name == "train", cfg.seed,
                                 0 if on_gpu else cfg.data.num_workers,
                                 pin_memory=device.type == "cuda" and not on_gpu,
                                 rank=dist.rank, world_size=dist.world_size, pad=name == "train")
               for name, ds in data.splits.items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                  weight_decay=cfg.optim.weight_decay, foreach=True)
    settings = TrainerSettings(cfg.trainer.epochs, cfg.trainer.grad_clip, cfg.trainer.save_every,
                               cfg.trainer.early_stop_patience, cfg.trainer.log_every_steps,
                               cfg.trainer.max_time, cfg.trainer.precision, cfg.trainer.divergence_factor,
                               monitor=cfg.objective, monitor_mode=cfg.objective_mode,
                               cuda_graphs=cfg.trainer.cuda_graphs, bucket_growth=cfg.trainer.bucket_growth)
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    lineage = lineage_of(start)
    hydra_choices = recorded_choices(start)
    trainer = Trainer(model, loss_fn, optimizer, None, loaders, settings, run_dir, device,
                      lambda: {"normalizer": data.normalizer.state_dict(), "config_yaml": config_yaml,
                               "dataset_fingerprint": data.fingerprint, "lineage": lineage,
                               "features": data.features.to_json(),
                               "hydra_choices": hydra_choices}, dist)
    if cfg.trainer.compile and not dist.enabled:
        trainer.forward = compiled_forward(model)
    _apply_start(trainer, start, cfg)
    if dist.enabled:  # after the start's weights are in: DDP checks every rank has the same
        trainer.forward, trainer.eval_forward = data_parallel_forward(model, device, cfg.trainer.compile)
    if cfg.trainer.image_every > 0 and dist.is_main:
        from meshgnn.data.graph_cells import graph_cells  # mesh files, matplotlib: only when drawing
        from meshgnn.training.field_images import FieldImages

        trainer.epoch_hooks.append(FieldImages(
            model, data.splits["val"][0], lambda: graph_cells(cfg.data, data.splits["val"], 0), targets,
            loss_fn.columns, loss_fn.physical,
            lambda tag, image, epoch: trainer.metrics_log.add_image(tag, image, epoch),
            cfg.trainer.image_every, device))
    reporter = PruningReporter.for_this_job(cfg.objective, cfg.trainer.epochs)
    if reporter is not None:
        trainer.epoch_hooks.append(reporter)
    trainer.schedule = _schedule(cfg, trainer.state.schedule_origin_epoch, len(loaders["train"]))

    if dist.is_main:
        data.normalizer.save(run_dir / "normalization.json")
        write_run_json(run_dir, cfg, data, start, lineage)
    log.info("model %s: %d parameters, device %s, %d steps/epoch, %s", cfg.model.name,
             sum(p.numel() for p in model.parameters()), device, len(loaders["train"]),
             describe_start(start))
    log.info("precision %s, compile %s, activation checkpointing %s", cfg.trainer.precision,
             "on" if cfg.trainer.compile else "off", "on" if model.checkpoint_blocks else "off")
    if dist.enabled:
        log.info("data parallel: %d processes, data.batch_size=%d per process (%d graphs per step)",
                 dist.world_size, cfg.data.batch_size, cfg.data.batch_size * dist.world_size)

    # The chosen loggers see the whole launch, test included, and its end status.
    trainer.metrics_log = _metrics_log(cfg, run_dir, trainer.state.epoch + 1) if dist.is_main else None
    with trainer.metrics_log or nullcontext():
        state = trainer.fit()
        if state.stopped_by:
            raise Interrupted(f"stopped by {state.stopped_by} during epoch {state.epoch + 1}; last.ckpt is "
                              f"saved. Resume with:\n  {resume_command(run_dir)}")
        best = run_dir / "checkpoints" / "best.ckpt"
        if best.is_file():  # a branch that never beat its parent's best keeps its last weights
            trainer.restore(load_checkpoint(best), optimizer_too=False)
        results = trainer.test(loaders["test"])
        if trainer.metrics_log is not None:
            write_results(run_dir, cfg, state, results, targets, len(data.splits["test"]), trainer.metrics_log)
    dist.barrier()  # the other ranks read metrics.jsonl, complete now, for their return value
    return objective_value(cfg, read_metrics(run_dir))


def _in_turn(dist: Dist, load: Callable[[], Any]) -> Any:
    """`load()` on rank 0 first (it may generate and cache the dataset), then on the other
    ranks, which then find the cache complete: no two processes build the same cache."""
    if not dist.is_main:
        dist.barrier()
        return load()
    try:
        return load()
    finally:
        dist.barrier()


def _metrics_log(cfg: DictConfig, run_dir: Path, first_new_epoch: int) -> MetricsLog:
    """metrics.jsonl and the loggers of the `logger` group, started for this launch."""
    config = OmegaConf.to_container(cfg, resolve=True)
    tags = [str(t) for t in cfg.get("tags") or []]
    hparams = {"task_name": cfg.get("task_name"), "tags": ",".join(tags), **hparam_settings(cfg)}
    run = RunInfo(run_dir, run_name(run_dir), first_new_epoch, tags=tags, hparams=hparams, config=config)
    return MetricsLog(run_dir, first_new_epoch, open_loggers(config["logger"], run))


def _schedule(cfg: DictConfig, origin_epoch: int, steps_per_epoch: int) -> Schedule:
    """Warmup + cosine over the epochs from the schedule's origin to trainer.epochs."""
    return Schedule(cfg.optim.lr, cfg.optim.min_lr, round(cfg.optim.warmup_epochs * steps_per_epoch),
                    max(1, cfg.trainer.epochs - origin_epoch) * steps_per_epoch, cfg.optim.schedule)


SCHEDULE_KEYS = ("optim.lr", "optim.min_lr", "optim.warmup_epochs", "optim.schedule")


def _apply_start(trainer: Trainer, start: StartPoint, cfg: DictConfig) -> None:
    if start.kind in ("resume", "branch"):
        trainer.restore(start.payload)
        if any(key in (start.applied_overrides or {}) for key in SCHEDULE_KEYS):
            # A new rate applies from the first step: the schedule restarts here.
            trainer.state.restart_schedule()
    elif start.kind == "init":
        load_weights(trainer.model, start.payload["model"], f"init_from={cfg.init_from}",
                     f"use the model={cfg.model.name} and model.* settings of the run it came from")
        trainer.state.epoch = start.epoch
        trainer.state.global_step = int(start.payload["global_step"])
        trainer.state.restart_schedule()


def resume_command(run_dir: Path) -> str:
    if is_sweep_trial():  # the study reruns a stopped trial's point (a new trial), not this directory
        return "the sweep's own command again: the study continues, and this trial's point runs again"
    if not Dist.current().enabled:
        return f"python train.py resume={run_dir}"
    return relaunch_command(f"train.py resume={run_dir}")


def _device(name: str, dist: Dist) -> torch.device:
    if dist.enabled:
        return _rank_device(name, dist)
    return resolve_device(name, "trainer.device=")


def _rank_device(name: str, dist: Dist) -> torch.device:
    """Under torchrun: the GPU of this process's local rank (auto, cuda), or the CPU."""
    if name.startswith("cuda:"):
        raise UserError(f"trainer.device={name}: under torchrun each process uses the GPU of its local "
                        "rank; set trainer.device=cuda (or auto), and choose GPUs with CUDA_VISIBLE_DEVICES")
    if resolve_device(name, "trainer.device=").type == "cpu":
        return torch.device("cpu")
    if dist.local_rank >= torch.cuda.device_count():
        raise UserError(f"local rank {dist.local_rank} has no GPU of its own ({torch.cuda.device_count()} "
                        "visible): start at most that many processes per node (--nproc_per_node), "
                        "or set trainer.device=cpu")
    return torch.device("cuda", dist.local_rank)


def _configure_torch(cfg: DictConfig) -> None:
    if cfg.trainer.threads > 0:
        torch.set_num_threads(cfg.trainer.threads)
    if cfg.trainer.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    seed_everything(cfg.seed)

