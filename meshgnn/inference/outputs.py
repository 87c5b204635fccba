"""Where `predict`, `export` and `ensemble` may write: never onto, into or around their inputs.

An output folder is refused, before anything is written (no folder is created on refusal), when
- it is an existing file, or lies under one (creating it would fail halfway);
- it cannot be written: the folder, or its nearest existing parent, is not writable
  (permissions, a read-only mount);
- it is, lies inside, or contains one of the command's inputs (mesh files and folders, the
  package, run directory or checkpoint, ensemble members), compared after resolving symlinks.
  Outputs next to inputs would overwrite the user's files of the same name, and the next
  `predict` of that folder would read the outputs as inputs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from meshgnn.errors import UserError


class Inputs:
    """A command's inputs resolved once (symlinks followed), so that each of thousands of
    output files is checked against all of them in a few set look-ups."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self.given: dict[Path, Path] = {}  # resolved -> as the user named it
        for path in paths:
            self.given.setdefault(Path(path).resolve(), Path(path))

    def overlap(self, resolved: Path, contains: bool = True) -> str | None:
        """How the resolved output path collides with an input, or None (`contains`: also
        whether it holds one, which only a folder can)."""
        if resolved in self.given:
            return f"is the input {self.given[resolved]}"
        inside = next((p for p in resolved.parents if p in self.given), None)
        if inside is not None:
            return f"lies inside the input {self.given[inside]}"
        if contains:
            held = next((g for r, g in self.given.items() if r.is_relative_to(resolved)), None)
            if held is not None:
                return f"contains the input {held}"
        return None


def check_output_location(out: Path, inputs: Inputs, option: str) -> None:
    """Refuse the output folder `out` (see module doc) in one line naming it, the input or
    file in the way, and `option` (how the user passes another location, e.g. "--out")."""
    out = Path(out)
    try:
        resolved = out.resolve()
        existing = next(p for p in (resolved, *resolved.parents) if p.exists())
    except OSError as exc:  # a folder on the way that this user may not enter
        raise UserError(f"{out}: cannot be reached ({exc.strerror}: {exc.filename}); pass a folder you can "
                        f"write to for {option}") from exc
    if not existing.is_dir():
        where = "is a file" if existing == resolved else f"lies under {existing}, which is a file"
        raise UserError(f"{out}: {where}; pass a folder path for {option}, not a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{out}: {existing} is not writable; pass a writable folder for {option}, or fix "
                        "that folder's permissions")
    problem = inputs.overlap(resolved)
    if problem:
        raise UserError(f"{out}: {problem}; outputs never go where inputs are: pass a folder outside "
                        f"the inputs for {option}")
