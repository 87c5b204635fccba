"""Where a model's error sits on its meshes (issue #18: find where elasticity2d's displacement
error sits before changing anything): the squared error sum |pred - true|^2 (vector fields by
norm) and the rel L2 restricted to each node type, to bands of distance to the boundary and to
the nodes near corners; and per sample whether the error concentrates in low-magnitude samples
and in a few bad ones.

`locate` takes one 2D sample's arrays and returns its region sums; `summarise` pools a set's.
Node types and distance bands each partition the nodes (their shares sum to 1); the corner
regions overlap them and each other.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial import cKDTree
from scipy.stats import spearmanr

# Distance bands to the nearest boundary node in multiples of h, the sample's mean edge length:
# (name, lower bound, upper bound).
BANDS = (("boundary dist < 2h", 0.0, 2.0), ("boundary dist 2-5h", 2.0, 5.0), ("boundary dist > 5h", 5.0, np.inf))
CORNER_TURN_DEG = 30.0  # a boundary node whose two boundary edges turn by more is a corner
CORNER_RADIUS_H = 3.0  # "near a corner": within this many h of one
WORST_FRACTION = 0.1  # the worst samples whose share of the set's mean rel L2 is reported
# Corner cells of each 2D cell type, in their boundary order (higher-order nodes are midpoints).
POLYGON_CORNERS = {"triangle": 3, "triangle6": 3, "quad": 4, "quad8": 4, "quad9": 4}


def boundary_geometry(points: np.ndarray, cells: list[tuple[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, float]:
    """(boundary edges [E, 2] oriented with the material on their left, every unique edge's
    lengths, h = their mean); a boundary edge is one that only one cell has."""
    directed = []
    for cell_type, conn in cells:
        if cell_type not in POLYGON_CORNERS:
            continue
        poly = np.asarray(conn)[:, :POLYGON_CORNERS[cell_type]]
        a, b = poly, np.roll(poly, -1, axis=1)
        x, y = points[a, 0], points[a, 1]
        area = (x * points[b, 1] - points[b, 0] * y).sum(1)
        flip = area < 0  # clockwise cells: reversed so that every cell's material is on the left
        a, b = np.where(flip[:, None], b, a), np.where(flip[:, None], a, b)
        directed.append(np.stack([a.ravel(), b.ravel()], 1))
    if not directed:
        raise ValueError(f"no 2D cells ({', '.join(POLYGON_CORNERS)}) among {[t for t, _ in cells]}")
    edges = np.concatenate(directed)
    undirected, inverse, counts = np.unique(np.sort(edges, 1), axis=0, return_inverse=True, return_counts=True)
    lengths = np.linalg.norm(points[undirected[:, 0], :2] - points[undirected[:, 1], :2], axis=1)
    return edges[counts[inverse.ravel()] == 1], lengths, float(lengths.mean())


def corners(points: np.ndarray, boundary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(corner nodes, re-entrant corner nodes): boundary nodes where the boundary turns by
    more than CORNER_TURN_DEG; re-entrant where the material's angle exceeds 180 degrees."""
    incoming = np.full(len(points), -1)
    incoming[boundary[:, 1]] = boundary[:, 0]
    node, after = boundary[:, 0], boundary[:, 1]
    before = incoming[node]
    ok = before >= 0
    node, after, before = node[ok], after[ok], before[ok]
    u, v = points[node, :2] - points[before, :2], points[after, :2] - points[node, :2]
    turn = np.degrees(np.arctan2(u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0], (u * v).sum(1)))
    # material on the left: a left turn (turn > 0) is convex, a right turn re-entrant
    return node[np.abs(turn) > CORNER_TURN_DEG], node[turn < -CORNER_TURN_DEG]


