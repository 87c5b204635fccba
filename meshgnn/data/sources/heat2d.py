"""Steady heat conduction in 2D parts with insulated holes.

A part (meshgnn.data.geometry: a plate, an L-shape, a notched, tapered, ... outline of height
1 and x-extent Lx, with holes of several shapes; data.families, data.hole_shapes) solves
-div(k grad T) = q. The outer boundary carries a Dirichlet temperature that is a smooth
periodic function of its arclength (t0 plus a few Fourier modes of decaying amplitude), so it
is continuous at the corners: side-wise constant temperatures would make the flux singular
there, and a network would spend its capacity on the singular points. Holes are insulated. The
heat source is one Gaussian blob, at least a few cells wide at the default mesh size so that
the mesh resolves it. Every parameter is drawn uniformly from its data.ranges entry.
With data.label_refinement = r > 0 the fields are solved on the mesh refined r times and
taken at its own nodes (better labels; the inputs stay those of the training mesh).

Baseline: the Dirichlet values interpolated to every node by Shepard's inverse-distance
weighting (power 2), exact on the Dirichlet nodes; it knows nothing about the source or the
holes, and its flux is -k times its gradient, recovered exactly like the solver's flux. Data
version 6 weights boundary *patches*: the Dirichlet nodes are binned into square cells of
side `data.shepard_cell`, and each occupied cell counts once, at its nodes' mean position with
their mean value. The patches are physical, so the baseline is (nearly) the same function on a
mesh of any resolution, and its cost is nodes x patches, where the patch count is set by the
part's perimeter, not its mesh: O(nodes) at any resolution (versions 3 to 5 took the k nearest
Dirichlet nodes, with k scaled by the boundary spacing in version 5, which made k, and the cost,
grow with the resolution: 18 s of the 19 s of preparing a 131k-node mesh). Every patch counts,
as in version 2's global baseline (every Dirichlet node), the most accurate of the old ones
(README, "heat2d baseline"). A data section without `shepard_cell` (a model trained before
version 6) keeps the nearest-node baseline it was trained with (`shepard_neighbours`,
`shepard_spacing`), so old packages predict as they did.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from meshgnn.data.fem import nodal_gradient, solve_heat
from meshgnn.data.hierarchy import GRID_SHIFT
from meshgnn.data.mesher import FIRST_HOLE, INTERIOR
from meshgnn.data.sample import FieldSpec, MeshSample, SourceSpec
from meshgnn.data.sources.parts import Ranges, draw_part, label_mesh, point_in_material, streams, uniform
from meshgnn.errors import UserError

NUM_MODES = 3
PATCH_BLOCK = 2048  # points per block of the patch distances: speed only, never the result

SPEC = SourceSpec(
    node_types=("interior", "dirichlet", "insulated"),
    inputs=(FieldSpec("boundary_temperature", 1), FieldSpec("heat_source", 1),
            FieldSpec("conductivity", 1)),
    targets=(FieldSpec("temperature", 1), FieldSpec("heat_flux", 2)),
    global_names=(
        ("k", "t0")
        + tuple(f"{ab}{m}" for m in range(1, NUM_MODES + 1) for ab in ("a", "b"))
        + ("A", "cx", "cy", "s", "Lx")
    ),
)
# 3: Shepard over the nearest shepard_neighbours Dirichlet nodes, not all of them.
# 4: parts of data.families/hole_shapes, data.ranges, boundary modes of uniform amplitude and
#    random phase (were normal coefficients), separate part/parameter streams, label_refinement.
# 5: data.shepard_spacing: the baseline's neighbour count follows the boundary's node spacing.
# 6: data.shepard_cell: Shepard over boundary patches (module doc); shepard_neighbours/spacing retired.
VERSION = 6


def generate(index: int, seed: int, mesh_size: float, max_holes: int, *, ranges: Ranges,
             families: Sequence[str], hole_shapes: Sequence[str], label_refinement: int,
             shepard_cell: float | None, shepard_neighbours: int | None = None,
             shepard_spacing: float | None = None) -> MeshSample:
    part_rng, rng = streams(seed, index)
    part = draw_part(part_rng, mesh_size, max_holes, ranges, families, hole_shapes)
    mesh, length = part.mesh, part.length

    k = uniform(rng, ranges, "conductivity")
    t0 = uniform(rng, ranges, "mean_temperature")
    # Mode m: amplitude (a draw from the range) / m at a uniform phase; row m-1 holds (a_m, b_m).
    amplitude_m = uniform(rng, ranges, "boundary_amplitude", NUM_MODES) / np.arange(1, NUM_MODES + 1)
    phase_m = rng.uniform(0.0, 2 * np.pi, NUM_MODES)
    modes = amplitude_m[:, None] * np.c_[np.cos(phase_m), np.sin(phase_m)]
    amplitude = uniform(rng, ranges, "source_amplitude")
    width = uniform(rng, ranges, "source_width")
    centre = point_in_material(rng, part)  # last: its number of draws depends on the part

    def source(x: np.ndarray) -> np.ndarray:
        r2 = (x[0] - centre[0]) ** 2 + (x[1] - centre[1]) ** 2
        return amplitude * np.exp(-r2 / (2 * width**2))

    fine = label_mesh(mesh, label_refinement)
    fine_dirichlet = np.flatnonzero(_outer(fine.node_label))
    fine_values = _fourier(part.outer_arclength(fine.points[fine_dirichlet]) / part.perimeter, t0, modes)
    temperature, flux = solve_heat(fine.points, fine.triangles, k, source, fine_dirichlet, fine_values)
    n = len(mesh.points)  # the fine mesh's first nodes are the training mesh's
    temperature, flux = temperature[:n], flux[:n]

    outer = _outer(mesh.node_label)
    node_type = np.zeros(n, dtype=np.int64)
    node_type[outer] = SPEC.node_types.index("dirichlet")
    node_type[mesh.node_label >= FIRST_HOLE] = SPEC.node_types.index("insulated")
    boundary_temperature = np.zeros(n)
    coarse = fine_dirichlet < n
    boundary_temperature[fine_dirichlet[coarse]] = fine_values[coarse]

    sample = MeshSample(
        points=mesh.points,
        cells=[("triangle", mesh.triangles)],
        node_type=node_type,
        inputs={
            "boundary_temperature": boundary_temperature[:, None],
            "heat_source": source(mesh.points.T)[:, None],
            "conductivity": np.full((n, 1), k),
        },
        targets={"temperature": temperature[:, None], "heat_flux": flux},
        globals=np.array(
            [k, t0, *modes.ravel(), amplitude, *centre, width, length], dtype=np.float64
        ),
    )
    sample.baseline = baseline(sample, shepard_cell, shepard_neighbours, shepard_spacing)
    return sample


def _outer(node_label: np.ndarray) -> np.ndarray:
    """The nodes on the part's outer boundary (the Dirichlet nodes)."""
    return (node_label != INTERIOR) & (node_label < FIRST_HOLE)


