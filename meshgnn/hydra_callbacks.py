"""Hydra callbacks that catch user mistakes Hydra itself would report with a traceback."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def _first_existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class OutputDirCheck(Callback):
    """Fail in one line if the run (or sweep) directory cannot be created, before any work."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")

    @staticmethod
    def _check(directory: str, key: str) -> None:
        path = Path(directory).absolute()
        parent = _first_existing_parent(path)
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            print(f"error: output directory {path} cannot be created ({parent} is not a writable "
                  f"directory); choose another with {key}=<path>", file=sys.stderr)
            sys.exit(2)
