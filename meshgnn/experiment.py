"""run(cfg): the one place that wires data, model, loss and trainer together.

Everything a user can get wrong is checked before any expensive work, and every such mistake
ends in one line naming the key, file or path (UserError), never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

import meshgnn
from meshgnn.atomic import atomic_write_text
from meshgnn.config import validate
from meshgnn.data.dataset import MeshDatasets, load_datasets, make_loader
from meshgnn.errors import UserError
from meshgnn.models import build_model
from meshgnn.training.losses import TERMS, CompositeLoss
from meshgnn.training.schedule import Schedule
from meshgnn.training.trainer import Trainer, TrainerSettings

log = logging.getLogger("meshgnn")


def main_task(cfg: DictConfig) -> float:
    """Hydra task: run, and turn a user mistake into one line on stderr and exit status 2."""
    try:
        return run(cfg)
    except UserError as exc:
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def run(cfg: DictConfig) -> float:
    validate(cfg)
    run_dir = Path(cfg.paths.output_dir)
    device = _device(cfg.trainer.device)
    _configure_torch(cfg)

    data = load_datasets(cfg.data, cfg.paths.data_dir)
    targets = [(f.name, f.dim) for f in data.features.targets]
    _check_target_weights(cfg, [name for name, _ in targets])

    model = build_model(cfg.model, data.node_dim, data.edge_dim, targets).to(device)
    loss_fn = CompositeLoss(targets, {t: cfg.loss[f"{t}_weight"] for t in TERMS},
                            dict(cfg.loss.target_weights), data.normalizer.mean["y"],
                            data.normalizer.std["y"], cfg.loss.eps).to(device)
    loaders = {name: make_loader(ds, cfg.data.batch_size, name == "train", cfg.seed,
                                 cfg.data.num_workers) for name, ds in data.splits.items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                  weight_decay=cfg.optim.weight_decay, foreach=True)
    steps_per_epoch = len(loaders["train"])
    schedule = Schedule(cfg.optim.lr, cfg.optim.min_lr, round(cfg.optim.warmup_epochs * steps_per_epoch),
                        cfg.trainer.epochs * steps_per_epoch, cfg.optim.schedule)
    settings = TrainerSettings(cfg.trainer.epochs, cfg.trainer.grad_clip, cfg.trainer.save_every,
                               cfg.trainer.early_stop_patience, cfg.trainer.log_every_steps)
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    trainer = Trainer(model, loss_fn, optimizer, schedule, loaders, settings, run_dir, device,
                      lambda: {"normalizer": data.normalizer.state_dict(), "config_yaml": config_yaml,
                               "dataset_fingerprint": data.fingerprint})

    data.normalizer.save(run_dir / "normalization.json")
    _write_run_json(run_dir, cfg, data)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model %s: %d parameters, device %s, %d steps/epoch", cfg.model.name, n_params,
             device, steps_per_epoch)

    state = trainer.fit()
    best = run_dir / "checkpoints" / "best.ckpt"
    trainer.restore(torch.load(best, weights_only=True), optimizer_too=False)
    results = trainer.test(loaders["test"])
    results_doc = {"best_epoch": state.best_epoch, "epochs_run": state.epoch,
                   "best/" + "val/loss/total": state.best_value, **results}
    atomic_write_text(run_dir / "results.json", json.dumps(results_doc, indent=2))
    table = format_results_table(results, targets)
    log.info("test results (physical units, %d graphs, best epoch %d):\n%s",
             len(data.splits["test"]), state.best_epoch, table)
    return objective_value(cfg, state.history, results.get("model", {}))


def objective_value(cfg: DictConfig, history: list[dict[str, float]], test: dict[str, float]) -> float:
    """Best value of `cfg.objective` over the epochs (or the final test value for test/* tags)."""
    if cfg.objective in test:
        return float(test[cfg.objective])
    values = [h[cfg.objective] for h in history if cfg.objective in h]
    if not values:
        known = sorted(set(history[-1]) | set(test)) if history else sorted(test)
        raise UserError(f"objective={cfg.objective!r} is not a metric of this run; choose one of: "
                        f"{', '.join(known)}")
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


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"trainer.device={name} but no CUDA GPU is visible; use trainer.device=cpu "
                        "or trainer.device=auto")
    return torch.device(name)


def _configure_torch(cfg: DictConfig) -> None:
    if cfg.trainer.threads > 0:
        torch.set_num_threads(cfg.trainer.threads)
    if cfg.trainer.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    from meshgnn.training.rng import seed_everything
    seed_everything(cfg.seed)


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


def _write_run_json(run_dir: Path, cfg: DictConfig, data: MeshDatasets) -> None:
    import torch_geometric
    doc: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": [sys.executable, *sys.argv],
        "resumed_from": cfg.resume,
        "init_from": cfg.init_from,
        "git_commit": _git_commit(),
        "versions": {"meshgnn": meshgnn.__version__, "torch": torch.__version__,
                     "torch_geometric": torch_geometric.__version__, "python": platform.python_version()},
        "host": platform.node(),
        "dataset": {"fingerprint": data.fingerprint, "cache": str(data.cache_dir)},
    }
    atomic_write_text(run_dir / "run.json", json.dumps(doc, indent=2))
