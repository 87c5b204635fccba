"""On-disk cache of processed datasets, keyed by a hash of what generated them.

Any change to a generating key gives a new folder (never a stale hit); writes go to a temporary
file that is renamed into place, so a killed run or two sweep trials racing each other can
never leave a half-written cache behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable

import torch

from meshgnn.atomic import atomic_torch_save
from meshgnn.errors import UserError

log = logging.getLogger(__name__)


def config_hash(keys: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


def cached(cache_dir: Path, name: str, keys: dict[str, Any], build: Callable[[], dict]) -> tuple[dict, Path]:
    """Load `<cache_dir>/<name>-<hash>/data.pt`, or build, save and return it."""
    folder = Path(cache_dir) / f"{name}-{config_hash(keys)}"
    path = folder / "data.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=True), folder
        except Exception as exc:  # a corrupt cache is rebuilt, never trusted
            log.warning("%s is unreadable (%s); rebuilding it", path, exc)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the dataset cache {folder} ({exc.strerror}); set "
                        "paths.data_dir to a writable folder") from exc
    data = build()
    atomic_torch_save(data, path)
    (folder / "keys.json").write_text(json.dumps(keys, indent=1, sort_keys=True))
    return data, folder