def baseline(sample: MeshSample, shepard_cell: float | None, shepard_neighbours: int | None = None,
             shepard_spacing: float | None = None) -> dict[str, np.ndarray]:
    """The analytic baseline (module doc) of a heat2d sample, from what a mesh file carries.

    `shepard_cell` (a length): the side of the boundary patches of data version 6. None (a data
    section of versions 3 to 5) interpolates over each node's `shepard_neighbours` nearest
    Dirichlet nodes instead, scaled by `shepard_spacing` as version 5 did when that is given
    (`_nearest_shepard`).

    Reads only the points, the triangles, the node types, the "boundary_temperature" input
    (its values on the Dirichlet nodes) and the conductivity global "k"; never the targets,
    so it serves new, unsolved meshes at prediction time exactly as it served training.
    """
    dirichlet = sample.node_type == SPEC.node_types.index("dirichlet")
    dirichlet_nodes = np.flatnonzero(dirichlet)
    if len(dirichlet_nodes) == 0:
        raise ValueError("heat2d baseline: the sample has no dirichlet nodes to interpolate")
    dirichlet_values = sample.inputs["boundary_temperature"][dirichlet_nodes, 0]
    triangles = [cells for kind, cells in sample.cells if kind == "triangle"]
    if not triangles:
        raise ValueError("heat2d baseline: the sample has no triangle cells")
    triangles = np.concatenate(triangles)
    if shepard_cell is not None:
        centres, values = _patches(sample.points[dirichlet_nodes], dirichlet_values, shepard_cell)
        guess = _patch_shepard(sample.points, centres, values)
        guess[dirichlet_nodes] = dirichlet_values
    elif shepard_neighbours is not None:
        neighbours = shepard_neighbours
        if shepard_spacing is not None:
            spacing = _boundary_spacing(sample.points, triangles, dirichlet)
            neighbours = max(1, round(shepard_neighbours * shepard_spacing / spacing))
        guess = _nearest_shepard(sample.points, dirichlet_nodes, dirichlet_values, neighbours)
    else:
        raise UserError("heat2d baseline: data.shepard_cell is null and so is data.shepard_neighbours; set "
                        "data.shepard_cell=0.08 (the patch baseline) or data.shepard_neighbours=64")
    k = _global(sample, "k")
    return {
        "temperature": guess[:, None],
        "heat_flux": -k * nodal_gradient(sample.points, triangles, guess),
    }


