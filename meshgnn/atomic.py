"""Crash-safe file writes shared by the dataset cache, checkpoints and packages."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO

import torch


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write to a temp file beside `path`, fsync, then rename: readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda handle: torch.save(obj, handle))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode()))


def remove_orphaned_temp_files(folder: Path) -> list[Path]:
    """Delete temp files that a killed writer (kill -9 mid-save) left behind in `folder`.

    Only safe where the caller is the folder's single writer, e.g. a run's checkpoints/.
    """
    orphans = sorted(Path(folder).glob(".*.tmp"))
    for orphan in orphans:
        orphan.unlink(missing_ok=True)
    return orphans
