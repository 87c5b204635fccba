"""Random 2D parts for the built-in generators: an outline family with holes of several shapes.

`random_part` draws the outline (meshgnn.data.outlines), then places 0..max_holes holes
(meshgnn.data.holes) by rejection sampling, and meshes the result (meshgnn.data.mesher).
Every draw comes before and apart from the mesh size, so a seed gives the same part at every
resolution: a resolution-transfer study meshes the same part at h, h/2, h/4.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from meshgnn.data import polygons
from meshgnn.data.holes import HOLE_SHAPES, Hole, draw_hole
from meshgnn.data.mesher import TriMesh, mesh_part
from meshgnn.data.outlines import FAMILIES, draw_outline

__all__ = ["FAMILIES", "HOLE_SHAPES", "Hole", "Part", "random_part"]

_ON_BOUNDARY = 1e-8  # how far from the outline `outer_arclength` accepts a point


@dataclass(frozen=True, eq=False)
class Part:
    """A meshed part in [0, length] x [0, 1].

    mesh labels: outer facets on x == 0 LEFT, on x == length RIGHT, the others BOTTOM (before
    the right edge, counter-clockwise from (0, 0)) or TOP; hole k FIRST_HOLE + k (mesher).
    outer: [n, 2] counter-clockwise corners of the outline, outer[0] == (0, 0); the same at
    every mesh size. holes: each hole's boundary polyline as meshed (it depends on the mesh
    size); hole_specs: the holes' shapes, the same at every mesh size.
    """

    mesh: TriMesh
    family: str
    length: float
    outer: np.ndarray
    holes: tuple[np.ndarray, ...]
    hole_specs: tuple[Hole, ...]

    def contains(self, points: np.ndarray) -> np.ndarray:
        """[n] bool: the point lies in the material, inside the outline and outside every hole
        as meshed (points exactly on a boundary may come out either way)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        inside = polygons.inside(points, self.outer)
        for hole in self.holes:
            inside[inside] &= ~polygons.inside(points[inside], hole)
        return inside

    def outer_arclength(self, points: np.ndarray) -> np.ndarray:
        """[n] counter-clockwise arclength from (0, 0) along `outer` of points on the outline.

        (0, 0) itself comes out 0; points just before it on the left edge near `perimeter`.
        Raises ValueError for a point farther than 1e-8 from the outline.
        """
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        start, end = polygons.edges(self.outer)
        distance = polygons.segment_distances(points, start, end)
        nearest = distance.argmin(axis=1)  # the first of two edges at a corner: 0 at (0, 0)
        if len(points) and distance[np.arange(len(points)), nearest].max() > _ON_BOUNDARY:
            raise ValueError("outer_arclength: some points do not lie on the outer boundary")
        edge_start = np.r_[0.0, np.cumsum(np.linalg.norm(end - start, axis=1))[:-1]]
        return edge_start[nearest] + np.linalg.norm(points - start[nearest], axis=1)

    @property
    def perimeter(self) -> float:
        """Length of the outline `outer`."""
        return polygons.perimeter(self.outer)


def random_part(
    rng: np.random.Generator,
    mesh_size: float,
    max_holes: int,
    families: Sequence[str] = ("plate",),
    hole_shapes: Sequence[str] = ("circle",),
    length_range: tuple[float, float] = (1.0, 2.0),
    hole_size_range: tuple[float, float] = (0.08, 0.2),
    margin: float = 0.08,
    attempts_per_hole: int = 50,
) -> Part:
    """Draw a part and mesh it at `mesh_size`.

    The family is drawn uniformly from `families`, each hole's shape uniformly from
    `hole_shapes` (no draw where there is one choice: plates with circles draw exactly what
    the former `random_plate` drew). `hole_size_range` is a hole's circumradius (a circle's
    radius). A hole keeps `margin` to the outline (re-entrant corners and notches included) and
    to every other hole; one that finds no spot in `attempts_per_hole` tries is dropped, so a
    crowded part gets fewer holes rather than overlapping ones.
    """
    _check_names(families, FAMILIES, "geometry family")
    _check_names(hole_shapes, HOLE_SHAPES, "hole shape")
    _check_range(length_range, "length_range")
    _check_range(hole_size_range, "hole_size_range")
    if hole_size_range[0] + margin >= 0.5:
        raise ValueError(f"hole_size_range {tuple(hole_size_range)} with margin {margin}: no hole "
                         "fits the part's unit height; keep the smallest size + margin below 0.5")
    family = _choose(rng, families)
    length = float(rng.uniform(*length_range))
    outer = draw_outline(rng, family, length)
    holes: list[Hole] = []
    for _ in range(int(rng.integers(0, max_holes + 1))):
        shape = _choose(rng, hole_shapes)
        for _ in range(attempts_per_hole):
            candidate = _draw_candidate(rng, shape, length, hole_size_range, margin)
            if _fits(candidate, outer, holes, margin):
                holes.append(candidate)
                break
    polylines = tuple(hole.polyline(mesh_size) for hole in holes)
    mesh = mesh_part(outer, length, polylines, [(h.x, h.y) for h in holes], mesh_size)
    return Part(mesh, family, length, outer, polylines, tuple(holes))


def _draw_candidate(rng: np.random.Generator, shape: str, length: float,
                    size_range: tuple[float, float], margin: float) -> Hole:
    """A hole whose bounding circle keeps `margin` inside [0, length] x [0, 1]."""
    size = float(rng.uniform(*size_range))
    x = float(rng.uniform(size + margin, length - size - margin))
    y = float(rng.uniform(size + margin, 1.0 - size - margin))
    return draw_hole(rng, shape, x, y, size)


def _fits(candidate: Hole, outer: np.ndarray, holes: list[Hole], margin: float) -> bool:
    """Whether the candidate keeps `margin` to the outline and every placed hole; the bounding
    circles decide the clear cases, the reference polylines the close ones."""
    centre = np.array([[candidate.x, candidate.y]])
    if not polygons.inside(centre, outer)[0]:
        return False
    reference = candidate.reference
    if polygons.distance_to(centre, outer)[0] <= candidate.size + margin:
        if polygons.polyline_gap(reference, outer) < margin:
            return False
    for hole in holes:
        if np.hypot(candidate.x - hole.x, candidate.y - hole.y) > candidate.size + hole.size + margin:
            continue
        other = hole.reference
        nested = polygons.inside(centre, other)[0] or polygons.inside(other[:1], reference)[0]
        if nested or polygons.polyline_gap(reference, other) < margin:
            return False
    return True


def _choose(rng: np.random.Generator, names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else names[int(rng.integers(len(names)))]


def _check_range(bounds: tuple[float, float], name: str) -> None:
    if len(bounds) != 2 or not 0 < bounds[0] <= bounds[1]:
        raise ValueError(f"{name} must be (low, high) with 0 < low <= high, got {tuple(bounds)}")


def _check_names(names: Sequence[str], valid: tuple[str, ...], what: str) -> None:
    if not names:
        raise ValueError(f"no {what} given; valid: {', '.join(valid)}")
    unknown = [name for name in names if name not in valid]
    if unknown:
        raise ValueError(f"unknown {what} {unknown[0]!r}; valid: {', '.join(valid)}")
