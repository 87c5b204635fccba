"""Registry of the built-in FEM dataset generators, looked up by name from the config."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from meshgnn.conf_location import conf_dir
from meshgnn.data.sample import MeshSample, SourceSpec
from meshgnn.data.sources import elasticity2d, elasticity3d, flow2d, heat2d
from meshgnn.errors import UserError


@functools.cache
def _conf_defaults(name: str) -> dict[str, Any]:
    """conf/data/<name>.yaml's own keys: the values a source's knobs take when no config is given."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(conf_dir() / "data" / f"{name}.yaml"))


@dataclass(frozen=True)
class GeneratedSource:
    """A generator of solved meshes.

    `version` goes into the dataset cache key: bump it in the generator module whenever the
    same (seed, index, mesh_size, max_holes, knobs) would produce different data, so stale
    caches are never reused.
    `make(index, seed, mesh_size, max_holes, **knobs)` must depend only on its arguments, so a
    dataset is reproducible and can be generated in any order, by any number of workers.
    `analytic(sample, **baseline_knobs)` recomputes the analytic `sample.baseline` that `make`
    attaches, from the points, cells, node types, inputs and globals alone (never the targets),
    so a model that needs the baseline (`model.residual`, `data.baseline_input`) gets it for a
    new mesh file too; `make` itself calls it, so both always agree exactly.
    The knobs are the source's own data config keys, all part of the dataset cache key:
    `baseline_knobs` those both take (e.g. heat2d's shepard_cell), `generator_knobs` those
    only `make` takes (data.ranges, data.families, ...). A model package's data section keeps
    predicting as long as it has the baseline's, so a generator knob never becomes one of those.
    `predating` gives what a data section written before a knob existed meant by its absence
    (heat2d's shepard_cell: the nearest-node baseline; the 2D families: plates with circular
    holes), so such a section still reads as the data its model was trained on.
    """

    name: str
    spec: SourceSpec
    version: int
    make: Callable[..., MeshSample]
    analytic: Callable[..., dict[str, np.ndarray]]
    baseline_knobs: tuple[str, ...] = ()
    generator_knobs: tuple[str, ...] = ()
    predating: Mapping[str, Any] = field(default_factory=dict)

    @property
    def knobs(self) -> tuple[str, ...]:
        return self.baseline_knobs + self.generator_knobs

    def knob_values(self, data: Mapping[str, Any] | None = None,
                    knobs: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The values (plain Python: lists, dicts) of `knobs` (default: all of them) in `data`
        (a data config, or a model package's data section), or without one the defaults of
        conf/data/<name>.yaml (tests, benchmarks, examples)."""
        knobs = self.knobs if knobs is None else knobs
        data = {**self.predating, **(_conf_defaults(self.name) if data is None else data)}
        missing = [knob for knob in knobs if knob not in data]
        if missing:
            raise UserError(f"the {self.name} data config has no {', '.join(missing)}: it predates data version "
                            f"{self.version} of {self.name}; retrain the model (or add the key) to use it")
        return {knob: _plain(data[knob]) for knob in knobs}

    def with_generator_defaults(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """`data` with the generator knobs it lacks (a model package's data section written
        before they existed): what their absence meant (`predating`: plates with circular
        holes), the rest from conf/data/<name>.yaml, whose ranges are the
        constants those versions drew from. Enough to generate its example mesh, or to
        evaluate it on data like its own (`meshgnn evaluate`)."""
        return {**self.knob_values(None, self.generator_knobs), **self.predating, **data}

    def generate(self, index: int, seed: int, mesh_size: float, max_holes: int,
                 data: Mapping[str, Any] | None = None) -> MeshSample:
        """Sample `index` at the (resolved, per-sample) `mesh_size`: see
        meshgnn.data.generate.sample_mesh_size for a data.mesh_size range."""
        return self.make(index, seed, mesh_size, max_holes, **self.knob_values(data))

    def baseline(self, sample: MeshSample, data: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        return self.analytic(sample, **self.knob_values(data, self.baseline_knobs))


def _plain(value: Any) -> Any:
    """An OmegaConf node as plain lists and dicts (picklable to workers, JSON for cache keys)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


PARTS_2D = ("ranges", "families", "hole_shapes", "label_refinement")  # data config keys of the 2D parts
# What the 2D generators drew before data.families / data.hole_shapes existed.
BEFORE_FAMILIES: dict[str, Any] = {"families": ["plate"], "hole_shapes": ["circle"]}

# What a heat2d data section meant without a knob: before version 6, no patches (the nearest-node
# baseline of shepard_neighbours); before version 5, a fixed neighbour count.
HEAT2D_BEFORE_PATCHES: dict[str, Any] = {"shepard_cell": None, "shepard_spacing": None}

SOURCES: dict[str, GeneratedSource] = {
    source.name: source
    for source in (
        GeneratedSource("heat2d", heat2d.SPEC, heat2d.VERSION, heat2d.generate, heat2d.baseline,
                        baseline_knobs=("shepard_cell", "shepard_neighbours", "shepard_spacing"),
                        generator_knobs=PARTS_2D, predating={**BEFORE_FAMILIES, **HEAT2D_BEFORE_PATCHES}),
        GeneratedSource("elasticity2d", elasticity2d.SPEC, elasticity2d.VERSION, elasticity2d.generate,
                        elasticity2d.baseline, generator_knobs=PARTS_2D, predating=BEFORE_FAMILIES),
        GeneratedSource("elasticity3d", elasticity3d.SPEC, elasticity3d.VERSION, elasticity3d.generate,
                        elasticity3d.baseline),
        GeneratedSource("flow2d", flow2d.SPEC, flow2d.VERSION, flow2d.generate, flow2d.baseline,
                        generator_knobs=("ranges", "hole_shapes", "newton_tolerance", "newton_max_iterations")),
    )
}


def get_source(name: str) -> GeneratedSource:
    try:
        return SOURCES[name]
    except KeyError:
        valid = ", ".join(sorted(SOURCES))
        raise UserError(f"unknown data source {name!r}; valid sources: {valid}") from None
