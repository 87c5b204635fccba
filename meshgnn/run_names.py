"""Readable run directory names: outputs/<date>/<time>_<task_name>_<short overrides>.

`hydra.run.dir` (conf/hydra/default.yaml) names a run by its time, the user's `task_name` and
a short tag of the command-line overrides, e.g. `13-05-22_train_hidden_dim-64_lr-1e-3`, so
`ls outputs/2026-12-02` and TensorBoard's run list tell runs apart. The name uses only
characters that are safe in file names and in an unquoted Hydra value (no `=` or `,`), so the
`python train.py resume=<run dir>` that meshgnn prints, or a shell completes, parses as one path. Sweeps are
multirun/<date>/<time>_<task_name>/<trial number> (the trial folders keep their numbers: the
sweeper, the report and diagnose find trials by them).

Used by resolvers Hydra evaluates before the training code is imported: import-light.
"""

from __future__ import annotations

import re
from typing import Iterable

# At most this many characters of overrides in a directory name (the whole name stays well
# under the 255 bytes filesystems allow, and readable in a listing).
MAX_TAG_CHARS = 60
MAX_ITEM_CHARS = 40  # one long override (a list of fields) is cut to this
# Overrides that say where or how a run starts rather than what it trains, and the name
# keys themselves: not part of the tag.
UNTAGGED = ("hydra", "paths", "resume", "init_from", "task_name", "tags")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(text: str) -> str:
    """`text` as one path component safe for file systems and Hydra (letters, digits, . _ + -)."""
    return _UNSAFE.sub("-", str(text)).strip("-.") or "run"


def _item(override: str) -> str | None:
    """One override as `name-value`: the key's last part, a path's last part, a list's items
    joined by +, unsafe characters replaced; None for an untagged key."""
    key, _, value = override.partition("=")
    key = key.lstrip("+~")
    if key.split(".")[0].split("/")[0] in UNTAGGED:
        return None
    name = key.split(".")[-1].split("@")[0]
    value = value.strip("'\"").replace(" ", "")
    if value.startswith("[") and value.endswith("]"):  # a list: its items joined by +
        value = "+".join(safe_name(v) for v in value[1:-1].split(",") if v)
    elif "/" in value:  # a path or glob: its last part
        value = value.rstrip("/").rsplit("/", 1)[-1]
    value = _UNSAFE.sub("-", value).strip("-")
    return safe_name(f"{name}-{value}" if value else name)


def override_tag(overrides: Iterable[str]) -> str:
    """The short tag of some overrides, e.g. `hidden_dim-64_lr-1e-3`; when they do not fit
    in MAX_TAG_CHARS, the first ones that do and `+Nmore` for the N left out."""
    items = [item[:MAX_ITEM_CHARS] for item in map(_item, overrides) if item]
    kept: list[str] = []
    for index, item in enumerate(items):
        rest = len(items) - index - 1
        if len("_".join([*kept, item])) + (len(f"_+{rest}more") if rest else 0) > MAX_TAG_CHARS:
            return "_".join([*kept, f"+{len(items) - index}more"])
        kept.append(item)
    return "_".join(kept)


def run_name(task_name: str, overrides: Iterable[str]) -> str:
    """The part of a run directory's name after its time: `<task_name>[_<override tag>]`."""
    tag = override_tag(list(overrides))
    return f"{safe_name(task_name)}_{tag}" if tag else safe_name(task_name)
