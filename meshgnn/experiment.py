"""run(cfg): the one place that wires data, model, loss and trainer together.

Everything a user can get wrong is checked before any expensive work, and every such mistake
ends in one line naming the key, file or path (UserError), never a traceback.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import meshgnn
from meshgnn.atomic import atomic_write_text, copy_file
from meshgnn.boundary import BUG_LINE, EXIT_BUG, user_caused
from meshgnn.config import stage_config as config_stage
from meshgnn.config import validate
from meshgnn.data.dataset import load_datasets, make_loader, move_to_device
from meshgnn.data.features import MeshDatasets, ModelInputs
from meshgnn.data.normalizer import Normalizer
from meshgnn.data.sources import get_source
from meshgnn.devices import resolve_device
from meshgnn.distributed import Dist
from meshgnn.errors import Interrupted, StorageError, UserError
from meshgnn.models import build_model
from meshgnn.models.build import compiled_forward, data_parallel_forward
from meshgnn.resume import StartPoint, merge_resumed_config, run_checkpoint, start_point
from meshgnn.sweeps.pruning import PruningReporter
from meshgnn.training.checkpoint import load_checkpoint
from meshgnn.training.losses import TERMS, CompositeLoss
from meshgnn.diagnostics.runs import diagnose_run, write_diagnosis
from meshgnn.loggers.base import RunInfo, run_name
from meshgnn.loggers.fanout import check_logger_packages, open_loggers
from meshgnn.training.metrics_log import MetricsLog, read_metrics
from meshgnn.training.rng import seed_everything
from meshgnn.training.schedule import Schedule
from meshgnn.training.trainer import Trainer, TrainerSettings, TrainingDiverged, TrainState
from meshgnn.weights import load_weights

log = logging.getLogger("meshgnn")


def main_task(cfg: DictConfig) -> float:
    """Hydra task: run, inside the error boundary (meshgnn.boundary): a user mistake, also one
    a library reports (Optuna, SQLAlchemy, meshio, an OSError on a path), is one line on stderr
    (exit 2, or 4 for a failed write); a stop request exits 3; a bug keeps its traceback and
    says it is one. In a sweep the trial fails with that line and the sweep goes on.

    Under torchrun a user mistake is reported by every rank that meets it (ranks other than 0
    name themselves), a stop request by rank 0 alone."""
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    in_sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    dist = Dist.current()
    try:
        return run(cfg, overrides)
    except Interrupted as exc:
        if dist.is_main:
            print(str(exc), file=sys.stderr, flush=True)
        dist.barrier()  # every rank stopped together; none exits before rank 0 has said so
        if in_sweep:  # stop the whole sweep; relaunching it continues the study
            raise KeyboardInterrupt(str(exc)) from None
        sys.exit(exc.exit_code)
    except Exception as exc:
        if in_sweep and _is_pruned(exc):  # the pruner's decision, not an error: the trial is PRUNED
            raise
        known = user_caused(exc)
        if known is None:
            log.exception("a bug in meshgnn stopped this run")  # the traceback, in train.log too
            if in_sweep:  # the sweeper records the trial as failed and goes on
                raise
            print(BUG_LINE, file=sys.stderr, flush=True)
            sys.exit(EXIT_BUG)
        message, code = known
        if in_sweep:  # the sweeper records the trial as failed, with this line, and goes on
            raise exc if isinstance(exc, UserError) else UserError(message) from exc
        if dist.is_main:  # the other ranks have no log file
            log.error("%s", message)
        print(f"error{'' if dist.is_main else f' (rank {dist.rank})'}: {message}", file=sys.stderr, flush=True)
        sys.exit(code)


def _is_pruned(exc: Exception) -> bool:
    import optuna  # only in a sweep, where the sweeper has loaded it already

    return isinstance(exc, optuna.TrialPruned)


def run(cfg: DictConfig, overrides: list[str] | tuple[str, ...] = ()) -> float:
    """One launch: fresh, resumed, branched or warm-started; staged when `stages` is set."""
    validate(cfg)
    run_dir = Path(cfg.paths.output_dir)
    dist = Dist.current()
    if dist.is_main:
        _snapshot_launch(run_dir)
    dist.barrier()
    cfg = resumed_staged_config(cfg, list(overrides), run_dir)
    if cfg.stages:
        return run_stages(cfg, list(overrides), run_dir)
    cfg, start = start_point(cfg, list(overrides), run_dir)
    validate(cfg)
    return train(cfg, start, run_dir)


def train(cfg: DictConfig, start: StartPoint, run_dir: Path) -> float:
    """Train one model in `run_dir` from `start`, test it, and return the objective.

    A failed write (StorageError) gets the way to continue once the cause is removed; a
    diverged run is recorded in run.json and diagnosed (diagnosis.json) before it stops."""
    try:
        return _train(cfg, start, run_dir)
    except StorageError as exc:
        raise StorageError(f"{exc}; then {_continue_hint(run_dir)}") from exc
    except TrainingDiverged as exc:
        if Dist.current().is_main:
            _record_divergence(run_dir, exc.record)
        raise


def _continue_hint(run_dir: Path) -> str:
    if run_checkpoint(run_dir).is_file():
        return f"resume with: {_resume_command(run_dir)}"
    return "run the same command again (no epoch was saved yet)"


def _record_divergence(run_dir: Path, record: dict[str, Any]) -> None:
    """The stop, in this launch's run.json entry, and the diagnosis that names it: `meshgnn
    diagnose` reads it back, so a diverged run is never reported as ok."""
    path = run_dir / "run.json"
    if not path.is_file():  # stopped before run.json: nothing of the launch is on record
        return
    doc = json.loads(path.read_text())
    doc["launches"][-1]["stopped"] = record
    atomic_write_text(path, json.dumps(doc, indent=2))
    write_diagnosis(run_dir, diagnose_run(run_dir))


def _train(cfg: DictConfig, start: StartPoint, run_dir: Path) -> float:
    names = target_names(cfg.data)
    _check_target_weights(cfg, names)
    _check_objective(cfg, names)
    check_logger_packages(cfg.logger)
    dist = Dist.current()
    device = _device(cfg.trainer.device, dist)
    _configure_torch(cfg)

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
                               monitor=cfg.objective, monitor_mode=cfg.objective_mode)
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    lineage = _lineage(start)
    hydra_choices = dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
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
        _write_run_json(run_dir, cfg, data, start, lineage)
    log.info("model %s: %d parameters, device %s, %d steps/epoch, %s", cfg.model.name,
             sum(p.numel() for p in model.parameters()), device, len(loaders["train"]),
             _describe_start(start))
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
                              f"saved. Resume with:\n  {_resume_command(run_dir)}")
        best = run_dir / "checkpoints" / "best.ckpt"
        if best.is_file():  # a branch that never beat its parent's best keeps its last weights
            trainer.restore(load_checkpoint(best), optimizer_too=False)
        results = trainer.test(loaders["test"])
        if trainer.metrics_log is not None:
            _write_results(run_dir, cfg, state, results, targets, len(data.splits["test"]), trainer.metrics_log)
    dist.barrier()  # the other ranks read metrics.jsonl, complete now, for their return value
    return objective_value(cfg, read_metrics(run_dir))


def _write_results(run_dir: Path, cfg: DictConfig, state: TrainState, results: dict[str, dict[str, float]],
                   targets: list[tuple[str, int]], test_graphs: int, metrics_log: MetricsLog) -> None:
    """results.json, the final results to the loggers and diagnosis.json of a finished launch."""
    results_doc = {"best_epoch": state.best_epoch, "epochs_run": state.epoch,
                   f"best/{cfg.objective}": state.best_value, **results}
    atomic_write_text(run_dir / "results.json", json.dumps(results_doc, indent=2))
    log.info("test results (physical units, %d graphs, best epoch %d):\n%s",
             test_graphs, state.best_epoch, format_results_table(results, targets))
    best = {k: v for k, v in results_doc.items() if k.startswith("best/")}
    metrics_log.write_results({**best, **results["model"]}, state.epoch)
    if read_metrics(run_dir):
        diagnosis = diagnose_run(run_dir)
        write_diagnosis(run_dir, diagnosis)
        log.info("diagnosis (also in %s):\n%s", run_dir / "diagnosis.json", "\n".join(diagnosis.lines()))


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
    run = RunInfo(run_dir, run_name(run_dir), first_new_epoch, tags=[str(t) for t in cfg.get("tags") or []],
                  hparams=hparam_settings(cfg), config=config)
    return MetricsLog(run_dir, first_new_epoch, open_loggers(config["logger"], run))


def hparam_settings(cfg: DictConfig) -> dict[str, Any]:
    """The run's settings for TensorBoard's HParams tab: every scalar of the data, model,
    loss, optim and trainer groups (lists as text), plus the seed."""
    settings: dict[str, Any] = {"seed": cfg.seed}

    def flatten(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                flatten(f"{prefix}.{key}", value)
        else:
            settings[prefix] = node if isinstance(node, (bool, int, float, str)) or node is None else str(node)

    for group in ("data", "model", "loss", "optim", "trainer"):
        flatten(group, OmegaConf.to_container(cfg[group], resolve=True))
    return settings


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


def _lineage(start: StartPoint) -> dict[str, Any]:
    if start.kind == "fresh":
        return {"kind": "fresh"}
    ckpt = start.checkpoint.resolve()
    parent = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    lineage = {"kind": start.kind, "checkpoint": str(ckpt), "parent_run": str(parent),
               "start_epoch": start.epoch}
    for key, (old, new) in (start.applied_overrides or {}).items():
        lineage.setdefault("changed", {})[key] = {"from": old, "to": new}
    return lineage


def _describe_start(start: StartPoint) -> str:
    if start.kind == "fresh":
        return "fresh start"
    return f"{start.kind} from {start.checkpoint} (epoch {start.epoch})"


def _resume_command(run_dir: Path) -> str:
    dist = Dist.current()
    if not dist.enabled:
        return f"python train.py resume={run_dir}"
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", dist.world_size))
    launcher = (f"torchrun --nproc_per_node={per_node}" if per_node == dist.world_size
                else "torchrun <the same --nnodes/--rdzv options>")
    return f"{launcher} train.py resume={run_dir}"


def metric_tags(targets: list[str]) -> set[str]:
    """Every tag a run logs each epoch (DESIGN.md "Names that users see"): what `objective`, and
    so best.ckpt and early stopping, may follow."""
    tags = {"consistency/grad", "lr", "epoch_time_s"}
    for split in ("train", "val"):
        tags |= {f"{split}/loss/{term}" for term in (*TERMS, "total")}
        tags |= {f"{split}/{name}/l1" for name in targets}
    tags |= {f"val/{name}/{m}" for name in targets for m in ("rel_l2", "rel_l2_median")}
    return tags


def _check_objective(cfg: DictConfig, targets: list[str]) -> None:
    """Refuse an objective that is no epoch metric: a test/ tag is measured once, after
    training, with the best.ckpt that the objective itself is meant to choose."""
    if cfg.objective.startswith("test/"):
        name = cfg.objective.split("/")[1]
        example = f"val/{name}/rel_l2" if name in targets else "val/loss/total"
        raise UserError(f"objective={cfg.objective} is measured only after training, so best.ckpt and early "
                        "stopping cannot follow it (and choosing epochs by the test set would leak it); "
                        f"choose a validation metric, e.g. objective={example}")
    if cfg.objective not in metric_tags(targets):
        raise UserError(f"objective={cfg.objective!r} is not a metric of data={cfg.data.name}; choose one "
                        f"of: {', '.join(sorted(metric_tags(targets)))}")


def objective_value(cfg: DictConfig, history: list[dict[str, float]]) -> float:
    """Best value of `cfg.objective` over the epochs (the epoch best.ckpt holds); NaN when no
    epoch was trained (`trainer.epochs=0` only tests)."""
    values = [h[cfg.objective] for h in history]
    if not values:
        return math.nan
    return float(min(values) if cfg.objective_mode == "min" else max(values))


def format_results_table(results: dict[str, dict[str, float]], targets: list[tuple[str, int]]) -> str:
    who = [w for w in ("model", "baseline_mean", "baseline_analytic") if w in results]
    header = f"{'target':<14}{'rel_l2':>10}{'mae':>12}{'max_abs':>12}" + "".join(
        f"{w.replace('baseline_', 'rel_l2 ') :>18}" for w in who[1:])
    lines = [header, "-" * len(header)]
    for name, _ in targets:
        model = results["model"]
        row = (f"{name:<14}{model[f'test/{name}/rel_l2']:>10.4f}{model[f'test/{name}/mae']:>12.4g}"
               f"{model[f'test/{name}/max_abs']:>12.4g}")
        row += "".join(f"{results[w][f'test/{name}/rel_l2']:>18.4f}" for w in who[1:])
        lines.append(row)
    return "\n".join(lines)


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


def target_names(data_cfg: DictConfig) -> list[str]:
    """The predicted fields, known before any data is read (for config checks)."""
    if data_cfg.name == "mesh_folder":
        return list(data_cfg.targets)
    return [f.name for f in get_source(data_cfg.name).spec.targets]


def _check_target_weights(cfg: DictConfig, names: list[str]) -> None:
    unknown = sorted(set(cfg.loss.target_weights) - set(names))
    if unknown:
        raise UserError(f"loss.target_weights names unknown target(s) {', '.join(unknown)}; the "
                        f"targets of data={cfg.data.name} are {', '.join(names)}")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _write_run_json(run_dir: Path, cfg: DictConfig, data: MeshDatasets, start: StartPoint,
                    lineage: dict[str, Any]) -> None:
    """Provenance, with one entry per launch so every resume and its changes stay on record."""
    import torch_geometric
    path = run_dir / "run.json"
    doc: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    launch = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": [sys.executable, *sys.argv],
        "lineage": lineage,
        "optim.lr": cfg.optim.lr,
        "git_commit": _git_commit(),
        "host": platform.node(),
    }
    doc.setdefault("launches", []).append(launch)
    if start.kind != "resume":  # the run's origin: set by its first launch
        doc["resumed_from"] = str(start.checkpoint) if start.kind == "branch" else None
        doc["init_from"] = str(start.checkpoint) if start.kind == "init" else None
        doc["parent_run"] = lineage.get("parent_run")
    doc["versions"] = {"meshgnn": meshgnn.__version__, "torch": torch.__version__,
                       "torch_geometric": torch_geometric.__version__,
                       "python": platform.python_version()}
    doc["dataset"] = {"fingerprint": data.fingerprint, "cache": str(data.cache_dir)}
    # what this launch trains with: after resume= the checkpoint's config with this launch's
    # changes, which .hydra/config.yaml (the launch's own composition) is not
    doc["config"] = OmegaConf.to_container(cfg, resolve=True)
    atomic_write_text(path, json.dumps(doc, indent=2))


def _snapshot_launch(run_dir: Path) -> None:
    """Keep this launch's Hydra snapshot: Hydra rewrites .hydra/ when a run dir is reused."""
    hydra_dir = run_dir / ".hydra"
    if not hydra_dir.is_dir():
        return
    launches = hydra_dir / "launches"
    target = launches / f"{len(list(launches.glob('*'))) + 1 if launches.is_dir() else 1:02d}"
    for snapshot in hydra_dir.glob("*.yaml"):
        copy_file(snapshot, target / snapshot.name)


# ------------------------------------------------------------------ staged training
def resumed_staged_config(cfg: DictConfig, overrides: list[str], run_dir: Path) -> DictConfig:
    """`resume=<staged run dir>`: the staged run's own config, overrides on top."""
    first = run_dir / ".hydra" / "launches" / "01" / "config.yaml"
    if not cfg.resume or run_checkpoint(run_dir).is_file() or not first.is_file():
        return cfg
    saved = OmegaConf.load(first)
    if not saved.get("stages"):
        return cfg
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
        if (stage_dir / "results.json").is_file():
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
            raise type(exc)(str(exc).replace(_resume_command(stage_dir), _resume_command(run_dir))) from None
    return objective
