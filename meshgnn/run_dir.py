"""Which directory a launch writes to: Hydra's new run directory, or the run being resumed.

Used by the `meshgnn_run_dir` resolver in hydra.run.dir, so it must stay import-light
(Hydra resolves it before the training code is imported).
"""

from __future__ import annotations

from pathlib import Path


def in_place_run_dir(resume: str | None) -> Path | None:
    """The run directory a `resume=` value continues in place, or None (fresh or branch)."""
    if not resume or resume == "auto":
        return None
    p = Path(resume).expanduser()
    if p.is_dir():
        return p
    if p.name == "last.ckpt" and p.parent.name == "checkpoints":
        return p.parent.parent
    return None


def run_dir_resolver(resume: str | None, default: str) -> str:
    """Hydra resolver for hydra.run.dir: resuming in place reuses the run's own directory."""
    in_place = in_place_run_dir(resume)
    return str(in_place) if in_place is not None else default
