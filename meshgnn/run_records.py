"""What a launch leaves on record in its run directory: run.json (provenance, one entry per
launch), results.json and the results table, the settings shown as hyperparameters, a
divergence's stop record, and the snapshot of each launch's Hydra config.
"""

from __future__ import annotations

import json
import logging
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

import meshgnn
from meshgnn.atomic import atomic_write_text, copy_file
from meshgnn.data.features import MeshDatasets
from meshgnn.diagnostics.runs import diagnose_run, write_diagnosis
from meshgnn.resume import StartPoint
from meshgnn.training.metrics_log import MetricsLog, read_metrics
from meshgnn.training.trainer import TrainState

log = logging.getLogger("meshgnn")


def record_divergence(run_dir: Path, record: dict[str, Any]) -> None:
    """The stop, in this launch's run.json entry, and the diagnosis that names it: `meshgnn
    diagnose` reads it back, so a diverged run is never reported as ok."""
    path = run_dir / "run.json"
    if not path.is_file():  # stopped before run.json: nothing of the launch is on record
        return
    doc = json.loads(path.read_text())
    doc["launches"][-1]["stopped"] = record
    atomic_write_text(path, json.dumps(doc, indent=2))
    write_diagnosis(run_dir, diagnose_run(run_dir))


def write_results(run_dir: Path, cfg: DictConfig, state: TrainState, results: dict[str, dict[str, float]],
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


def lineage_of(start: StartPoint) -> dict[str, Any]:
    if start.kind == "fresh":
        return {"kind": "fresh"}
    ckpt = start.checkpoint.resolve()
    parent = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    lineage = {"kind": start.kind, "checkpoint": str(ckpt), "parent_run": str(parent),
               "start_epoch": start.epoch}
    for key, (old, new) in (start.applied_overrides or {}).items():
        lineage.setdefault("changed", {})[key] = {"from": old, "to": new}
    return lineage


def describe_start(start: StartPoint) -> str:
    if start.kind == "fresh":
        return "fresh start"
    return f"{start.kind} from {start.checkpoint} (epoch {start.epoch})"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_run_json(run_dir: Path, cfg: DictConfig, data: MeshDatasets, start: StartPoint,
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


def snapshot_launch(run_dir: Path) -> None:
    """Keep this launch's Hydra snapshot: Hydra rewrites .hydra/ when a run dir is reused."""
    hydra_dir = run_dir / ".hydra"
    if not hydra_dir.is_dir():
        return
    launches = hydra_dir / "launches"
    target = launches / f"{len(list(launches.glob('*'))) + 1 if launches.is_dir() else 1:02d}"
    for snapshot in hydra_dir.glob("*.yaml"):
        copy_file(snapshot, target / snapshot.name)

