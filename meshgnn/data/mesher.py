"""2D triangle meshes of polygonal parts with holes (and annuli) via Shewchuk's Triangle.

Every boundary is given to Triangle as a labelled polyline, so the labels survive Triangle's
segment splitting and the sources can turn them into node types and loaded facets without
re-deriving geometry from coordinates. The shapes themselves come from meshgnn.data.geometry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import triangle

# Boundary labels of `mesh_part` (and `mesh_plate`). A corner belongs to its vertical edge,
# because the sources treat the left/right edges (clamped/loaded) as the ones whose corners matter.
LEFT, RIGHT, BOTTOM, TOP = 0, 1, 2, 3
FIRST_HOLE = 4  # hole k has label FIRST_HOLE + k

# Boundary labels of `mesh_annulus`.
INNER, OUTER = 0, 1

INTERIOR = -1  # node_label of nodes off the boundary

# Triangle reserves vertex markers 0 (interior) and 1 (unlabelled boundary).
_MARKER_OFFSET = 2
_MIN_CIRCLE_SEGMENTS = 8  # keeps a small hole a recognisable circle at coarse mesh sizes


@dataclass(frozen=True)
class Circle:
    x: float
    y: float
    r: float


@dataclass(frozen=True)
class TriMesh:
    """A linear triangle mesh with labelled boundary nodes and facets.

    points:      [N, 2] float64.
    triangles:   [T, 3] int64, counter-clockwise.
    node_label:  [N] int64 boundary label, INTERIOR off the boundary.
    facets:      [F, 2] int64 boundary edges (node pairs).
    facet_label: [F] int64 boundary label of each facet.
    """

    points: np.ndarray
    triangles: np.ndarray
    node_label: np.ndarray
    facets: np.ndarray
    facet_label: np.ndarray


def mesh_plate(length: float, holes: Sequence[Circle], mesh_size: float) -> TriMesh:
    """Mesh [0, length] x [0, 1] minus `holes` (which must lie inside and not overlap)."""
    corners = np.array([[0.0, 0.0], [length, 0.0], [length, 1.0], [0.0, 1.0]])
    polylines = [_circle_points(h.x, h.y, h.r, mesh_size) for h in holes]
    return mesh_part(corners, length, polylines, [(h.x, h.y) for h in holes], mesh_size)


def mesh_part(
    outer: np.ndarray,
    length: float,
    holes: Sequence[np.ndarray],
    hole_seeds: Sequence[tuple[float, float]],
    mesh_size: float,
) -> TriMesh:
    """Mesh the polygon `outer` minus the closed polylines `holes`.

    `outer` ([n, 2] counter-clockwise corners, starting at (0, 0)) has its edges split to
    about `mesh_size`; each hole is meshed vertex by vertex as given, with `hole_seeds[k]` a
    point inside hole k. Labels (`outer_labels`): edges on x == 0 LEFT, on x == length RIGHT,
    the others BOTTOM before the right edge and TOP after it; hole k is FIRST_HOLE + k.
    """
    edge_labels, corner_labels = outer_labels(outer, length)
    loops = [_polygon_loop(outer, edge_labels, corner_labels, mesh_size)]
    loops += [_fixed_loop(hole, FIRST_HOLE + k) for k, hole in enumerate(holes)]
    return _triangulate(loops, [tuple(seed) for seed in hole_seeds], mesh_size)


def outer_labels(outer: np.ndarray, length: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels of the outline's edges (edge i runs from corner i to i + 1) and of its corners
    (a corner takes its vertical LEFT/RIGHT edge's label, else its edges' shared one)."""
    start, end = outer, np.roll(outer, -1, axis=0)
    on_left = (start[:, 0] == 0.0) & (end[:, 0] == 0.0)
    on_right = (start[:, 0] == length) & (end[:, 0] == length)
    if not on_left.any() or not on_right.any():
        raise ValueError("an outline needs an edge on x == 0 and one on x == length")
    before_right = np.arange(len(outer)) < np.argmax(on_right)
    edge = np.where(before_right, BOTTOM, TOP)
    edge[on_left], edge[on_right] = LEFT, RIGHT
    previous = np.roll(edge, 1)
    vertical = np.isin(edge, (LEFT, RIGHT))
    corner = np.where(vertical, edge, np.where(np.isin(previous, (LEFT, RIGHT)), previous, edge))
    return edge, corner


def mesh_annulus(inner_radius: float, outer_radius: float, mesh_size: float) -> TriMesh:
    """Mesh the ring inner_radius < |x| < outer_radius centred at the origin."""
    loops = [
        _fixed_loop(_circle_points(0.0, 0.0, outer_radius, mesh_size), OUTER),
        _fixed_loop(_circle_points(0.0, 0.0, inner_radius, mesh_size), INNER),
    ]
    return _triangulate(loops, [(0.0, 0.0)], mesh_size)


