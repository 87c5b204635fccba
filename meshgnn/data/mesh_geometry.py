"""Geometry checks of one mesh: what makes its graph wrong, and what only looks unusual.

Errors (the graph would be garbage): coincident or duplicate points, zero-measure cells,
inverted cells (signed area or volume at a corner against the mesh's own orientation, so a
wholly clockwise mesh is fine), overlapping cells (a 2D edge whose two cells lie on the same
side of it, an edge or face shared by more than two cells) and coordinates beyond float32,
which the graphs are stored in. A folded or overlapping cell joins nodes across the fold: its
edges, edge lengths and Laplacian describe a domain that does not exist, and no amount of
normalisation repairs that.

Warnings (a user may mean it): a coordinate extent outside SCALE_RANGE. Training normalises
coordinates, so a micro-scale mesh trains the same; a 1e30 extent is more likely a unit bug.

Everything is vectorised over cells (folders hold meshes of 1e5+ nodes); loops run only over
cell types and the few corners of a cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

DUPLICATE_TOLERANCE = 1e-12  # points closer than this times the bounding box are duplicates
MEASURE_TOLERANCE = 1e-12  # cells smaller than this times bbox^cell_dim have zero measure
SCALE_RANGE = (1e-6, 1e6)  # coordinate extents outside this (in the file's units) are warned about
FLOAT32_LIMIT = float(np.finfo(np.float32).max) / 4  # relative positions and lengths stay finite

CELL_DIM = {"line": 1, "triangle": 2, "quad": 2, "tetra": 3, "hexahedron": 3, "wedge": 3, "pyramid": 3}
# Faces of every cell type whose measure is checked (2D cells: the boundary polygon; 3D cells:
# polygons with the nodes in order).
_FACES: dict[str, tuple[tuple[int, ...], ...]] = {
    "triangle": ((0, 1, 2),),
    "quad": ((0, 1, 2, 3),),
    "tetra": ((0, 1, 2), (0, 1, 3), (1, 2, 3), (0, 2, 3)),
    "hexahedron": ((0, 1, 2, 3), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)),
    "wedge": ((0, 1, 2), (3, 4, 5), (0, 1, 4, 3), (1, 2, 5, 4), (2, 0, 3, 5)),
    "pyramid": ((0, 1, 2, 3), (0, 1, 4), (1, 2, 4), (2, 3, 4), (3, 0, 4)),
}
# The corners of every cell: a corner node and its neighbours, in the order whose signed
# area (2D: triangle) or volume (3D: tetrahedron) is positive for a cell in VTK/meshio node
# order. A valid cell has every corner of one sign; a concave, self-intersecting or
# inverted one has a corner of the other sign.
_CORNERS: dict[str, tuple[tuple[int, ...], ...]] = {
    "triangle": ((0, 1, 2),),
    "quad": ((0, 1, 3), (1, 2, 0), (2, 3, 1), (3, 0, 2)),
    "tetra": ((0, 1, 2, 3),),
    "hexahedron": ((0, 1, 3, 4), (1, 2, 0, 5), (2, 3, 1, 6), (3, 0, 2, 7),
                   (4, 7, 5, 0), (5, 4, 6, 1), (6, 5, 7, 2), (7, 6, 4, 3)),
    "wedge": ((0, 1, 2, 3), (1, 2, 0, 4), (2, 0, 1, 5), (3, 5, 4, 0), (4, 3, 5, 1), (5, 4, 3, 2)),
    "pyramid": ((0, 1, 3, 4), (1, 2, 0, 4), (2, 3, 1, 4), (3, 0, 2, 4)),
}
MEASURE_NAME = {1: "length", 2: "area", 3: "volume"}
_REMESH = "fix the node order of those cells or re-mesh (check the export for folded elements)"


@dataclass(frozen=True)
class Finding:
    """One thing wrong with a mesh: where (`what`), the problem, and the fix. A `warning`
    does not block training; the folder report counts the files it affects."""

    what: str
    message: str
    fix: str
    warning: bool = False


def cell_measures(points: np.ndarray, cell_type: str, conn: np.ndarray) -> np.ndarray:
    """Area (2D cells) or volume (3D cells) of every cell, from the fan of triangles or
    tetrahedra joining the cell's centroid to its boundary (exact for convex cells, and zero
    for any degenerate cell, whatever the node orientation)."""
    return _cell_measures(_gather(points, conn), cell_type)


def corner_measures(points: np.ndarray, cell_type: str, conn: np.ndarray) -> np.ndarray:
    """[cells, corners] signed area (2D cells of a 2D mesh) or volume (3D cells) at each
    corner; positive for a cell in VTK node order with counter-clockwise / right-handed axes."""
    return _corner_measures(_gather(points, conn), cell_type)


Coords = list[np.ndarray]  # one [nodes, cells] array per coordinate axis (rows contiguous)


def _gather(points: np.ndarray, conn: np.ndarray) -> Coords:
    """The cells' node coordinates, one axis at a time and node-major: gathering from a
    contiguous column is ~3x faster than gathering [N, dim] rows, and every product below
    runs on contiguous 1D rows (np.cross or strided [C, k] columns cost more than the
    arithmetic itself)."""
    nodes = np.ascontiguousarray(conn.T)
    return [np.ascontiguousarray(points[:, k])[nodes] for k in range(points.shape[1])]


def _cross(a: Coords, b: Coords) -> Coords:
    """a x b of 2D (the z component only) or 3D vectors given as coordinate lists."""
    if len(a) == 2:
        return [a[0] * b[1] - a[1] * b[0]]
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


def _dot(a: Coords, b: Coords) -> np.ndarray:
    return sum((x * y for x, y in zip(a, b)), np.zeros_like(a[0]))


def _cell_measures(coords: Coords, cell_type: str) -> np.ndarray:
    centred = [c - c.mean(axis=0) for c in coords]
    total = np.zeros(coords[0].shape[1])
    for face in _FACES[cell_type]:
        ring = [[c[k] for c in centred] for k in face]
        for i in range(len(face)):
            normal = _cross(ring[i], ring[(i + 1) % len(face)])
            if CELL_DIM[cell_type] == 2:
                total += 0.5 * (np.abs(normal[0]) if len(normal) == 1 else np.sqrt(_dot(normal, normal)))
            elif 0 < i < len(face) - 1:  # fan triangle (0, i, i+1) of the face, apex at the centre
                total += np.abs(_dot(ring[0], normal)) / 6.0
    return total


def _corner_measures(coords: Coords, cell_type: str) -> np.ndarray:
    columns = []
    for corner in _CORNERS[cell_type]:
        origin = [c[corner[0]] for c in coords]
        axes = [[c[k] - o for c, o in zip(coords, origin)] for k in corner[1:]]
        if len(axes) == 2:
            columns.append(0.5 * _cross(axes[0][:2], axes[1][:2])[0])
        else:
            columns.append(_dot(axes[0], _cross(axes[1], axes[2])) / 6.0)
    return np.stack(columns, axis=1)


def check_geometry(points: np.ndarray, cells: list[tuple[str, np.ndarray]]) -> list[Finding]:
    """Every geometry problem of a mesh with finite points and valid connectivity."""
    columns = [points[:, k] for k in range(points.shape[1])]
    lows, highs = np.array([c.min() for c in columns]), np.array([c.max() for c in columns])
    extent = float((highs - lows).max())
    if extent == 0.0:
        return [Finding("points", f"all {len(points)} points coincide",
                        "re-export the mesh; its coordinates are missing")] if len(points) > 1 else []
    largest = float(max(np.abs(lows).max(), np.abs(highs).max()))
    findings = _check_scale(largest, extent)
    duplicates = _duplicate_points(points, DUPLICATE_TOLERANCE * extent, largest)
    if duplicates:
        findings.append(Finding(
            "points", f"{duplicates} duplicate points (same coordinates as another point, within "
            f"{DUPLICATE_TOLERANCE:g} of the mesh size)", "merge duplicate points, e.g. "
            "pyvista.read(f).clean().save(f), or mesh without seams (gmsh: Coherence)"))
    dim = points.shape[1]
    solid = [(t, c) for t, c in cells if t in _FACES]
    for cell_type, conn in solid:
        if CELL_DIM[cell_type] > dim:
            findings.append(Finding("cells", f"{len(conn)} {cell_type} cells in a flat mesh (all z = 0)",
                                    "write the 3D coordinates, or use 2D cells for a 2D mesh"))
    solid = [(t, c) for t, c in solid if CELL_DIM[t] <= dim]
    coords = {t: _gather(points, c) for t, c in solid}
    for cell_type, conn in solid:
        cell_dim = CELL_DIM[cell_type]
        small = int((_cell_measures(coords[cell_type], cell_type) < MEASURE_TOLERANCE * extent**cell_dim).sum())
        if small:
            findings.append(Finding(
                "cells", f"{small} of {len(conn)} {cell_type} cells have zero {MEASURE_NAME[cell_dim]} "
                f"(below {MEASURE_TOLERANCE:g} of the bounding box{'^' + str(cell_dim) if cell_dim > 1 else ''})",
                "remove the degenerate cells or re-mesh"))
    oriented, inverted = _check_orientation(dim, solid, coords, MEASURE_TOLERANCE * extent**dim)
    return findings + oriented + _check_overlap(len(points), dim, solid, inverted)


# A direction no two lattice points project to the same place along (1, sqrt 2, sqrt 3 are
# independent over the rationals), so structured grids never look like duplicates along it.
_PROJECTION = np.array([1.0, np.sqrt(2.0), np.sqrt(3.0)])


def _duplicate_points(points: np.ndarray, radius: float, largest: float) -> int:
    """How many points lie within `radius` of a point listed before them (cKDTree.query_pairs'
    second indices). Two such points project within radius * |d| of each other along `d`, and so
    do all points sorted between them; only runs of such close projections (none in a valid
    mesh) go to the tree, which costs ~5x the sort. The slack covers the projection's rounding."""
    direction = _PROJECTION[:points.shape[1]]
    along = points @ direction
    eps = np.finfo(np.float64).eps
    slack = (radius * np.linalg.norm(direction) + 4 * len(direction) * eps * largest * direction.sum()) * (1 + 1e-9)
    if not (np.diff(np.sort(along)) <= slack).any():
        return 0
    order = np.argsort(along)
    close = np.diff(along[order]) <= slack
    near = np.zeros(len(points), dtype=bool)
    near[order[1:][close]] = near[order[:-1][close]] = True
    candidates = np.flatnonzero(near)  # ascending, so query_pairs' (i < j) order is kept
    pairs = cKDTree(points[candidates]).query_pairs(radius, output_type="ndarray")
    return len(np.unique(candidates[pairs[:, 1]])) if len(pairs) else 0


