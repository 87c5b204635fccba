"""On-disk caches of processed data that verify themselves, keyed by a hash of what generated them.

Any change to a generating key gives a new folder (never a stale hit). Each cache folder holds
its entries (torch files) and a `manifest.json` that records every entry's size and SHA-256 of
its serialised bytes, under a checksum of its own. Loading re-hashes the bytes it reads, so a
bit flip, a truncation or a foreign file is noticed before anything uses it, and the caller
rebuilds that entry from its source.

Writes go to a temporary file that is renamed into place, so a reader sees a whole entry or
none; where two processes (sweep trials) may build the same entry, `locked` makes the second
wait for the first and then load its result instead of building again.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from meshgnn.atomic import atomic_write_bytes, atomic_write_text, remove_orphaned_temp_files
from meshgnn.errors import StorageError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "meshgnn-cache"
FORMAT_VERSION = 1
LOCK = ".lock"

Check = Callable[[Any], "str | None"]  # what is wrong with a loaded entry's structure, or None


class CorruptEntry(Exception):
    """Why a cache file cannot be used, as a short phrase ("checksum mismatch")."""


def config_hash(keys: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


def _record(blob: bytes | memoryview) -> dict[str, Any]:
    return {"size": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}


def save_entry(obj: Any, path: Path) -> dict[str, Any]:
    """Write `obj` atomically as a torch file; return its manifest record (size, sha256)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getbuffer())
    return _record(buffer.getbuffer())


def load_entry(path: Path, record: dict[str, Any] | None, check: Check) -> Any:
    """The object in `path` if its bytes match `record` and its structure passes `check`;
    otherwise CorruptEntry saying what is wrong."""
    if record is None:
        raise CorruptEntry(f"not listed in {MANIFEST} (no checksum to verify it against)")
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise CorruptEntry(f"unreadable ({exc.strerror})") from exc
    if len(blob) != record["size"]:
        raise CorruptEntry(f"truncated or changed ({len(blob)} bytes, {record['size']} written)")
    if _record(blob)["sha256"] != record["sha256"]:
        raise CorruptEntry("checksum mismatch (changed after it was written)")
    try:
        obj = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as exc:  # a hash-valid file that torch cannot read was written wrongly
        raise CorruptEntry(f"not a torch file of plain tensors ({_first_line(exc)})") from exc
    problem = check(obj)
    if problem:
        raise CorruptEntry(f"wrong structure: {problem}")
    return obj


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


def _doc_checksum(doc: dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's verified manifest; None where there is none; CorruptEntry where it is damaged."""
    path = folder / MANIFEST
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptEntry(f"unreadable ({_first_line(exc)})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CorruptEntry(f"not a {FORMAT} manifest")
    if doc.get("checksum") != _doc_checksum(doc):
        raise CorruptEntry("checksum mismatch (changed after it was written)")
    if doc.get("format_version") != FORMAT_VERSION or not isinstance(doc.get("files"), dict):
        raise CorruptEntry(f"written by another meshgnn version (format {doc.get('format_version')})")
    return doc


def write_manifest(folder: Path, doc: dict[str, Any]) -> None:
    """Write `doc` (with a `files` map of records) atomically, with format and checksum."""
    doc = {**doc, "format": FORMAT, "format_version": FORMAT_VERSION}
    doc["checksum"] = _doc_checksum(doc)
    atomic_write_text(folder / MANIFEST, json.dumps(doc, indent=1, sort_keys=True))


def make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the dataset cache {folder} ({exc.strerror}); set "
                        "paths.data_dir to a writable folder") from exc


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (flock on `folder/.lock`) for building its entries.

    The kernel drops the lock when its holder dies (even by kill -9), so a crashed build never
    blocks the next one."""
    make_folder(folder)
    try:
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise StorageError(f"cannot open the cache lock {folder / LOCK} ({exc.strerror}); make "
                           f"{folder} writable or set paths.data_dir to a writable folder") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process that is building %s", folder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def cached(cache_dir: Path, name: str, keys: dict[str, Any], build: Callable[[], dict], check: Check,
           source: str) -> tuple[dict, Path]:
    """Load and verify `<cache_dir>/<name>-<hash>/data.pt`, or build, save and return it.

    A damaged entry is one warning line naming the file and what is wrong, then rebuilt from
    `source` (words for the log: "the heat2d generator"); it is never returned.
    """
    folder = Path(cache_dir) / f"{name}-{config_hash(keys)}"
    try:  # fast path, no lock: a verified entry is safe to read however many readers there are
        return _load_data(folder, check), folder
    except (CorruptEntry, FileNotFoundError):
        pass
    with locked(folder):
        try:  # another process may have built it while this one waited
            return _load_data(folder, check), folder
        except FileNotFoundError:
            pass
        except CorruptEntry as exc:
            log.warning("dataset cache %s: %s; rebuilding it from %s", exc.args[1], exc.args[0], source)
        remove_orphaned_temp_files(folder)  # a killed builder's; this process is the only writer now
        data = build()
        record = save_entry(data, folder / "data.pt")
        write_manifest(folder, {"keys": keys, "files": {"data.pt": record}})
        return data, folder


def _load_data(folder: Path, check: Check) -> dict:
    """data.pt verified against the manifest; FileNotFoundError where nothing was built yet,
    CorruptEntry(reason, path) where something is damaged."""
    path = folder / "data.pt"
    try:
        manifest = read_manifest(folder)
    except CorruptEntry as exc:
        raise CorruptEntry(str(exc), folder / MANIFEST) from exc
    if manifest is None and not path.exists():
        raise FileNotFoundError(path)
    try:
        return load_entry(path, None if manifest is None else manifest["files"].get("data.pt"), check)
    except CorruptEntry as exc:
        raise CorruptEntry(str(exc), path) from exc
