"""A launch refused after Hydra created its run directory leaves no directory behind.

Some mistakes can only be found inside the task, after Hydra has made the run directory and
written .hydra/ and train.log into it: a data folder without usable files, an objective the
data does not log, a missing GPU. Such a launch trained nothing, yet an empty
outputs/<date>/<time>_.../ stays and shows up in `meshgnn plot outputs/<date>/*` and
`meshgnn diagnose`. The error itself is printed on stderr, so nothing is lost with it.

Only a directory that this launch started is removed, and only while it still holds nothing
but Hydra's snapshot, this launch's copy of it and train.log: a resumed run (it has earlier
launches), a folder of the user's with files in it, or a run that wrote anything else
(run.json, a checkpoint) is never touched. (An empty folder named by hydra.run.dir cannot be
told from one Hydra made: it is removed too.)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

HYDRA_SNAPSHOT = ("config.yaml", "hydra.yaml", "overrides.yaml")
# What Hydra and the start of a first launch write (meshgnn.run_records.snapshot_launch).
LAUNCH_FILES = frozenset({"train.log", *(f".hydra/{name}" for name in HYDRA_SNAPSHOT),
                          *(f".hydra/launches/01/{name}" for name in HYDRA_SNAPSHOT)})


def holds_only_launch_files(run_dir: Path) -> bool:
    """Whether every file under `run_dir` is one a launch's start writes (folders may be empty)."""
    return all(path.relative_to(run_dir).as_posix() in LAUNCH_FILES
               for path in run_dir.rglob("*") if not path.is_dir() or path.is_symlink())


@dataclass(frozen=True)
class NewRunDir:
    """The run directory of a launch, and whether this launch started it."""

    path: Path
    started_here: bool

    @classmethod
    def at_start(cls, run_dir: Path) -> "NewRunDir":
        """Seen when the task starts: new when it holds only what Hydra has just written and no
        earlier launch's snapshot."""
        run_dir = Path(run_dir).resolve()
        new = (run_dir.is_dir() and not (run_dir / ".hydra" / "launches").exists()
               and holds_only_launch_files(run_dir))
        return cls(run_dir, new)

    def remove_if_unused(self, keep: Path) -> bool:
        """Remove the directory if this launch started it and it still holds only launch files,
        then its parents that are left empty (outputs/<date>/, outputs/) up to `keep`, the
        launch directory, which stays. True when removed."""
        if not self.started_here or not self.path.is_dir() or not holds_only_launch_files(self.path):
            return False
        shutil.rmtree(self.path)
        keep = Path(keep).resolve()
        parent = self.path.parent
        while keep in parent.parents and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
        return True