def regions(points: np.ndarray, cells: list[tuple[str, np.ndarray]], node_type: np.ndarray,
            node_types: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Region name -> boolean node mask: each node type ("type <name>"), each distance band,
    and within CORNER_RADIUS_H h of any corner, a re-entrant one, and a clamped one (a corner
    whose node type is "clamped", where the source has that type)."""
    boundary, _, h = boundary_geometry(points, cells)
    masks = {f"type {name}": node_type == i for i, name in enumerate(node_types)}
    boundary_nodes = np.unique(boundary)
    dist = cKDTree(points[boundary_nodes, :2]).query(points[:, :2])[0] / h
    masks.update({name: (dist >= lo) & (dist < hi) for name, lo, hi in BANDS})
    corner, reentrant = corners(points, boundary)
    near = {"any corner": corner, "re-entrant corner": reentrant}
    if "clamped" in node_types:
        near["clamped corner"] = corner[node_type[corner] == node_types.index("clamped")]
    for name, nodes in near.items():
        mask = np.zeros(len(points), dtype=bool)
        if len(nodes):
            hits = cKDTree(points[:, :2]).query_ball_point(points[nodes, :2], CORNER_RADIUS_H * h)
            mask[np.concatenate([np.asarray(hit, dtype=np.int64) for hit in hits])] = True
        masks[f"< {CORNER_RADIUS_H:g}h of {name}"] = mask
    return masks


def locate(points: np.ndarray, cells: list[tuple[str, np.ndarray]], node_type: np.ndarray, pred: np.ndarray,
           true: np.ndarray, node_types: tuple[str, ...]) -> dict[str, Any]:
    """One sample: per region its nodes, squared error sum and squared truth sum; and the
    sample's totals (sq_err, sq_true, num_nodes), from which its rel L2 and RMS |true| come."""
    pred = np.asarray(pred, dtype=np.float64).reshape(len(points), -1)
    true = np.asarray(true, dtype=np.float64).reshape(len(points), -1)
    sq_err, sq_true = ((pred - true) ** 2).sum(1), (true ** 2).sum(1)
    return {"num_nodes": len(points), "sq_err": float(sq_err.sum()), "sq_true": float(sq_true.sum()),
            "regions": {name: {"nodes": int(m.sum()), "sq_err": float(sq_err[m].sum()),
                               "sq_true": float(sq_true[m].sum())}
                        for name, m in regions(points, cells, node_type, node_types).items()}}


def summarise(located: list[dict[str, Any]]) -> dict[str, Any]:
    """A set's samples pooled: per region its share of the set's nodes and of its total squared
    error, and its pooled rel L2 (sqrt(sum sq_err / sum sq_true) over the region's nodes); per
    sample, Spearman's correlation of rel L2 with RMS |true| (negative: the error concentrates
    in low-magnitude samples; None under 3 samples) and the worst 10 % of samples' share of
    the sum of rel L2 (at least one sample)."""
    total_err = sum(s["sq_err"] for s in located)
    total_nodes = sum(s["num_nodes"] for s in located)
    out: dict[str, Any] = {"regions": {}}
    for name in located[0]["regions"]:
        parts = [s["regions"][name] for s in located]
        err, ref, nodes = (sum(p[k] for p in parts) for k in ("sq_err", "sq_true", "nodes"))
        out["regions"][name] = {"node_share": nodes / total_nodes, "error_share": err / total_err if total_err else 0.0,
                                "rel_l2": float(np.sqrt(err / ref)) if ref > 0 else None}
    rel = np.array([np.sqrt(s["sq_err"] / s["sq_true"]) if s["sq_true"] > 0 else np.nan for s in located])
    rms = np.array([np.sqrt(s["sq_true"] / s["num_nodes"]) for s in located])
    worst = np.sort(rel)[::-1][:max(1, int(round(WORST_FRACTION * len(rel))))]
    rho = float(spearmanr(rel, rms)[0]) if len(rel) >= 3 else np.nan
    out["spearman_rel_l2_vs_rms_true"] = None if np.isnan(rho) else rho
    out["worst_10pct_share_of_mean_rel_l2"] = float(worst.sum() / rel.sum())
    out["meshes"] = len(located)
    return out
