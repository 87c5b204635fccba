"""benchmarks/error_location.py on hand-made meshes whose answer is known: an L-shape of three
unit squares (one re-entrant corner) and a 5 x 5 grid of squares."""

import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

from error_location import boundary_geometry, corners, locate, summarise  # noqa: E402

TYPES = ("interior", "clamped", "loaded", "free")


def grid(n: int, drop=lambda i, j: False) -> tuple[np.ndarray, list]:
    """Nodes (i, j), i, j in 0..n, and two triangles per kept unit square, half of them clockwise."""
    points = np.array([[i, j] for j in range(n + 1) for i in range(n + 1)], dtype=float)
    node = lambda i, j: j * (n + 1) + i  # noqa: E731
    tris = []
    for j in range(n):
        for i in range(n):
            if not drop(i, j):
                a, b, c, d = node(i, j), node(i + 1, j), node(i + 1, j + 1), node(i, j + 1)
                tris += [[a, b, c], [a, d, c]]  # the second one clockwise
    return points, [("triangle", np.array(tris))]


def test_an_l_shape_has_six_corners_one_of_them_re_entrant():
    points, cells = grid(2, drop=lambda i, j: i == 1 and j == 1)
    boundary, _, h = boundary_geometry(points, cells)
    assert len(boundary) == 8 and h == pytest.approx((10 + 3 * np.sqrt(2)) / 13)  # 10 sides, 3 diagonals
    corner, reentrant = corners(points, boundary)
    as_xy = lambda nodes: sorted(map(tuple, points[nodes].tolist()))  # noqa: E731
    assert as_xy(corner) == sorted([(0, 0), (2, 0), (2, 1), (1, 1), (1, 2), (0, 2)])
    assert as_xy(reentrant) == [(1, 1)]


def test_error_only_on_one_node_type_has_all_the_share_there():
    points, cells = grid(5)
    node_type = np.where((points[:, 0] % 5 == 0) | (points[:, 1] % 5 == 0), 3, 0)
    node_type[points[:, 0] == 0] = 1  # the left side clamped
    true = np.stack([points[:, 0] + 1, points[:, 1]], 1)
    pred = true.copy()
    pred[node_type == 1] += 0.5
    one = locate(points, cells, node_type, pred, true, TYPES)
    out = summarise([one, locate(points, cells, node_type, true * 2 + (pred - true), true * 2, TYPES)])
    shares = {name: r["error_share"] for name, r in out["regions"].items()}
    assert shares["type clamped"] == pytest.approx(1.0)
    assert shares["type interior"] == shares["type loaded"] == shares["type free"] == 0
    assert sum(shares[f"type {t}"] for t in TYPES) == pytest.approx(1.0, abs=1e-12)
    bands = [name for name in shares if name.startswith("boundary dist")]
    assert shares["boundary dist < 2h"] == pytest.approx(1.0) and sum(shares[b] for b in bands) == pytest.approx(1.0)
    # the grid's four corners; the clamped ones are the left two, which all the error is near
    assert shares["< 3h of clamped corner"] == pytest.approx(1.0)
    assert out["regions"]["< 3h of re-entrant corner"]["node_share"] == 0
    clamped = true[node_type == 1]
    ref = (clamped ** 2).sum() * 5  # the second sample's truth is twice the first's
    assert out["regions"]["type clamped"]["rel_l2"] == pytest.approx(np.sqrt(2 * 0.5 ** 2 * len(clamped) * 2 / ref))
    # the same error on a truth twice as large: the sample with the larger truth has the smaller rel L2
    assert out["worst_10pct_share_of_mean_rel_l2"] == pytest.approx(2 / 3)
    assert out["spearman_rel_l2_vs_rms_true"] is None  # under 3 samples


def test_spearman_is_minus_one_when_only_small_samples_err_badly():
    points, cells = grid(2)
    node_type = np.zeros(len(points), dtype=int)
    true = np.ones((len(points), 1))
    located = [locate(points, cells, node_type, true * s + 0.1, true * s, TYPES) for s in (1, 2, 4, 8)]
    assert summarise(located)["spearman_rel_l2_vs_rms_true"] == pytest.approx(-1.0)