# A closed boundary polyline: vertices [n, 2], vertex labels [n], label of segment i -> i+1.
_Loop = tuple[np.ndarray, np.ndarray, np.ndarray]


def _polygon_loop(
    corners: np.ndarray, edge_labels: np.ndarray, corner_labels: np.ndarray, h: float
) -> _Loop:
    """Split each polygon edge into segments of length ~h (corners kept exactly)."""
    points, point_labels, segment_labels = [], [], []
    for i, (a, b) in enumerate(zip(corners, np.roll(corners, -1, axis=0))):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / h)))
        t = np.arange(n)[:, None] / n
        points.append(a + t * (b - a))
        point_labels.append(np.r_[corner_labels[i], np.full(n - 1, edge_labels[i])])
        segment_labels.append(np.full(n, edge_labels[i]))
    return np.concatenate(points), np.concatenate(point_labels), np.concatenate(segment_labels)


def _fixed_loop(points: np.ndarray, label: int) -> _Loop:
    """A closed polyline meshed vertex by vertex, every vertex and segment labelled `label`."""
    return points, np.full(len(points), label), np.full(len(points), label)


def _circle_points(x: float, y: float, r: float, h: float) -> np.ndarray:
    n = max(_MIN_CIRCLE_SEGMENTS, int(np.ceil(2 * np.pi * r / h)))
    angle = 2 * np.pi * np.arange(n) / n
    return np.c_[x + r * np.cos(angle), y + r * np.sin(angle)]


def _triangulate(loops: list[_Loop], hole_points: list[tuple[float, ...]], h: float) -> TriMesh:
    vertices, vertex_markers, segments, segment_markers = [], [], [], []
    offset = 0
    for points, point_labels, segment_labels in loops:
        n = len(points)
        vertices.append(points)
        vertex_markers.append(point_labels + _MARKER_OFFSET)
        segments.append(offset + np.c_[np.arange(n), (np.arange(n) + 1) % n])
        segment_markers.append(segment_labels + _MARKER_OFFSET)
        offset += n
    pslg = {
        "vertices": np.concatenate(vertices),
        "vertex_markers": np.concatenate(vertex_markers)[:, None],
        "segments": np.concatenate(segments),
        "segment_markers": np.concatenate(segment_markers)[:, None],
    }
    if hole_points:
        pslg["holes"] = np.asarray(hole_points, dtype=float)
    max_area = np.sqrt(3.0) / 4.0 * h**2  # area of an equilateral triangle of side h
    # Fixed-point: Triangle would read the "e" of an exponent as its edge-output switch.
    out = triangle.triangulate(pslg, f"pq30a{max_area:.12f}")

    points = out["vertices"].astype(np.float64)
    triangles = out["triangles"].astype(np.int64)
    node_label = out["vertex_markers"].ravel().astype(np.int64) - _MARKER_OFFSET
    node_label[node_label < 0] = INTERIOR
    facets = out["segments"].astype(np.int64)
    facet_label = out["segment_markers"].ravel().astype(np.int64) - _MARKER_OFFSET
    return _compact(points, _counter_clockwise(points, triangles), node_label, facets, facet_label)


def _counter_clockwise(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    a, b, c = (points[triangles[:, i]] for i in range(3))
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    triangles = triangles.copy()
    triangles[cross < 0] = triangles[cross < 0][:, [0, 2, 1]]
    return triangles


def _compact(
    points: np.ndarray,
    triangles: np.ndarray,
    node_label: np.ndarray,
    facets: np.ndarray,
    facet_label: np.ndarray,
) -> TriMesh:
    """Drop vertices no triangle uses and merge coincident ones.

    Triangle keeps duplicate input vertices in its output (unused), and every solver assumes
    each node belongs to at least one element, so both kinds are removed here.
    """
    _, first, inverse = np.unique(points, axis=0, return_index=True, return_inverse=True)
    canonical = first[inverse.ravel()]  # each vertex -> the first vertex at its position
    triangles, facets = canonical[triangles], canonical[facets]
    used = np.zeros(len(points), dtype=bool)
    used[triangles.ravel()] = True
    new_index = np.cumsum(used) - 1
    keep_facet = used[facets].all(axis=1) & (facets[:, 0] != facets[:, 1])
    return TriMesh(
        points=points[used],
        triangles=new_index[triangles],
        node_label=node_label[used],
        facets=new_index[facets[keep_facet]],
        facet_label=facet_label[keep_facet],
    )
