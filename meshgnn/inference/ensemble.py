"""Ensembles: several trained models averaged in physical units, evaluated on the test split.

Members may differ in architecture and in how they derive features (each gets its own input
graph), but must predict the same targets from the same kind of file (`check_compatible`),
and, to be compared on a test split, must have been trained on the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from meshgnn.errors import UserError
from meshgnn.inference.evaluate import evaluate_split
from meshgnn.inference.package import Package, load_model
from meshgnn.inference.predict import check_compatible

ENSEMBLE = "ensemble"


def sweep_members(sweep_dir: Path, top_k: int) -> list[Path]:
    """Run directories of the `top_k` best completed trials of a sweep."""
    from meshgnn.sweeps.study import load_sweep

    if top_k < 1:
        raise UserError(f"--top-k must be >= 1, got {top_k}")
    rows = [r for r in load_sweep(Path(sweep_dir)).rows if r.state == "COMPLETE" and r.run_dir is not None]
    if not rows:
        raise UserError(f"{sweep_dir}: no completed trial with a run directory to take members from")
    return [r.run_dir for r in rows[:top_k]]


def load_members(paths: list[Path], prune: float = 0.0) -> list[Package]:
    if not paths:
        raise UserError("no ensemble members: pass packages, run directories or checkpoints, or --sweep")
    members = [load_model(p, prune) for p in paths]
    check_compatible(members)
    return members


@dataclass
class TestTable:
    """Per-target test errors (physical units) of every member and of the ensemble."""

    names: list[str]
    metrics: dict[str, dict[str, float]]  # who -> {"test/<t>/rel_l2": ...}
    num_graphs: int

    def lines(self, targets: list[str]) -> list[str]:
        width = max(len(n) for n in self.names) + 2
        header = f"{'model':<{width}}" + "".join(f"{t + ' rel_l2':>22}{t + ' mae':>18}" for t in targets)
        rows = [header, "-" * len(header)]
        for who in self.names:
            m = self.metrics[who]
            rows.append(f"{who:<{width}}" + "".join(
                f"{m[f'test/{t}/rel_l2']:>22.4f}{m[f'test/{t}/mae']:>18.4g}" for t in targets))
        return rows


def evaluate_on_test(members: list[Package], data_dir: Path, device: torch.device, precision: str = "fp32",
                     batch_size: int = 8) -> TestTable:
    """Every member's and the ensemble's errors on the test split of the members' data
    (`evaluate.evaluate_split`)."""
    result = evaluate_split(members, members[0].data, data_dir, device, precision, batch_size)
    metrics = dict(zip((m.name for m in members), result.members)) | {ENSEMBLE: result.ensemble}
    return TestTable([*(m.name for m in members), ENSEMBLE], metrics, result.num_meshes)