def _check_scale(largest: float, extent: float) -> list[Finding]:
    if largest > FLOAT32_LIMIT:
        return [Finding("points", f"coordinates reach {largest:.3g}, beyond the 32-bit floats graphs "
                        f"are stored in (edge vectors must stay below {FLOAT32_LIMIT:.3g})",
                        "write the coordinates in a sensible unit (e.g. metres or millimetres)")]
    low, high = SCALE_RANGE
    if low <= extent <= high:
        return []
    return [Finding("coordinate scale", f"extent {extent:.3g}",
                    f"outside {low:g}..{high:g} in the file's units; training normalises coordinates, so "
                    "this is fine if intended (a micro- or astronomic-scale mesh), otherwise check the "
                    "export's units", warning=True)]


def _check_orientation(dim: int, cells: list[tuple[str, np.ndarray]], coords: dict[str, Coords],
                       tolerance: float) -> tuple[list[Finding], dict[str, np.ndarray]]:
    """Cells with a corner against the majority orientation, and a mask of them per type.
    2D meshes have one orientation for all their cells; 3D cell types are judged each on its
    own (gmsh and VTK order prism nodes oppositely, and both arrive as meshio 'wedge'). 2D
    cells in 3D space (shells, boundary faces) have no sign without a normal: not judged."""
    groups = ([list(cells)] if dim == 2 else [[(t, c)] for t, c in cells if CELL_DIM[t] == 3])
    findings, masks = [], {}
    for group in groups:
        corners = [_corner_measures(coords[t], t) for t, _ in group]
        positive = sum(int((m > tolerance).all(axis=1).sum()) for m in corners)
        negative = sum(int((m < -tolerance).all(axis=1).sum()) for m in corners)
        sign = 1.0 if positive >= negative else -1.0
        for (cell_type, conn), measures in zip(group, corners):
            masks[cell_type] = (sign * measures < -tolerance).any(axis=1)
            inverted = int(masks[cell_type].sum())
            if inverted:
                findings.append(Finding(
                    "cells", f"{inverted} of {len(conn)} {cell_type} cells are inverted, concave or "
                    f"self-intersecting (a corner's signed {MEASURE_NAME[CELL_DIM[cell_type]]} is against "
                    f"the orientation of {max(positive, negative)} other cells)", _REMESH))
    return findings, masks


