"""Which files of a mesh folder are read: meshio-readable names matching the pattern.

A matched name that cannot be followed to a readable regular file (a dangling symlink, a
folder or device named like a mesh file, a file without read permission) is never skipped
silently: `scan_folder` returns it beside the files, `check_folder` reports it per file and
`list_mesh_files` (what training uses) refuses it in one line. Training skipping it would
give a dataset other than the one the user put together, with no trace of why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import meshio
from meshio import _helpers as meshio_helpers

from meshgnn.data.folder_spec import FolderSpec
from meshgnn.errors import UserError

MAX_LISTED_NAMES = 5  # unfollowed paths named in a one-line refusal; the rest are counted


@lru_cache(maxsize=1)
def readable_extensions() -> tuple[str, ...]:
    """File extensions meshio has a reader for, longest first (".vol.gz" before ".gz")."""
    exts = {ext.lower() for ext, types in meshio.extension_to_filetypes.items()
            if any(t in meshio_helpers.reader_map for t in types)}
    return tuple(sorted(exts, key=lambda e: (-len(e), e)))


def mesh_extension(path: Path) -> str | None:
    """The meshio extension the name ends with (".vtu", ".vol.gz"), None if it has none."""
    name = path.name.lower()
    return next((ext for ext in readable_extensions() if name.endswith(ext) and len(name) > len(ext)), None)


def sidecar_path(path: Path) -> Path:
    """`<file stem>.json` beside a mesh file (the stem without the whole mesh extension)."""
    ext = mesh_extension(path)
    stem = path.name[: -len(ext)] if ext else path.stem
    return path.with_name(stem + ".json")


@dataclass(frozen=True)
class FolderListing:
    """files: readable regular mesh files, sorted; unfollowed: (path, why) for every other
    mesh-named path the pattern matched."""

    files: list[Path]
    unfollowed: list[tuple[Path, str]]


def _why_unfollowed(path: Path) -> str | None:
    """Why a matched mesh-named path cannot be read as a file, None if it can."""
    if path.is_file():
        return None if os.access(path, os.R_OK) else "is not readable (permission denied)"
    if path.is_symlink():
        return f"is a symlink to {os.readlink(path)}, which does not exist (or loops)"
    return "is a folder, not a file" if path.is_dir() else "is not a regular file"


def scan_folder(spec: FolderSpec) -> FolderListing:
    """The mesh files under `spec.path` matching `spec.pattern`, and the matches it could not
    follow. Refuses a missing folder, and a pattern that matches no mesh name at all."""
    folder = spec.path
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise UserError(f"mesh folder {folder} {what}; point data.path / the FOLDER argument at the "
                        "folder holding the mesh files")
    matched = list(folder.glob(spec.pattern))
    named = sorted(p for p in matched if p.suffix.lower() != ".json" and mesh_extension(p))
    why = {p: _why_unfollowed(p) for p in named}
    listing = FolderListing(files=[p for p in named if why[p] is None],
                            unfollowed=[(p, w) for p, w in why.items() if w is not None])
    if not named:
        others = sorted({p.suffix or p.name for p in matched if p.is_file()})
        found = (f"; the pattern matched only {', '.join(others[:10])} files" if others
                 else "; nothing matched the pattern")
        raise UserError(f"no mesh files matching {spec.pattern!r} in {folder}{found}; put meshio-readable "
                        f"files there ({', '.join(sorted(readable_extensions()))}) or change the pattern "
                        "(data.pattern / --pattern, e.g. '**/*.vtu' for subfolders)")
    return listing


UNFOLLOWED_FIX = "repair or remove it, or leave it out with data.pattern / --pattern"


def list_mesh_files(spec: FolderSpec) -> list[Path]:
    """Sorted mesh files of the folder; one UserError line if any match cannot be followed."""
    listing = scan_folder(spec)
    if listing.unfollowed:
        named = [f"{spec.display_name(p)} {why}" for p, why in listing.unfollowed[:MAX_LISTED_NAMES]]
        more = len(listing.unfollowed) - len(named)
        raise UserError(f"{len(listing.unfollowed)} path(s) matching {spec.pattern!r} in {spec.path} "
                        f"cannot be read: {'; '.join(named)}{f'; and {more} more' if more else ''}; "
                        f"fix: {UNFOLLOWED_FIX}")
    return listing.files