def _patches(points: np.ndarray, values: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """The occupied `cell`-sided squares of a grid anchored at the points' bounding-box corner
    (shifted by GRID_SHIFT of a cell, so points at round positions do not straddle a cell
    boundary after a translation), each as its points' mean position and mean value."""
    corner = points.min(axis=0) - GRID_SHIFT * cell
    index = np.floor((points - corner) / cell).astype(np.int64)
    key = index[:, 0] * (int(index[:, 1].max()) + 1) + index[:, 1]
    _, patch, count = np.unique(key, return_inverse=True, return_counts=True)
    centres = np.stack([np.bincount(patch, points[:, d]) for d in range(points.shape[1])], axis=1) / count[:, None]
    return centres, np.bincount(patch, values) / count


def _patch_shepard(points: np.ndarray, centres: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Inverse-distance-squared weighted mean of every patch value at every point. In blocks of
    `PATCH_BLOCK` points (the distance block stays in cache) and in place, with numerator and
    denominator from one product: 4x the plain numpy expression at 100k nodes."""
    weighted = np.stack([values, np.ones_like(values)], axis=1)
    result = np.empty(len(points))
    for start in range(0, len(points), PATCH_BLOCK):
        block = points[start:start + PATCH_BLOCK]
        d2 = np.square(np.subtract.outer(block[:, 0], centres[:, 0]))
        d2 += np.square(np.subtract.outer(block[:, 1], centres[:, 1]))
        np.reciprocal(np.maximum(d2, np.finfo(np.float64).tiny, out=d2), out=d2)
        sums = d2 @ weighted
        result[start:start + PATCH_BLOCK] = sums[:, 0] / sums[:, 1]
    return result


def _boundary_spacing(points: np.ndarray, triangles: np.ndarray, on: np.ndarray) -> float:
    """Mean length of the boundary edges (edges of one triangle only) joining two `on` nodes."""
    edges = np.sort(np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]]), axis=1)
    keys, count = np.unique(edges[:, 0].astype(np.int64) * len(points) + edges[:, 1], return_counts=True)
    boundary = np.stack([keys // len(points), keys % len(points)], axis=1)[count == 1]  # packed: ~5x np.unique(axis=0)
    boundary = boundary[on[boundary].all(axis=1)]
    if len(boundary) == 0:
        raise ValueError("heat2d baseline: no boundary edge joins two dirichlet nodes")
    return float(np.linalg.norm(points[boundary[:, 1]] - points[boundary[:, 0]], axis=1).mean())


def _global(sample: MeshSample, name: str) -> np.float64:
    if sample.globals.shape != (len(SPEC.global_names),):
        raise ValueError(f"heat2d sample needs {len(SPEC.global_names)} globals "
                         f"{SPEC.global_names}, got shape {sample.globals.shape}")
    return sample.globals[SPEC.global_names.index(name)]


def _fourier(phase: np.ndarray, mean: float, modes: np.ndarray) -> np.ndarray:
    """mean + sum_m a_m cos(2 pi m phase) + b_m sin(2 pi m phase), phase in [0, 1]."""
    m = np.arange(1, len(modes) + 1)
    angle = 2 * np.pi * phase[:, None] * m
    return mean + np.cos(angle) @ modes[:, 0] + np.sin(angle) @ modes[:, 1]


def _nearest_shepard(points: np.ndarray, known: np.ndarray, values: np.ndarray, neighbours: int) -> np.ndarray:
    """Inverse-distance-squared weighted mean of `values` at the `neighbours` nearest `known`
    nodes (all of them when there are fewer), exact at the known nodes."""
    count = min(neighbours, len(known))
    distance, nearest = cKDTree(points[known]).query(points, k=count)
    distance, nearest = distance.reshape(len(points), count), nearest.reshape(len(points), count)
    weights = 1.0 / np.maximum(distance**2, np.finfo(np.float64).tiny)  # known nodes are set below
    result = (weights * values[nearest]).sum(axis=1) / weights.sum(axis=1)
    result[known] = values
    return result