def _check_overlap(num_points: int, dim: int, cells: list[tuple[str, np.ndarray]],
                   inverted: dict[str, np.ndarray]) -> list[Finding]:
    """Edges (2D meshes) or faces (3D cells) shared by more than two cells, and 2D edges whose
    two cells lie on the same side of it: the boundaries of two cells of one orientation run
    through a shared edge in opposite directions unless the cells overlap. Inverted cells are
    left out of the same-side count (they are reported as inverted already)."""
    if dim == 2:
        shared, folded = _edge_overlaps(num_points, cells, inverted)
        side = "edges"
    else:
        sides = [c[:, list(f)] for t, c in cells if CELL_DIM[t] == 3 for f in _FACES[t]]
        shared, folded, side = 0, 0, "faces"
        for size in {s.shape[1] for s in sides}:
            same = np.concatenate([s for s in sides if s.shape[1] == size])
            shared += int((_row_counts(np.sort(same, axis=1), num_points) > 2).sum())
    findings = []
    if shared:
        findings.append(Finding("cells", f"{shared} {side} are shared by more than two cells "
                                "(overlapping or duplicated cells)", _REMESH))
    if folded:
        findings.append(Finding("cells", f"{folded} edges have both their cells on the same side "
                                "(overlapping cells)", _REMESH))
    return findings


