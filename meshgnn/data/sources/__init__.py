"""Registry of the built-in FEM dataset generators, looked up by name from the config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from meshgnn.data.sample import MeshSample, SourceSpec
from meshgnn.data.sources import elasticity2d, elasticity3d, heat2d
from meshgnn.errors import UserError


@dataclass(frozen=True)
class GeneratedSource:
    """A generator of solved meshes.

    `version` goes into the dataset cache key: bump it in the generator module whenever the
    same (seed, index, mesh_size, max_holes) would produce different data, so stale caches
    are never reused.
    `generate(index, seed, mesh_size, max_holes)` must depend only on its arguments, so a
    dataset is reproducible and can be generated in any order, by any number of workers.
    `baseline(sample)` recomputes the analytic `sample.baseline` that `generate` attaches, from
    the points, cells, node types, inputs and globals alone (never the targets), so a model
    that needs the baseline (`model.residual`, `data.baseline_input`) gets it for a new mesh
    file too; `generate` itself calls it, so both always agree exactly.
    """

    name: str
    spec: SourceSpec
    version: int
    generate: Callable[[int, int, float, int], MeshSample]
    baseline: Callable[[MeshSample], dict[str, np.ndarray]]


SOURCES: dict[str, GeneratedSource] = {
    source.name: source
    for source in (
        GeneratedSource(
            "heat2d", heat2d.SPEC, heat2d.VERSION, heat2d.generate, heat2d.baseline
        ),
        GeneratedSource(
            "elasticity2d", elasticity2d.SPEC, elasticity2d.VERSION, elasticity2d.generate,
            elasticity2d.baseline,
        ),
        GeneratedSource(
            "elasticity3d", elasticity3d.SPEC, elasticity3d.VERSION, elasticity3d.generate,
            elasticity3d.baseline,
        ),
    )
}


def get_source(name: str) -> GeneratedSource:
    try:
        return SOURCES[name]
    except KeyError:
        valid = ", ".join(sorted(SOURCES))
        raise UserError(f"unknown data source {name!r}; valid sources: {valid}") from None
