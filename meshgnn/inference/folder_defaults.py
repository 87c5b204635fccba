"""The folder pipeline's defaults (`folder_predict`), in a module of their own that imports
nothing heavy: `meshgnn --help` and every command's parser show them without loading torch."""

from __future__ import annotations

import os

BATCH_NODES = 200_000  # nodes per batch: a few 10k-node meshes fill a GPU's kernels, 100k ones go alone


def default_workers() -> int:
    """Reader processes when none are asked for: one per core, at most 4 (more readers than
    that outrun any device on meshes of 10k nodes and only hold memory)."""
    return min(4, os.cpu_count() or 1)