def _edge_overlaps(num_points: int, cells: list[tuple[str, np.ndarray]],
                   inverted: dict[str, np.ndarray]) -> tuple[int, int]:
    """(edges in more than two cells, directed edges in more than one non-inverted cell) of a
    2D mesh, from one tally per undirected edge (lo, hi) of: its cells, and its non-inverted
    cells running lo -> hi and hi -> lo."""
    if not cells:
        return 0, 0
    index = np.int32 if num_points < 2**31 else np.int64  # half the memory traffic; scipy's own index type
    nodes = [c.T.astype(index) for _, c in cells]  # edge k of every cell, then edge k + 1
    start = np.concatenate([n.ravel() for n in nodes])
    end = np.concatenate([np.roll(n, -1, axis=0).ravel() for n in nodes])
    kept = ~np.concatenate([np.tile(inverted[t], c.shape[1]) for t, c in cells])
    forward = start < end
    count, ahead, back = _pair_tallies(np.minimum(start, end), np.maximum(start, end), num_points,
                                       [kept & forward, kept & ~forward])
    return int((count > 2).sum()), int((ahead > 1).sum() + (back > 1).sum())


def _pair_tallies(lo: np.ndarray, hi: np.ndarray, num_nodes: int, flags: list[np.ndarray]) -> list[np.ndarray]:
    """For every distinct (lo, hi) pair of node indices, in one order: how many rows have it,
    then for each flag how many of those rows have it set. The tallies are bit fields of one
    int64 weight summed by scipy's COO -> CSR conversion (a linear bucket pass by `lo`, then
    sorts of the few entries per node: ~3x faster than one np.sort of packed keys). A field
    holds any count up to len(lo); flags that do not fit beside the count take another pass."""
    bits = max(len(lo).bit_length(), 1)
    mask = (1 << bits) - 1
    per_pass = 63 // bits - 1
    tallies: list[np.ndarray] = []
    for first in range(0, len(flags), per_pass):
        chunk = flags[first:first + per_pass]
        weights = np.ones(len(lo), dtype=np.int64)
        for k, flag in enumerate(chunk, 1):
            weights += flag * np.int64(1 << (k * bits))
        summed = sparse.csr_array((weights, (lo, hi)), shape=(num_nodes, num_nodes))
        summed.sum_duplicates()
        if not tallies:
            tallies.append(summed.data & mask)
        tallies += [(summed.data >> (k * bits)) & mask for k in range(1, len(chunk) + 1)]
    return tallies


def _row_counts(rows: np.ndarray, num_nodes: int) -> np.ndarray:
    """How often each distinct row of node indices occurs, from ONE sort: rows of up to three
    nodes packed into one int64 key (when num_nodes^3 fits), longer rows as packed pairs
    sorted by lexsort (np.unique(axis=0) sorts rows as opaque bytes, ~3x slower)."""
    width = rows.shape[1]
    per_key = width if num_nodes ** width < 2**63 else 2
    cols = [rows[:, k].astype(np.int64) for k in range(width)]
    keys = []
    for k in range(0, width, per_key):
        key = cols[k]
        for col in cols[k + 1:k + per_key]:
            key = key * num_nodes + col
        keys.append(key)
    if len(keys) == 1:
        packed = np.sort(keys[0])
        starts = np.flatnonzero(np.r_[True, packed[1:] != packed[:-1], True])
    else:
        packed = np.stack(keys, axis=1)[np.lexsort(keys[::-1])]
        starts = np.flatnonzero(np.r_[True, (packed[1:] != packed[:-1]).any(axis=1), True])
    return np.diff(starts)
