"""Hole shapes of the built-in 2D parts: circles, ellipses, rounded slots, regular polygons.

Every shape is convex and lies in the disc of radius `size` about its centre, so the part
sampler can place any of them with the same bounding-circle test and one size range.
A hole has two polylines: its `reference` (fixed, fine; what the sampler checks margins on)
and its `polyline(h)` as meshed at mesh size h, whose vertices lie on the reference's edges:
the meshed hole is inside the reference one, so every margin checked holds on every mesh.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from meshgnn.data.polygons import arc, perimeter, resample, subdivide

HOLE_SHAPES: tuple[str, ...] = ("circle", "ellipse", "slot", "polygon")

# Shape parameters drawn per hole (aspect = minor / major half-width).
ELLIPSE_ASPECT_RANGE = (0.4, 0.8)
SLOT_ASPECT_RANGE = (0.3, 0.5)  # slot width / slot length
POLYGON_SIDES = (4, 6)  # rotated squares and hexagons (nut and key seats)

_MIN_SEGMENTS = 8  # keeps a small hole recognisable at coarse mesh sizes
_REFERENCE_SPACING = 0.002  # reference polylines of curved holes: far below any mesh size used
_REFERENCE_MIN_VERTICES = 64


@dataclass(frozen=True)
class Hole:
    """One hole: centre (x, y), circumradius `size`, orientation `angle` (radians) of the major
    axis (ellipse, slot) or of a vertex (polygon); `aspect` is minor/major (1 for circles and
    polygons), `sides` the polygon's vertex count (0 otherwise)."""

    shape: str
    x: float
    y: float
    size: float
    aspect: float = 1.0
    angle: float = 0.0
    sides: int = 0

    @cached_property
    def reference(self) -> np.ndarray:
        """[m, 2] counter-clockwise boundary, independent of any mesh size (read-only)."""
        boundary = self._boundary()
        boundary.setflags(write=False)
        return boundary

    def _boundary(self) -> np.ndarray:
        if self.shape == "polygon":
            angle = self.angle + 2 * np.pi * np.arange(self.sides) / self.sides
            return self._place(np.c_[np.cos(angle), np.sin(angle)] * self.size)
        if self.shape == "slot":
            radius = self.aspect * self.size
            half = self.size - radius  # half the straight part
            right = arc((half, 0.0), radius, -np.pi / 2, np.pi / 2, np.pi / 64)
            left = arc((-half, 0.0), radius, np.pi / 2, 3 * np.pi / 2, np.pi / 64)
            return self._place(np.vstack([right, left]))
        # circle and ellipse: parametric samples, denser where an ellipse bends most
        count = max(_REFERENCE_MIN_VERTICES, int(np.ceil(2 * np.pi * self.size / _REFERENCE_SPACING)))
        t = 2 * np.pi * np.arange(count) / count
        return self._place(np.c_[self.size * np.cos(t), self.aspect * self.size * np.sin(t)])

    def polyline(self, mesh_size: float) -> np.ndarray:
        """The boundary as meshed: segments of about `mesh_size` (at least _MIN_SEGMENTS)."""
        reference = self.reference
        if self.shape == "polygon":
            return subdivide(reference, mesh_size)
        count = max(_MIN_SEGMENTS, int(np.ceil(perimeter(reference) / mesh_size)))
        return resample(reference, count)

    def _place(self, local: np.ndarray) -> np.ndarray:
        """Rotate by `angle` (not polygons: their angle is already in the vertices) and shift."""
        angle = 0.0 if self.shape == "polygon" else self.angle
        c, s = np.cos(angle), np.sin(angle)
        return local @ np.array([[c, s], [-s, c]]) + (self.x, self.y)


def draw_hole(rng: np.random.Generator, shape: str, x: float, y: float, size: float) -> Hole:
    """The shape's own random parameters (aspect, orientation, sides) for a placed candidate."""
    if shape == "circle":
        return Hole(shape, x, y, size)
    if shape == "ellipse":
        return Hole(shape, x, y, size, float(rng.uniform(*ELLIPSE_ASPECT_RANGE)),
                    float(rng.uniform(0.0, np.pi)))
    if shape == "slot":
        return Hole(shape, x, y, size, float(rng.uniform(*SLOT_ASPECT_RANGE)),
                    float(rng.uniform(0.0, np.pi)))
    if shape == "polygon":
        sides = int(POLYGON_SIDES[rng.integers(len(POLYGON_SIDES))])
        return Hole(shape, x, y, size, 1.0, float(rng.uniform(0.0, 2 * np.pi / sides)), sides)
    raise ValueError(f"unknown hole shape {shape!r}; valid: {', '.join(HOLE_SHAPES)}")
