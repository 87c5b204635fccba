"""Generate a dataset from a built-in source in parallel worker processes.

Each sample is seeded by (seed, index) alone, so the result does not depend on the number of
workers or on which worker produced which sample; `parallel_map` keeps the order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Union

import numpy as np

from meshgnn.data.parallel import parallel_map
from meshgnn.data.sample import MeshSample
from meshgnn.data.sources import GeneratedSource

# data.mesh_size: one size for every sample, or a [min, max] range drawn per sample.
MeshSizeSpec = Union[float, Sequence[float]]
# The mesh size's own random stream of a sample, beside the sources' part and parameter
# streams (meshgnn.data.sources.parts): a size drawn from it changes no other draw.
MESH_SIZE_STREAM = 2


def sample_mesh_size(spec: MeshSizeSpec, seed: int, index: int) -> float:
    """Sample `index`'s mesh size: `spec` itself, or for a range [min, max] a log-uniform draw
    min * (max / min)**u, u from the sample's own stream. Halving both ends halves every
    sample's size exactly (the ratio and u are unchanged, and halving a float is exact), so
    the same config at a range h/2 meshes the very same problems twice as fine."""
    if isinstance(spec, (int, float)):
        return float(spec)
    lo, hi = (float(v) for v in spec)
    u = np.random.default_rng([seed, index, MESH_SIZE_STREAM]).uniform()
    return lo * (hi / lo) ** u


def generate_samples(
    source: GeneratedSource,
    num_samples: int,
    seed: int,
    mesh_size: MeshSizeSpec,
    max_holes: int,
    workers: int,
    data: Mapping[str, Any] | None = None,
) -> list[MeshSample]:
    """Samples 0..num_samples-1 of `source`, each at its `sample_mesh_size`; workers=0 uses
    every CPU, 1 runs in-process. The source's own knobs come from the data config `data` (see
    GeneratedSource.knob_values)."""
    job = partial(_generate_one, source, seed=seed, mesh_size=plain_mesh_size(mesh_size), max_holes=max_holes,
                  knobs=source.knob_values(data))
    return parallel_map(job, range(num_samples), workers, f"generating {source.name}", unit="samples")


def plain_mesh_size(spec: Any) -> MeshSizeSpec:
    """data.mesh_size as a float or a tuple of floats: not an OmegaConf list (which pickles to
    workers slowly), and [1, 2] the same as [1.0, 2.0] (in a cache key too)."""
    return float(spec) if isinstance(spec, (int, float)) else tuple(float(v) for v in spec)


def describe_mesh_size(spec: MeshSizeSpec) -> str:
    """'0.08', or '0.06-0.1' for a range (log-uniform per sample)."""
    if isinstance(spec, (int, float)):
        return f"{spec:g}"
    lo, hi = spec
    return f"{lo:g}-{hi:g} (log-uniform per sample)"


def _generate_one(
    source: GeneratedSource, index: int, *, seed: int, mesh_size: MeshSizeSpec, max_holes: int,
    knobs: dict[str, Any]
) -> MeshSample:
    return source.make(index, seed, sample_mesh_size(mesh_size, seed, index), max_holes, **knobs)
