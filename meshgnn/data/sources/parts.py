"""What heat2d and elasticity2d share: a sample's random streams, its part drawn from the data
config (data.families, data.hole_shapes, data.ranges.length/hole_size), uniform draws from the
configured ranges, and the refined mesh its reference fields are solved on (label_refinement).

A sample draws its part and its physical parameters from two streams of its own (seed, index),
so the parameters do not depend on the part (changing data.families keeps every sample's
conductivity, loads, ...), and neither depends on the mesh size (meshgnn.data.generate draws
that from a third stream): the same (seed, index) is the same problem at every resolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from meshgnn.data.fem import refine_uniform
from meshgnn.data.geometry import Part, random_part
from meshgnn.data.mesher import INTERIOR, TriMesh
from meshgnn.data_config import HOLE_MARGIN

PART_STREAM, PARAMETER_STREAM = 0, 1  # meshgnn.data.generate.MESH_SIZE_STREAM is the third

Ranges = Mapping[str, Sequence[float]]


def streams(seed: int, index: int) -> tuple[np.random.Generator, np.random.Generator]:
    """(part stream, parameter stream) of sample `index`."""
    return (np.random.default_rng([seed, index, PART_STREAM]),
            np.random.default_rng([seed, index, PARAMETER_STREAM]))


def draw_part(rng: np.random.Generator, mesh_size: float, max_holes: int, ranges: Ranges,
              families: Sequence[str], hole_shapes: Sequence[str]) -> Part:
    return random_part(rng, mesh_size, max_holes, families=tuple(families), hole_shapes=tuple(hole_shapes),
                       length_range=_pair(ranges["length"]), hole_size_range=_pair(ranges["hole_size"]),
                       margin=HOLE_MARGIN)


def uniform(rng: np.random.Generator, ranges: Ranges, name: str, size: int | None = None) -> float | np.ndarray:
    """A uniform draw from data.ranges.<name> (lo == hi gives exactly lo)."""
    lo, hi = _pair(ranges[name])
    return rng.uniform(lo, hi, size) if size is not None else float(rng.uniform(lo, hi))


def point_in_material(rng: np.random.Generator, part: Part) -> np.ndarray:
    """A uniform point of the part (outside every hole), by rejection from its bounding box."""
    while True:
        point = rng.uniform((0.0, 0.0), (part.length, 1.0))
        if part.contains(point[None])[0]:
            return point


def label_mesh(mesh: TriMesh, refinement: int) -> TriMesh:
    """The mesh the reference fields are solved on: `mesh` itself, or `mesh` refined
    `refinement` times with its labels carried along (its first nodes are `mesh`'s, in order;
    a new node on a boundary facet takes the facet's label)."""
    if refinement == 0:
        return mesh
    fine = refine_uniform(mesh.points, mesh.triangles, mesh.facets, refinement)
    facet_label = mesh.facet_label[fine.facet_origin]
    node_label = np.full(len(fine.points), INTERIOR, dtype=np.int64)
    node_label[fine.facets.ravel()] = np.repeat(facet_label, 2)
    node_label[: len(mesh.points)] = mesh.node_label  # the corners keep their vertical edge's label
    return TriMesh(fine.points, fine.triangles, node_label, fine.facets, facet_label)


def _pair(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = values
    return float(lo), float(hi)
