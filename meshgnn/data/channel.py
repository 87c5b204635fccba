"""The 2D channel of the flow2d source: [0, length] x [0, 1] with obstacles, meshed.

Obstacles are the holes of meshgnn.data.holes (circle, ellipse, slot, polygon; each lies in
the disc of radius `size` about its centre). They are placed where the flow around them is a
clean test of a surrogate and the boundary conditions stay true:
- centres in x in [INLET_CLEARANCE, OBSTACLE_REGION * length]: at least half a channel height
  behind the inlet (the imposed parabola is not squeezed by an obstacle right at it) and in the
  first 60 % of the channel, so the wake has at least 0.4 length (0.8-1.2 channel heights at
  the default lengths 2-3) to relax towards the parabola before the do-nothing outlet, whose
  natural condition is exact only for a fully developed profile;
- a clearance of one obstacle size (its circumradius; at least HOLE_MARGIN, so a thin gap still
  has a few cells) to both walls and to every other obstacle, so no obstacle chokes the channel
  into a slit the mesh cannot resolve.
A candidate that finds no room in ATTEMPTS tries is dropped (a crowded channel gets fewer
obstacles); the first always fits (its first candidate has nothing to clear), since every
obstacle size and length allowed (meshgnn.data_config.Flow2dRanges) leave room for it.
Every draw comes before the mesh size is used, so a seed gives the same channel at every
resolution (as for meshgnn.data.geometry's parts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from meshgnn.data.holes import Hole, draw_hole
from meshgnn.data.mesher import TriMesh, mesh_part
from meshgnn.data_config import CHANNEL_INLET_CLEARANCE as INLET_CLEARANCE
from meshgnn.data_config import CHANNEL_OBSTACLE_REGION as OBSTACLE_REGION
from meshgnn.data_config import HOLE_MARGIN

ATTEMPTS = 50  # placement tries per obstacle


@dataclass(frozen=True, eq=False)
class Channel:
    """A meshed channel [0, length] x [0, 1]: mesh labels LEFT (inlet), RIGHT (outlet), BOTTOM
    and TOP (walls; the mesher gives the four corners to LEFT/RIGHT), obstacle k FIRST_HOLE + k.
    obstacles: their shapes, the same at every mesh size."""

    mesh: TriMesh
    length: float
    obstacles: tuple[Hole, ...]

    @property
    def obstacle_scale(self) -> float:
        """D of the Reynolds number: the largest obstacle's diameter (twice its circumradius)."""
        return 2 * max(obstacle.size for obstacle in self.obstacles)


def clearance(size: float) -> float:
    """The least gap an obstacle of circumradius `size` keeps to the walls and to other obstacles."""
    return max(size, HOLE_MARGIN)


def random_channel(rng: np.random.Generator, mesh_size: float, max_obstacles: int,
                   length_range: Sequence[float], size_range: Sequence[float],
                   shapes: Sequence[str]) -> Channel:
    """A channel of length drawn from `length_range` with 1..max_obstacles obstacles (module
    doc) of circumradius from `size_range` and shape from `shapes`, meshed at `mesh_size`."""
    if max_obstacles < 1:
        raise ValueError(f"a channel needs at least one obstacle, got max_obstacles={max_obstacles}")
    length = float(rng.uniform(*length_range))
    obstacles: list[Hole] = []
    for _ in range(int(rng.integers(1, max_obstacles + 1))):
        shape = shapes[0] if len(shapes) == 1 else shapes[int(rng.integers(len(shapes)))]
        for _ in range(ATTEMPTS):
            size = float(rng.uniform(*size_range))
            gap = clearance(size)
            x = float(rng.uniform(INLET_CLEARANCE, OBSTACLE_REGION * length))
            y = float(rng.uniform(size + gap, 1.0 - size - gap))
            if all(np.hypot(x - other.x, y - other.y) >= size + other.size + max(gap, clearance(other.size))
                   for other in obstacles):
                obstacles.append(draw_hole(rng, shape, x, y, size))
                break
    outline = np.array([[0.0, 0.0], [length, 0.0], [length, 1.0], [0.0, 1.0]])
    polylines = [obstacle.polyline(mesh_size) for obstacle in obstacles]
    mesh = mesh_part(outline, length, polylines, [(o.x, o.y) for o in obstacles], mesh_size)
    return Channel(mesh, length, tuple(obstacles))
