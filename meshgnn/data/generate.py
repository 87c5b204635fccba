"""Generate a dataset from a built-in source in parallel worker processes.

Each sample is seeded by (seed, index) alone, so the result does not depend on the number of
workers or on which worker produced which sample; `parallel_map` keeps the order.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from meshgnn.data.parallel import parallel_map
from meshgnn.data.sample import MeshSample
from meshgnn.data.sources import GeneratedSource


def generate_samples(
    source: GeneratedSource,
    num_samples: int,
    seed: int,
    mesh_size: float,
    max_holes: int,
    workers: int,
    data: Mapping[str, Any] | None = None,
) -> list[MeshSample]:
    """Samples 0..num_samples-1 of `source`; workers=0 uses every CPU, 1 runs in-process. The
    source's own knobs come from the data config `data` (see GeneratedSource.knob_values)."""
    job = partial(_generate_one, source, seed=seed, mesh_size=mesh_size, max_holes=max_holes,
                  knobs=source.knob_values(data))
    return parallel_map(job, range(num_samples), workers, f"generating {source.name}", unit="samples")


def _generate_one(
    source: GeneratedSource, index: int, *, seed: int, mesh_size: float, max_holes: int, knobs: dict[str, Any]
) -> MeshSample:
    return source.make(index, seed, mesh_size, max_holes, **knobs)
