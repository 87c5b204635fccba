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
    pts = points if points.shape[1] == 3 else np.pad(points, ((0, 0), (0, 1)))
    corners = pts[conn]  # [C, nodes, 3]
    centre = corners.mean(axis=1)
    total = np.zeros(len(conn))
    for face in _FACES[cell_type]:
        ring = corners[:, list(face)] - centre[:, None]
        for i in range(len(face)):
            a, b = ring[:, i], ring[:, (i + 1) % len(face)]
            if CELL_DIM[cell_type] == 2:
                total += 0.5 * np.linalg.norm(np.cross(a, b), axis=1)
            elif 0 < i < len(face) - 1:  # fan triangle (0, i, i+1) of the face, apex at the centre
                total += np.abs(np.einsum("ij,ij->i", ring[:, 0], np.cross(a, b))) / 6.0
    return total


def corner_measures(points: np.ndarray, cell_type: str, conn: np.ndarray) -> np.ndarray:
    """[cells, corners] signed area (2D cells of a 2D mesh) or volume (3D cells) at each
    corner; positive for a cell in VTK node order with counter-clockwise / right-handed axes."""
    columns = []
    for corner in _CORNERS[cell_type]:
        origin = points[conn[:, corner[0]]]
        axes = [points[conn[:, k]] - origin for k in corner[1:]]
        if len(axes) == 2:
            columns.append(0.5 * (axes[0][:, 0] * axes[1][:, 1] - axes[0][:, 1] * axes[1][:, 0]))
        else:
            columns.append(np.einsum("ij,ij->i", axes[0], np.cross(axes[1], axes[2])) / 6.0)
    return np.stack(columns, axis=1)


def check_geometry(points: np.ndarray, cells: list[tuple[str, np.ndarray]]) -> list[Finding]:
    """Every geometry problem of a mesh with finite points and valid connectivity."""
    extent = float(np.ptp(points, axis=0).max())
    if extent == 0.0:
        return [Finding("points", f"all {len(points)} points coincide",
                        "re-export the mesh; its coordinates are missing")] if len(points) > 1 else []
    findings = _check_scale(points, extent)
    pairs = cKDTree(points).query_pairs(DUPLICATE_TOLERANCE * extent, output_type="ndarray")
    duplicates = len(np.unique(pairs[:, 1])) if len(pairs) else 0
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
    for cell_type, conn in solid:
        cell_dim = CELL_DIM[cell_type]
        small = int((cell_measures(points, cell_type, conn) < MEASURE_TOLERANCE * extent**cell_dim).sum())
        if small:
            findings.append(Finding(
                "cells", f"{small} of {len(conn)} {cell_type} cells have zero {MEASURE_NAME[cell_dim]} "
                f"(below {MEASURE_TOLERANCE:g} of the bounding box{'^' + str(cell_dim) if cell_dim > 1 else ''})",
                "remove the degenerate cells or re-mesh"))
    oriented, inverted = _check_orientation(points, solid, MEASURE_TOLERANCE * extent**dim)
    return findings + oriented + _check_overlap(points, solid, inverted)


def _check_scale(points: np.ndarray, extent: float) -> list[Finding]:
    largest = float(np.abs(points).max())
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


def _check_orientation(points: np.ndarray, cells: list[tuple[str, np.ndarray]],
                       tolerance: float) -> tuple[list[Finding], dict[str, np.ndarray]]:
    """Cells with a corner against the majority orientation, and a mask of them per type.
    2D meshes have one orientation for all their cells; 3D cell types are judged each on its
    own (gmsh and VTK order prism nodes oppositely, and both arrive as meshio 'wedge'). 2D
    cells in 3D space (shells, boundary faces) have no sign without a normal: not judged."""
    groups = ([list(cells)] if points.shape[1] == 2 else [[(t, c)] for t, c in cells if CELL_DIM[t] == 3])
    findings, masks = [], {}
    for group in groups:
        corners = [corner_measures(points, t, c) for t, c in group]
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


def _check_overlap(points: np.ndarray, cells: list[tuple[str, np.ndarray]],
                   inverted: dict[str, np.ndarray]) -> list[Finding]:
    """Edges (2D meshes) or faces (3D cells) shared by more than two cells, and 2D edges whose
    two cells lie on the same side of it: the boundaries of two cells of one orientation run
    through a shared edge in opposite directions unless the cells overlap. Inverted cells are
    left out of the same-side count (they are reported as inverted already)."""
    if points.shape[1] == 2:
        group, side = cells, "edges"
        faces = {t: [(i, (i + 1) % c.shape[1]) for i in range(c.shape[1])] for t, c in group}
    else:
        group, side = [(t, c) for t, c in cells if CELL_DIM[t] == 3], "faces"
        faces = {t: list(_FACES[t]) for t, _ in group}
    sides = [(t, c[:, list(f)]) for t, c in group for f in faces[t]]
    shared = 0
    for size in {s.shape[1] for _, s in sides}:
        same = np.concatenate([s for _, s in sides if s.shape[1] == size])
        shared += int((_row_counts(np.sort(same, axis=1)) > 2).sum())
    findings = []
    if shared:
        findings.append(Finding("cells", f"{shared} {side} are shared by more than two cells "
                                "(overlapping or duplicated cells)", _REMESH))
    if side == "edges" and sides:
        directed = np.concatenate([s[~inverted[t]] for t, s in sides])
        folded = int((_row_counts(directed) > 1).sum())
        if folded:
            findings.append(Finding("cells", f"{folded} edges have both their cells on the same side "
                                    "(overlapping cells)", _REMESH))
    return findings


def _row_counts(rows: np.ndarray) -> np.ndarray:
    """How often each distinct row of a non-negative integer array occurs. Pairs of columns
    are packed into one int64 key first (np.unique(axis=0) sorts rows as opaque bytes, and a
    lexsort over every column is ~3x slower than over the packed pairs)."""
    base = np.int64(rows.max()) + 1 if rows.size else np.int64(1)
    cols = [rows[:, k].astype(np.int64) for k in range(rows.shape[1])]
    keys = [cols[k] * base + cols[k + 1] if k + 1 < len(cols) else cols[k] for k in range(0, len(cols), 2)]
    if len(keys) == 1:
        return np.unique(keys[0], return_counts=True)[1]
    packed = np.stack(keys, axis=1)[np.lexsort(keys[::-1])]
    starts = np.flatnonzero(np.r_[True, (packed[1:] != packed[:-1]).any(axis=1), True])
    return np.diff(starts)
