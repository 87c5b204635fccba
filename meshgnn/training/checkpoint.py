"""Checkpoint files: one atomic, checksummed, code-free file per save.

A checkpoint is a plain dict of tensors and Python primitives, so `torch.load(path,
weights_only=True)` opens it and no code from a file ever runs. Its `checksum` is a SHA-256
over every value in a canonical order (tensors by dtype, shape and bytes); loading recomputes
it, so a truncated or bit-flipped file is refused instead of silently training on garbage.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path
from typing import Any

import torch

from meshgnn.atomic import atomic_write_bytes
from meshgnn.errors import UserError

FORMAT = "meshgnn-checkpoint"
FORMAT_VERSION = 1


def _digest(value: Any, h: "hashlib._Hash") -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{value.dtype}{tuple(value.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, dict):
        h.update(b"D%d" % len(value))
        for key in sorted(value, key=repr):
            h.update(repr(key).encode())
            _digest(value[key], h)
    elif isinstance(value, (list, tuple)):
        h.update(b"L%d" % len(value))
        for item in value:
            _digest(item, h)
    else:
        h.update(repr(value).encode())


def checksum(payload: dict[str, Any]) -> str:
    h = hashlib.sha256()
    _digest({k: v for k, v in payload.items() if k != "checksum"}, h)
    return h.hexdigest()


def save_checkpoint(payload: dict[str, Any], *paths: Path) -> None:
    """Add format and checksum, serialise once, and write each path atomically (temp file,
    fsync, rename): last.ckpt, best.ckpt and epoch_NNNN.ckpt of one epoch share the work.

    The size is known before any file is started, so a path whose temp file would not fit
    beside the old file is refused (StorageError) without touching it: the last good
    checkpoint stays loadable."""
    payload = {**payload, "format": FORMAT, "format_version": FORMAT_VERSION}
    payload["checksum"] = checksum(payload)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    for path in paths:
        atomic_write_bytes(Path(path), buffer.getbuffer())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and verify a checkpoint; any problem is one UserError line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found; pass an existing .ckpt file or run directory")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: checkpoint is empty (0 bytes); use another checkpoint, e.g. "
                        "checkpoints/last.ckpt or an epoch_NNNN.ckpt")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path}: refused to load: the file holds Python objects other than "
                        "tensors and plain values (it could run code); it is not a meshgnn "
                        "checkpoint") from exc
    except Exception as exc:  # any other failure to parse means a damaged or foreign file
        reason = str(exc).splitlines()[0].split(". ")[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: checkpoint is truncated or corrupt ({reason}); use another "
                        "checkpoint, e.g. an epoch_NNNN.ckpt") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path}: not a meshgnn checkpoint (no '{FORMAT}' format tag)")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"{path}: checkpoint format {payload['format_version']} is newer than this "
                        f"meshgnn understands ({FORMAT_VERSION}); upgrade meshgnn")
    if payload.get("checksum") != checksum(payload):
        raise UserError(f"{path}: checksum mismatch, the file is corrupt (changed after it was "
                        "written); use another checkpoint, e.g. an epoch_NNNN.ckpt")
    return payload
