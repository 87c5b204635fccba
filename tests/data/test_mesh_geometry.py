"""The vectorised geometry checks against the formulation they replaced, and every kind of
bad mesh they reject, with its message.

The reference below is the old, obviously-right formulation (np.unique(axis=0) over edge and
face rows, a k-d tree over all points, np.cross on padded points); the meshes are small
generated grids with defects injected at random, so a mismatch in any count fails.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import Delaunay, cKDTree

from meshgnn.data import mesh_geometry as geometry
from meshgnn.data.mesh_geometry import cell_measures, check_geometry, corner_measures


def reference_measures(points, cell_type, conn):
    """Fan areas/volumes from the centroid, on points padded to 3D, with np.cross."""
    pts = points if points.shape[1] == 3 else np.pad(points, ((0, 0), (0, 1)))
    corners = pts[conn]
    centre = corners.mean(axis=1)
    total = np.zeros(len(conn))
    for face in geometry._FACES[cell_type]:
        ring = corners[:, list(face)] - centre[:, None]
        for i in range(len(face)):
            a, b = ring[:, i], ring[:, (i + 1) % len(face)]
            if geometry.CELL_DIM[cell_type] == 2:
                total += 0.5 * np.linalg.norm(np.cross(a, b), axis=1)
            elif 0 < i < len(face) - 1:
                total += np.abs(np.einsum("ij,ij->i", ring[:, 0], np.cross(a, b))) / 6.0
    return total


def reference_corners(points, cell_type, conn):
    columns = []
    for corner in geometry._CORNERS[cell_type]:
        origin = points[conn[:, corner[0]]]
        axes = [points[conn[:, k]] - origin for k in corner[1:]]
        if len(axes) == 2:
            columns.append(0.5 * (axes[0][:, 0] * axes[1][:, 1] - axes[0][:, 1] * axes[1][:, 0]))
        else:
            columns.append(np.einsum("ij,ij->i", axes[0], np.cross(axes[1], axes[2])) / 6.0)
    return np.stack(columns, axis=1)


def reference_duplicates(points, radius):
    pairs = cKDTree(points).query_pairs(radius, output_type="ndarray")
    return len(np.unique(pairs[:, 1])) if len(pairs) else 0


def reference_edges(cells, inverted):
    """(edges in more than two cells, directed edges in more than one non-inverted cell)."""
    sides = [(t, c[:, [i, (i + 1) % c.shape[1]]]) for t, c in cells for i in range(c.shape[1])]
    undirected = np.sort(np.concatenate([s for _, s in sides]), axis=1)
    shared = int((np.unique(undirected, axis=0, return_counts=True)[1] > 2).sum())
    directed = np.concatenate([s[~inverted[t]] for t, s in sides])
    return shared, int((np.unique(directed, axis=0, return_counts=True)[1] > 1).sum())


def grid(n, rng, jitter=0.2):
    """n x n jittered squares: half split into counter-clockwise triangles, half quads."""
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    points = np.stack([i.ravel(), j.ravel()], axis=1) + rng.uniform(-jitter, jitter, ((n + 1) ** 2, 2))
    node = lambda a, b: a * (n + 1) + b  # noqa: E731
    tris, quads = [], []
    for a in range(n):
        for b in range(n):
            p, q, r, s = node(a, b), node(a + 1, b), node(a + 1, b + 1), node(a, b + 1)
            if (a + b) % 2:
                quads.append((p, q, r, s))
            else:
                tris += [(p, q, r), (p, r, s)]
    return points / n, [("triangle", np.array(tris)), ("quad", np.array(quads))]


def inject_2d(points, cells, rng):
    """Random defects: flipped cells, duplicated cells, a cell over others, duplicate points."""
    cells = [(t, c.copy()) for t, c in cells]
    tris = cells[0][1]
    flip = rng.choice(len(tris), rng.integers(0, 4), replace=False)
    tris[flip] = tris[flip][:, ::-1]
    extra = [tris[rng.choice(len(tris), rng.integers(0, 3))], tris[rng.choice(len(tris), rng.integers(0, 2))][:, [1, 2, 0]]]
    cells[0] = ("triangle", np.concatenate([tris, *extra]))
    copies = rng.choice(len(points), rng.integers(0, 5))
    moved = points[copies] + rng.choice([0.0, 1e-15, 1e-3], (len(copies), 1))
    return np.concatenate([points, moved]), cells


def assert_same_as_reference(points, cells):
    dim = points.shape[1]
    extent = float(np.ptp(points, axis=0).max())
    radius = geometry.DUPLICATE_TOLERANCE * extent
    assert geometry._duplicate_points(points, radius, float(np.abs(points).max())) == \
        reference_duplicates(points, radius)
    for cell_type, conn in cells:
        np.testing.assert_allclose(cell_measures(points, cell_type, conn),
                                   reference_measures(points, cell_type, conn), rtol=1e-9, atol=1e-15)
        if dim == 2 or geometry.CELL_DIM[cell_type] == 3:
            np.testing.assert_allclose(corner_measures(points, cell_type, conn),
                                       reference_corners(points, cell_type, conn), rtol=1e-9, atol=1e-15)
    tolerance = geometry.MEASURE_TOLERANCE * extent**dim
    coords = {t: geometry._gather(points, c) for t, c in cells}
    _, inverted = geometry._check_orientation(dim, cells, coords, tolerance)
    if dim == 2:
        assert geometry._edge_overlaps(len(points), cells, inverted) == reference_edges(cells, inverted)
    else:
        for cell_type, conn in cells:
            for face in geometry._FACES[cell_type]:
                rows = np.sort(conn[:, list(face)], axis=1)
                np.testing.assert_array_equal(np.sort(geometry._row_counts(rows, len(points))),
                                              np.sort(np.unique(rows, axis=0, return_counts=True)[1]))


@pytest.mark.parametrize("seed", range(6))
def test_2d_checks_count_what_the_reference_counts(seed):
    rng = np.random.default_rng(seed)
    jitter = 0.0 if seed % 3 == 2 else 0.2  # an exact lattice: rows of equal x and y
    points, cells = inject_2d(*grid(int(rng.integers(3, 12)), rng, jitter), rng)
    if seed % 3 == 1:
        points = points + 1e5  # far from the origin: the projection's rounding slack matters
    assert_same_as_reference(points, cells)


@pytest.mark.parametrize("seed", range(3))
def test_3d_checks_count_what_the_reference_counts(seed):
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 1, (60, 3))
    tets = Delaunay(points).simplices
    tets = np.concatenate([tets, tets[rng.choice(len(tets), 3)]])
    tets[rng.choice(len(tets), 2)] = tets[rng.choice(len(tets), 2)][:, [1, 0, 2, 3]]
    i, j, k = np.meshgrid(*[np.arange(3)] * 3, indexing="ij")
    lattice = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1) + 2.0
    hexes = np.array([[0, 9, 12, 3, 1, 10, 13, 4], [0, 9, 12, 3, 1, 10, 13, 4]]) + 60
    assert_same_as_reference(np.concatenate([points, lattice, points[:2] + 1e-14]), [("tetra", tets),
                                                                                     ("hexahedron", hexes)])


SQUARE = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)
TWO = np.array([[0, 1, 2], [0, 2, 3]])
TET = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=np.float64)
SHARED_EDGE = ("cells", "1 edges are shared by more than two cells (overlapping or duplicated cells)")
SHARED_FACE = ("cells", "1 faces are shared by more than two cells (overlapping or duplicated cells)")
REMESH = "fix the node order of those cells or re-mesh (check the export for folded elements)"


@pytest.mark.parametrize("points,cells,expected", [
    (np.zeros((3, 2)), [("triangle", TWO[:1])], [("points", "all 3 points coincide")]),
    (np.vstack([SQUARE, SQUARE[1:2] + 1e-14]), [("triangle", TWO)],
     [("points", "1 duplicate points (same coordinates as another point, within 1e-12 of the mesh size)")]),
    (SQUARE, [("triangle", TWO), ("tetra", np.array([[0, 1, 2, 3]]))],
     [("cells", "1 tetra cells in a flat mesh (all z = 0)")]),
    (SQUARE, [("triangle", np.vstack([TWO, [0, 1, 1]]))],
     [("cells", "1 of 3 triangle cells have zero area (below 1e-12 of the bounding box^2)"), SHARED_EDGE,
      ("cells", "1 edges have both their cells on the same side (overlapping cells)")]),
    (TET, [("tetra", np.array([[0, 1, 2, 3], [0, 1, 2, 2]]))],
     [("cells", "1 of 2 tetra cells have zero volume (below 1e-12 of the bounding box^3)"), SHARED_FACE]),
    (np.vstack([SQUARE, [[2, 0], [2, 1]]]), [("triangle", np.array([[0, 1, 2], [0, 2, 3], [1, 4, 5], [1, 5, 2]])),
                                               ("quad", np.array([[1, 2, 5, 4]]))],
     [("cells", "1 of 1 quad cells are inverted, concave or self-intersecting (a corner's signed area is "
                "against the orientation of 4 other cells)"), SHARED_EDGE]),
    (np.vstack([SQUARE, [[0.5, 2]]]), [("triangle", np.array([[0, 1, 2], [0, 2, 3], [3, 2, 4], [0, 2, 4]]))],
     [SHARED_EDGE, ("cells", "2 edges have both their cells on the same side (overlapping cells)")]),
    (np.vstack([SQUARE, [[0.5, 0.2]]]), [("triangle", np.array([[0, 1, 2], [0, 2, 3], [0, 4, 2]]))],
     [SHARED_EDGE, ("cells", "1 edges have both their cells on the same side (overlapping cells)")]),
    (TET, [("tetra", np.array([[0, 1, 2, 3], [4, 2, 1, 3], [1, 2, 3, 4]]))],
     [SHARED_FACE]),
    (SQUARE * 1e38, [("triangle", TWO)],
     [("points", "coordinates reach 1e+38, beyond the 32-bit floats graphs are stored in (edge vectors must "
                 "stay below 8.51e+37)")]),
    (SQUARE * 1e30, [("triangle", TWO)], [("coordinate scale", "extent 1e+30")]),
    (SQUARE, [("triangle", TWO)], []),
])
def test_every_kind_of_bad_mesh_is_named(points, cells, expected):
    """Each finding check_geometry makes, exactly as the checks before vectorisation worded it
    (inverted tetrahedra and folded triangles through files: test_mesh_checks)."""
    findings = check_geometry(points, cells)
    assert [(f.what, f.message) for f in findings] == expected
    assert all(f.warning == (f.what == "coordinate scale") for f in findings)
    assert all(f.fix == REMESH for f in findings if "inverted" in f.message or "side" in f.message)


def test_edge_tallies_beyond_one_int64_take_more_passes():
    """Past 2^21 rows the count and two flag fields no longer fit one int64: a second pass."""
    rng = np.random.default_rng(0)
    rows, nodes = 2**21 + 5, 3000
    lo, hi = rng.integers(0, nodes, rows), rng.integers(0, nodes, rows)
    flags = [rng.random(rows) < 0.3, rng.random(rows) < 0.5]
    _, pair = np.unique(lo * nodes + hi, return_inverse=True)
    tallies = geometry._pair_tallies(lo, hi, nodes, flags)
    for tally, weights in zip(tallies, [None, *flags]):
        np.testing.assert_array_equal(tally, np.bincount(pair, weights))
