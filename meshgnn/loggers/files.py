"""Appending whole lines to a run's own record files (metrics.jsonl, metrics.csv)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from meshgnn.atomic import SPACE_MARGIN, writing


def append_line(path: Path, line: bytes) -> None:
    """Append one whole line or nothing: a write cut short (disk full) is cut back off, so
    the file never ends in half a record that would break reading it on resume. A full disk
    or lost permission is one StorageError line naming the file (`writing`)."""
    with writing(path, needed_bytes=len(line) + SPACE_MARGIN):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                if os.write(fd, line) < len(line):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            except OSError:
                os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)
