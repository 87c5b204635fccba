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
weighting (power 2) over the `shepard_neighbours` nearest Dirichlet nodes (data config; a
scipy cKDTree finds them), which is exact on the boundary and knows nothing about the source or
the holes; its flux is -k times its gradient, recovered exactly like the solver's flux. Data
version 3 made it local: version 2 weighted every Dirichlet node, which costs N x boundary
(about a third of predict's graph preparation on large meshes) and is more accurate than a
small neighbourhood (README, "heat2d baseline"); k >= the Dirichlet node count is version 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from meshgnn.data.fem import nodal_gradient, solve_heat
from meshgnn.data.mesher import FIRST_HOLE, INTERIOR
from meshgnn.data.sample import FieldSpec, MeshSample, SourceSpec
from meshgnn.data.sources.parts import Ranges, draw_part, label_mesh, point_in_material, streams, uniform

NUM_MODES = 3

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
VERSION = 5


def generate(index: int, seed: int, mesh_size: float, max_holes: int, *, ranges: Ranges,
             families: Sequence[str], hole_shapes: Sequence[str], label_refinement: int,
             shepard_neighbours: int, shepard_spacing: float | None) -> MeshSample:
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
    sample.baseline = baseline(sample, shepard_neighbours, shepard_spacing)
    return sample


def _outer(node_label: np.ndarray) -> np.ndarray:
    """The nodes on the part's outer boundary (the Dirichlet nodes)."""
    return (node_label != INTERIOR) & (node_label < FIRST_HOLE)


def baseline(sample: MeshSample, shepard_neighbours: int, shepard_spacing: float | None = None
             ) -> dict[str, np.ndarray]:
    """The analytic baseline (module doc) of a heat2d sample, from what a mesh file carries.

    `shepard_spacing` (a length) makes the neighbourhood cover the same stretch of boundary at
    every resolution: `shepard_neighbours` nodes at that Dirichlet node spacing, scaled by it
    on a mesh with another spacing. None keeps exactly `shepard_neighbours` nodes (data
    versions 3 and 4), whose reach shrinks on a finer mesh: at 4x finer (12 plates, k = 64)
    the baseline's own rel L2 grew from 0.16 to 0.28 (temperature) and 0.45 to 0.95 (flux),
    and with it every model that reads it.

    Reads only the points, the triangles, the node types, the "boundary_temperature" input
    (its values on the Dirichlet nodes) and the conductivity global "k"; never the targets,
    so it serves new, unsolved meshes at prediction time exactly as it served training.
    """
    dirichlet_nodes = np.flatnonzero(sample.node_type == SPEC.node_types.index("dirichlet"))
    if len(dirichlet_nodes) == 0:
        raise ValueError("heat2d baseline: the sample has no dirichlet nodes to interpolate")
    dirichlet_values = sample.inputs["boundary_temperature"][dirichlet_nodes, 0]
    triangles = [cells for kind, cells in sample.cells if kind == "triangle"]
    if not triangles:
        raise ValueError("heat2d baseline: the sample has no triangle cells")
    triangles = np.concatenate(triangles)
    neighbours = shepard_neighbours
    if shepard_spacing is not None:
        spacing = _boundary_spacing(sample.points, triangles, sample.node_type == SPEC.node_types.index("dirichlet"))
        neighbours = max(1, round(shepard_neighbours * shepard_spacing / spacing))
    guess = _shepard(sample.points, dirichlet_nodes, dirichlet_values, neighbours)
    k = _global(sample, "k")
    return {
        "temperature": guess[:, None],
        "heat_flux": -k * nodal_gradient(sample.points, triangles, guess),
    }


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


def _shepard(points: np.ndarray, known: np.ndarray, values: np.ndarray, neighbours: int) -> np.ndarray:
    """Inverse-distance-squared weighted mean of `values` at the `neighbours` nearest `known`
    nodes (all of them when there are fewer), exact at the known nodes."""
    count = min(neighbours, len(known))
    distance, nearest = cKDTree(points[known]).query(points, k=count)
    distance, nearest = distance.reshape(len(points), count), nearest.reshape(len(points), count)
    weights = 1.0 / np.maximum(distance**2, np.finfo(np.float64).tiny)  # known nodes are set below
    result = (weights * values[nearest]).sum(axis=1) / weights.sum(axis=1)
    result[known] = values
    return result
