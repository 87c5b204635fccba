"""What every logger backend gets: the launch (`RunInfo`), its scalars, images and final
results, and how the launch ended (`Status`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from meshgnn.atomic import atomic_write_text
from meshgnn.errors import Interrupted

# Folders whose children are runs (Hydra's run and sweep roots): a run's name is its path below one.
RUN_ROOTS = ("outputs", "multirun")


class Status(Enum):
    """How a launch ended: a word for people, and each backend's own terms (TensorBoard's
    session status, MLflow's run status, a W&B exit code). TensorBoard's Status has no
    "aborted": a stopped run (resumable, neither finished nor failed) is STATUS_UNKNOWN there,
    and its `status` hparam says "stopped"."""

    SUCCESS = ("finished", "STATUS_SUCCESS", "FINISHED", 0)
    FAILED = ("failed", "STATUS_FAILURE", "FAILED", 1)
    KILLED = ("stopped", "STATUS_UNKNOWN", "KILLED", 3)  # 3: train.py's exit code for a stop request

    @property
    def word(self) -> str:
        return self.value[0]

    @property
    def tensorboard(self) -> str:
        return self.value[1]

    @property
    def mlflow(self) -> str:
        return self.value[2]

    @property
    def exit_code(self) -> int:
        return self.value[3]


def status_of(exc: BaseException | None) -> Status:
    """The status of a launch that ended with `exc` (None: it finished). A stop request
    (signal, max_time: Interrupted) or Ctrl-C is KILLED, anything else FAILED."""
    if exc is None:
        return Status.SUCCESS
    return Status.KILLED if isinstance(exc, (Interrupted, KeyboardInterrupt)) else Status.FAILED


@dataclass
class RunInfo:
    """One launch as the backends see it.

    `name`: readable and unique among runs (see `run_name`); `hparams`: flat settings
    (values bool, int, float, str or None); `first_new_epoch` > 1 on a resume, where earlier
    points of a killed launch are dropped; `config`: the whole resolved config (W&B config,
    MLflow artifact)."""

    run_dir: Path
    name: str
    first_new_epoch: int = 1
    tags: list[str] = field(default_factory=list)
    hparams: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def resumed(self) -> bool:
        return self.first_new_epoch > 1

    @property
    def sweep(self) -> str | None:
        """The sweep a trial belongs to, multirun/<date>/<time...>/ as "<date>/<time...>" (W&B
        group, MLflow tag `sweep`); None for a single run."""
        below = _below_run_root(self.run_dir)
        if _run_root(self.run_dir) != "multirun" or len(below) < 3:
            return None
        return "/".join(below[:2])


def run_name(run_dir: Path) -> str:
    """A run's name, most specific part first: its path below outputs/ or multirun/ read
    leaf to root, e.g. "3_optim.lr=0.001 · 13-05-22_train · 2026-12-02" for a sweep trial.
    TensorBoard's HParams table cuts trial names after some 15 characters, so what tells
    runs apart (time, trial number, overrides) must come first."""
    return " · ".join(reversed(_below_run_root(run_dir) or Path(run_dir).resolve().parts[-1:]))


def _run_root(run_dir: Path) -> str | None:
    """outputs or multirun: the last folder of that name above `run_dir`, if any."""
    roots = [part for part in Path(run_dir).resolve().parts[:-1] if part in RUN_ROOTS]
    return roots[-1] if roots else None


def _below_run_root(run_dir: Path) -> tuple[str, ...]:
    """The parts of `run_dir` below its run root (empty when it has none)."""
    parts = Path(run_dir).resolve().parts
    roots = [i for i, part in enumerate(parts[:-1]) if part in RUN_ROOTS]
    return parts[roots[-1] + 1:] if roots else ()


class Logger(Protocol):
    """One backend. Every method may raise (a failed write ends the run in one line);
    `finish` is called once, also after a failure, with the launch's status."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def log_image(self, tag: str, picture: np.ndarray, step: int) -> None: ...

    def log_final(self, metrics: Mapping[str, float], step: int) -> None: ...

    def finish(self, status: Status) -> None: ...


def remembered_id(run_dir: Path, backend: str, new_id: Callable[[], str]) -> str:
    """The backend's run id for this run directory, made by `new_id` on the first launch and
    kept in <run dir>/logger_runs.json, so a resumed run continues the same MLflow/W&B run."""
    path = Path(run_dir) / "logger_runs.json"
    ids: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
    if backend not in ids:
        ids[backend] = new_id()
        atomic_write_text(path, json.dumps(ids, indent=2))
    return ids[backend]
