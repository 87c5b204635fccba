"""Geometry families: every outline x hole shape meshes validly, with correct boundary labels,
the same part at every mesh size, and holes that keep their margin.

The checks here recompute geometry by brute force (every point against every segment), apart
from the vectorised code under test.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from meshgnn.data.geometry import FAMILIES, HOLE_SHAPES, Part, random_part
from meshgnn.data.mesher import BOTTOM, FIRST_HOLE, INTERIOR, LEFT, RIGHT, TOP

MESH_SIZE = 0.1
MAX_HOLES = 4
MARGIN = 0.08
SEEDS = (0, 1, 2)
TOL = 1e-9


def part(family: str, shape: str, seed: int, mesh_size: float = MESH_SIZE, **kwargs) -> Part:
    return random_part(np.random.default_rng([seed, 18]), mesh_size, MAX_HOLES,
                       families=(family,), hole_shapes=(shape,), margin=MARGIN, **kwargs)


def closed_distance(points: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """Brute-force distance of each point to a closed polyline."""
    a, b = polyline, np.roll(polyline, -1, axis=0)
    d = b - a
    t = np.clip(((points[:, None] - a) * d).sum(-1) / (d**2).sum(-1), 0, 1)
    return np.linalg.norm(points[:, None] - (a + t[..., None] * d), axis=-1).min(axis=1)


def gap(p: np.ndarray, q: np.ndarray) -> float:
    return min(closed_distance(p, q).min(), closed_distance(q, p).min())


def strictly_inside_convex(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    a, b = polygon, np.roll(polygon, -1, axis=0)
    cross = (b - a)[:, 0] * (points[:, None, 1] - a[:, 1]) - (b - a)[:, 1] * (points[:, None, 0] - a[:, 0])
    return (cross > TOL).all(axis=1)


def polygon_area(polygon: np.ndarray) -> float:
    x, y = polygon.T
    return 0.5 * float((x * np.roll(y, -1) - np.roll(x, -1) * y).sum())


CASES = list(itertools.product(FAMILIES, HOLE_SHAPES, SEEDS))


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def case(request) -> Part:
    return part(*request.param)


def test_mesh_is_valid_and_conforming(case):
    mesh, length = case.mesh, case.length
    p, tri = mesh.points, mesh.triangles
    a, b, c = p[tri[:, 0]], p[tri[:, 1]], p[tri[:, 2]]
    area = 0.5 * ((b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0])
    assert (area > 0).all()
    # the triangles tile exactly the outline minus the holes
    holes_area = sum(polygon_area(h) for h in case.holes)
    assert area.sum() == pytest.approx(polygon_area(case.outer) - holes_area, rel=1e-9)

    edges = np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), axis=1)
    unique, count = np.unique(edges, axis=0, return_counts=True)
    assert set(count) <= {1, 2}
    boundary = {tuple(e) for e in unique[count == 1]}
    assert boundary == {tuple(e) for e in np.sort(mesh.facets, axis=1)}
    assert len(boundary) == len(mesh.facets)

    assert np.array_equal(np.unique(tri), np.arange(len(p)))  # no node off the triangles
    assert (p >= 0).all() and (p[:, 0] <= length).all() and (p[:, 1] <= 1).all()
    assert (case.outer >= 0).all() and (case.outer[:, 0] <= length).all() and (case.outer[:, 1] <= 1).all()
    for hole in case.holes:
        assert not strictly_inside_convex(p, hole).any()


def test_boundary_labels(case):
    mesh, length = case.mesh, case.length
    p, label = mesh.points, mesh.node_label
    left, right = p[label == LEFT], p[label == RIGHT]
    assert (left[:, 0] == 0).all() and left[:, 1].min() == 0 and left[:, 1].max() == 1
    assert (right[:, 0] == length).all() and ((right == (length, 0.0)).all(axis=1)).any()

    outer_nodes = (label >= 0) & (label < FIRST_HOLE)
    assert closed_distance(p[outer_nodes], case.outer).max() < TOL
    assert closed_distance(p[label == INTERIOR], case.outer).min() > TOL
    assert set(np.unique(label[label >= FIRST_HOLE])) == set(FIRST_HOLE + np.arange(len(case.holes)))
    for k, hole in enumerate(case.holes):
        assert closed_distance(p[label == FIRST_HOLE + k], hole).max() < TOL
        assert closed_distance(p[label == INTERIOR], hole).min() > TOL

    # facets: LEFT on x == 0, RIGHT on x == length, BOTTOM before the right edge, TOP after it
    s = case.outer_arclength(p[outer_nodes])
    s_of = dict(zip(np.flatnonzero(outer_nodes), s))
    right_start = s_of[np.flatnonzero(outer_nodes & (p == (length, 0.0)).all(axis=1))[0]]
    for (i, j), facet_label in zip(mesh.facets, mesh.facet_label):
        x = p[[i, j], 0]
        if facet_label == LEFT:
            assert (x == 0).all()
        elif facet_label == RIGHT:
            assert (x == length).all()
        elif facet_label in (BOTTOM, TOP):
            assert not (x == 0).all() and not (x == length).all()
            before = max(s_of[i], s_of[j]) <= right_start + TOL
            assert before == (facet_label == BOTTOM)
    centres = np.array([[h.x, h.y] for h in case.hole_specs]).reshape(-1, 2)
    assert not case.contains(centres).any()
    assert case.contains(p[mesh.triangles].mean(axis=1)).all()


def test_outer_arclength_walks_the_outline(case):
    """Sorted by arclength, the outer nodes are consecutive along the outer facets, starting at
    (0, 0) with 0 and closing back to it at `perimeter`."""
    mesh = case.mesh
    outer_nodes = np.flatnonzero((mesh.node_label >= 0) & (mesh.node_label < FIRST_HOLE))
    s = case.outer_arclength(mesh.points[outer_nodes])
    order = outer_nodes[np.argsort(s)]
    assert (mesh.points[order[0]] == 0).all() and np.sort(s)[0] == 0
    assert len(np.unique(s)) == len(s)
    outer_facets = mesh.facets[mesh.facet_label < FIRST_HOLE]
    walk = np.sort(np.c_[order, np.roll(order, -1)], axis=1)
    assert {tuple(e) for e in walk} == {tuple(e) for e in np.sort(outer_facets, axis=1)}
    steps = np.linalg.norm(np.diff(mesh.points[np.r_[order, order[0]]], axis=0), axis=1)
    assert np.sort(s)[-1] + steps[-1] == pytest.approx(case.perimeter, abs=1e-12)
    assert np.diff(np.sort(s)) == pytest.approx(steps[:-1], abs=1e-12)
    with pytest.raises(ValueError, match="outer boundary"):
        case.outer_arclength(np.array([[case.length / 2, 0.5]]))


def test_holes_keep_their_margin(case):
    for hole in case.holes:
        assert gap(hole, case.outer) >= MARGIN - TOL
    for first, second in itertools.combinations(case.holes, 2):
        assert gap(first, second) >= MARGIN - TOL


@pytest.mark.parametrize("family", FAMILIES)
def test_same_part_at_every_mesh_size(family):
    seed = next(s for s in range(20) if part(family, "circle", s).holes)  # a part with holes
    coarse, fine = (random_part(np.random.default_rng([seed, 18]), h, MAX_HOLES, families=(family,),
                                hole_shapes=HOLE_SHAPES) for h in (MESH_SIZE, MESH_SIZE / 2))
    assert coarse.family == fine.family == family and coarse.length == fine.length
    assert np.array_equal(coarse.outer, fine.outer)
    assert coarse.hole_specs == fine.hole_specs and len(coarse.hole_specs) > 0
    assert 3.0 < len(fine.mesh.points) / len(coarse.mesh.points) < 5.0


def test_plates_with_circles_are_rectangles_with_circular_holes():
    for seed in SEEDS:
        plate = part("plate", "circle", seed)
        assert np.array_equal(plate.outer, [[0, 0], [plate.length, 0], [plate.length, 1], [0, 1]])
        for spec, hole in zip(plate.hole_specs, plate.holes):
            assert spec.shape == "circle" and 0.08 <= spec.size <= 0.2
            assert np.hypot(*(hole - (spec.x, spec.y)).T) == pytest.approx(spec.size, rel=1e-4)


@pytest.mark.parametrize("length", [0.8, 2.4])
def test_families_hold_at_lengths_beyond_the_default_range(length):
    """Lengths 20 % beyond the default (1, 2) still make valid parts of every family."""
    for family in FAMILIES:
        p = part(family, "ellipse", 5, length_range=(length, length))
        assert p.length == length
        test_mesh_is_valid_and_conforming(p)
        test_holes_keep_their_margin(p)


@pytest.mark.parametrize("kwargs, message", [
    ({"families": ("plate", "disc")}, "unknown geometry family 'disc'; valid: plate, l_shape"),
    ({"hole_shapes": ("star",)}, "unknown hole shape 'star'; valid: circle, ellipse"),
    ({"families": ()}, "no geometry family given"),
    ({"length_range": (2.0, 1.0)}, "length_range must be"),
    ({"hole_size_range": (0.45, 0.5)}, "no hole fits"),
])
def test_bad_arguments_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message):
        random_part(np.random.default_rng(0), MESH_SIZE, 2, **kwargs)
