"""Crash-safe file writes shared by the dataset cache, checkpoints and packages, and the one
place that turns a failed write (disk full, no permission, read-only mount) into a
`StorageError` line naming the path, what went wrong and what to do.

Every writer of a run (checkpoints, metrics, TensorBoard events, caches, run.json, ...) goes
through `writing()`, so the user sees the same kind of line whichever file hit the limit.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, IO, Iterator

from meshgnn.errors import STORAGE_ERRNOS, StorageError

# Room left beyond a checkpoint's own size: filesystem blocks and metadata of the temp file.
SPACE_MARGIN = 64 * 1024


def _existing(path: Path) -> Path:
    """`path` or its nearest existing ancestor (what disk_usage and access can ask about)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def mount_point(path: Path) -> Path:
    path = _existing(path)
    while not os.path.ismount(path):
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(_existing(path)).free


def _mb(n: float, up: bool = False) -> str:
    return f"{(math.ceil(n / 1e5) if up else round(n / 1e5)) / 10:.1f}"


def storage_error(exc: OSError | None, path: Path, needed_bytes: int | None = None,
                  code: int | None = None) -> StorageError:
    """The one line for a write of `path` that failed with `exc` (or with errno `code`):
    the path, the errno's meaning, and the fix (how much to free where, or what to make
    writable)."""
    code = code if code is not None else (exc.errno if exc is not None else errno.EIO)
    path = Path(path)
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        free, mount = free_bytes(path), mount_point(path)
        if needed_bytes is not None:
            short = needed_bytes - free if needed_bytes > free else needed_bytes
            advice = f"free at least {_mb(short, up=True)} MB on {mount} ({_mb(free)} MB free)"
        else:
            advice = f"free space on {mount} ({_mb(free)} MB free)"
        meaning = "no space left on device" if code == errno.ENOSPC else os.strerror(code).lower()
    elif code == errno.EROFS:
        meaning = "read-only file system"
        advice = f"remount {mount_point(path)} read-write, or write the run elsewhere (paths.output_dir)"
    elif code in (errno.EACCES, errno.EPERM):
        meaning = "permission denied"
        advice = f"make {_existing(path.parent)} writable for this user"
    else:
        meaning, advice = os.strerror(code).lower(), "check the storage it is on"
    return StorageError(f"cannot write {path}: {meaning}; {advice}")


def ensure_space(path: Path, needed_bytes: int) -> None:
    """Refuse, before any file is started, a write of `needed_bytes` that cannot fit."""
    if free_bytes(Path(path).parent) < needed_bytes:
        raise storage_error(None, path, needed_bytes, code=errno.ENOSPC)


def _torch_write_failure(exc: RuntimeError, path: Path, needed_bytes: int | None) -> StorageError | None:
    """torch.save reports a failed write as RuntimeError('[enforce fail at inline_container.cc
    ...]') without an errno: tell full from unwritable by asking the storage."""
    if "inline_container" not in str(exc) and "PytorchStreamWriter" not in str(exc):
        return None
    if free_bytes(Path(path).parent) < max(needed_bytes or 0, SPACE_MARGIN):
        return storage_error(None, path, needed_bytes, code=errno.ENOSPC)
    if not os.access(_existing(Path(path).parent), os.W_OK):
        return storage_error(None, path, needed_bytes, code=errno.EACCES)
    return None


@contextmanager
def writing(path: Path, needed_bytes: int | None = None) -> Iterator[None]:
    """Around any write of `path`: a failure for lack of space or permission becomes the
    `StorageError` line; with `needed_bytes`, a write that cannot fit is refused up front."""
    try:
        if needed_bytes is not None:
            ensure_space(path, needed_bytes)
        yield
    except OSError as exc:
        if exc.errno not in STORAGE_ERRNOS:
            raise
        raise storage_error(exc, path, needed_bytes) from exc
    except RuntimeError as exc:
        mapped = _torch_write_failure(exc, path, needed_bytes)
        if mapped is None:
            raise
        raise mapped from exc


def atomic_write(path: Path, write: Callable[[IO[bytes]], None], needed_bytes: int | None = None) -> None:
    """Write to a temp file beside `path`, fsync, then rename: readers see old or new, never half.

    With `needed_bytes` (the size, when known) no temp file is started unless it fits; a
    failed write leaves no temp file and the old `path` untouched."""
    path = Path(path)
    with writing(path, needed_bytes):
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


def atomic_write_bytes(path: Path, data: bytes | memoryview) -> None:
    """`data` whose size is known: refused up front when it cannot fit."""
    atomic_write(path, lambda handle: handle.write(data), needed_bytes=len(data) + SPACE_MARGIN)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def copy_file(source: Path, target: Path) -> None:
    """shutil.copy2 with a failed write reported like every other."""
    with writing(target):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def remove_orphaned_temp_files(folder: Path) -> list[Path]:
    """Delete temp files that a killed writer (kill -9 mid-save) left behind in `folder`.

    Only safe where the caller is the folder's single writer, e.g. a run's checkpoints/.
    """
    orphans = sorted(Path(folder).glob(".*.tmp"))
    for orphan in orphans:
        orphan.unlink(missing_ok=True)
    return orphans
