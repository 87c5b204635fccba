"""Vectorised planar geometry on closed polylines: inside tests, distances, arcs, resampling.

The part generator checks hole candidates against each other and the outline, and the sources
ask which mesh nodes lie in the material or where a boundary node sits along the outline; both
run on every node or every boundary vertex, so everything here is numpy over all points at
once (a closed polyline is an [m, 2] array of vertices, its last edge closing back to vertex 0).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

_CHUNK = 1 << 20  # point x edge pairs per broadcast block: bounds memory on large meshes


def edges(polyline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end vertices [m, 2] of every edge of a closed polyline."""
    return polyline, np.roll(polyline, -1, axis=0)


def segment_distances(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """[n, m] Euclidean distance of each point to each segment start[j] -> end[j]."""
    direction = end - start
    offset = points[:, None, :] - start[None, :, :]
    squared = np.maximum((direction**2).sum(axis=1), np.finfo(np.float64).tiny)
    t = np.clip((offset * direction[None]).sum(axis=2) / squared, 0.0, 1.0)
    return np.linalg.norm(offset - t[..., None] * direction[None], axis=2)


def distance_to(points: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """[n] distance of each point to the closed polyline's edges."""
    start, end = edges(polyline)
    return np.concatenate(
        [segment_distances(block, start, end).min(axis=1) for block in _blocks(points, len(start))]
    )


def polyline_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Least distance between two closed polylines that do not cross (vertex to edge both ways,
    which is exact for non-crossing polylines; crossing ones come out near 0 when their edges are
    short against the margin the caller asks for)."""
    return min(_vertex_gap(a, b), _vertex_gap(b, a))


def _vertex_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Least distance of a's vertices to b's edges. A vertex's distance to b is at least its
    distance to b's nearest vertex less half b's longest edge, so only the vertices that this
    bound cannot rule out get the exact (vertex x edge) distance."""
    to_vertex, _ = cKDTree(b).query(a)
    start, end = edges(b)
    longest = np.linalg.norm(end - start, axis=1).max()
    close = a[to_vertex - longest / 2 <= to_vertex.min()]
    return float(distance_to(close, b).min())


def inside(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """[n] bool: the point lies inside the closed polygon (even-odd rule; points exactly on an
    edge may come out either way)."""
    start, end = edges(polygon)
    return np.concatenate([_odd_crossings(block, start, end) for block in _blocks(points, len(start))])


def arc(centre: tuple[float, float], radius: float, start_angle: float, end_angle: float,
        max_angle: float, min_chord: float = 0.0) -> np.ndarray:
    """Vertices of a circular arc, both ends included, in the direction start -> end.

    Segments subtend at most `max_angle` but, if `min_chord` > 0, are no shorter than it (a
    small fillet would otherwise force tiny elements at coarse mesh sizes); the count depends
    only on the arc, never on a mesh size, so a part is the same polygon at every resolution.
    """
    sweep = abs(end_angle - start_angle)
    count = int(np.ceil(sweep / max_angle))
    if min_chord > 0:
        count = min(count, int(np.ceil(radius * sweep / min_chord)))
    count = max(1, count)
    angle = np.linspace(start_angle, end_angle, count + 1)
    return np.c_[centre[0] + radius * np.cos(angle), centre[1] + radius * np.sin(angle)]


def resample(polyline: np.ndarray, count: int) -> np.ndarray:
    """`count` vertices at equal arclength along a closed polyline, starting at its vertex 0.

    The new vertices lie on the old edges, so a convex polyline resampled stays inside itself:
    distances to it only grow, and a margin checked on the fine polyline holds for the coarse.
    """
    closed = np.vstack([polyline, polyline[:1]])
    arclength = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(closed, axis=0), axis=1))]
    target = arclength[-1] * np.arange(count) / count
    return np.c_[np.interp(target, arclength, closed[:, 0]), np.interp(target, arclength, closed[:, 1])]


def subdivide(corners: np.ndarray, spacing: float) -> np.ndarray:
    """A closed polygon with every edge split into equal segments of at most `spacing`."""
    start, end = edges(corners)
    pieces = []
    for a, b in zip(start, end):
        count = max(1, int(np.ceil(np.linalg.norm(b - a) / spacing)))
        pieces.append(a + (np.arange(count)[:, None] / count) * (b - a))
    return np.concatenate(pieces)


def perimeter(polyline: np.ndarray) -> float:
    start, end = edges(polyline)
    return float(np.linalg.norm(end - start, axis=1).sum())


def _odd_crossings(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    x, y = points[:, :1], points[:, 1:]
    x0, y0, x1, y1 = start[:, 0], start[:, 1], end[:, 0], end[:, 1]
    straddles = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return (straddles & (x < x_cross)).sum(axis=1) % 2 == 1


def _blocks(points: np.ndarray, edge_count: int) -> list[np.ndarray]:
    size = max(1, _CHUNK // max(1, edge_count))
    return [points[i:i + size] for i in range(0, max(1, len(points)), size)]
