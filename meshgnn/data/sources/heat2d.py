"""Steady heat conduction in plates with insulated holes.

A plate [0, Lx] x [0, 1] (Lx in [1, 2]) with random circular holes solves
-div(k grad T) = q. The outer boundary carries a Dirichlet temperature that is a smooth periodic
function of arclength (t0 plus a few Fourier modes of decaying amplitude), so it is continuous
at the corners: side-wise constant temperatures would make the flux singular there, and a
network would spend its capacity on four singular points. Holes are insulated. The heat source
is one Gaussian blob, at least a few cells wide at the default mesh size so that the mesh
resolves it.

Baseline: the Dirichlet values interpolated to every node by Shepard's inverse-distance
weighting (power 2) over the `shepard_neighbours` nearest Dirichlet nodes (data config; a
scipy cKDTree finds them), which is exact on the boundary and knows nothing about the source or
the holes; its flux is -k times its gradient, recovered exactly like the solver's flux. Data
version 3 made it local: version 2 weighted every Dirichlet node, which costs N x boundary
(about a third of predict's graph preparation on large meshes) and is more accurate than a
small neighbourhood (README, "heat2d baseline"); k >= the Dirichlet node count is version 2.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from meshgnn.data.fem import nodal_gradient, solve_heat
from meshgnn.data.mesher import (
    BOTTOM,
    FIRST_HOLE,
    INTERIOR,
    LEFT,
    RIGHT,
    TOP,
    Circle,
    random_plate,
)
from meshgnn.data.sample import FieldSpec, MeshSample, SourceSpec

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
VERSION = 3  # 3: Shepard over the nearest shepard_neighbours Dirichlet nodes, not all of them

CONDUCTIVITY_RANGE = (0.5, 2.0)
MEAN_TEMPERATURE_RANGE = (0.0, 1.0)
FIRST_MODE_AMPLITUDE = 0.5  # std of mode m's coefficients is FIRST_MODE_AMPLITUDE / m
# At k = 1, A = 40 heats the blob about as much as the boundary temperature varies, so
# neither the source nor the boundary data dominates a sample.
SOURCE_AMPLITUDE_RANGE = (0.0, 40.0)
SOURCE_WIDTH_RANGE = (0.1, 0.25)


def generate(index: int, seed: int, mesh_size: float, max_holes: int, shepard_neighbours: int) -> MeshSample:
    rng = np.random.default_rng([seed, index])
    plate = random_plate(rng, mesh_size, max_holes)
    mesh, length = plate.mesh, plate.length

    k = rng.uniform(*CONDUCTIVITY_RANGE)
    t0 = rng.uniform(*MEAN_TEMPERATURE_RANGE)
    decay = FIRST_MODE_AMPLITUDE / np.arange(1, NUM_MODES + 1)[:, None]
    modes = rng.normal(size=(NUM_MODES, 2)) * decay  # row m-1: (a_m, b_m)
    amplitude = rng.uniform(*SOURCE_AMPLITUDE_RANGE)
    width = rng.uniform(*SOURCE_WIDTH_RANGE)
    centre = _point_in_material(rng, length, plate.holes)

    def source(x: np.ndarray) -> np.ndarray:
        r2 = (x[0] - centre[0]) ** 2 + (x[1] - centre[1]) ** 2
        return amplitude * np.exp(-r2 / (2 * width**2))

    outer = (mesh.node_label != INTERIOR) & (mesh.node_label < FIRST_HOLE)
    dirichlet_nodes = np.flatnonzero(outer)
    s = _outer_arclength(mesh.points[dirichlet_nodes], mesh.node_label[dirichlet_nodes], length)
    dirichlet_values = _fourier(s / (2 * (length + 1)), t0, modes)

    temperature, flux = solve_heat(
        mesh.points, mesh.triangles, k, source, dirichlet_nodes, dirichlet_values
    )

    node_type = np.zeros(len(mesh.points), dtype=np.int64)
    node_type[outer] = SPEC.node_types.index("dirichlet")
    node_type[mesh.node_label >= FIRST_HOLE] = SPEC.node_types.index("insulated")
    boundary_temperature = np.zeros(len(mesh.points))
    boundary_temperature[dirichlet_nodes] = dirichlet_values

    sample = MeshSample(
        points=mesh.points,
        cells=[("triangle", mesh.triangles)],
        node_type=node_type,
        inputs={
            "boundary_temperature": boundary_temperature[:, None],
            "heat_source": source(mesh.points.T)[:, None],
            "conductivity": np.full((len(mesh.points), 1), k),
        },
        targets={"temperature": temperature[:, None], "heat_flux": flux},
        globals=np.array(
            [k, t0, *modes.ravel(), amplitude, *centre, width, length], dtype=np.float64
        ),
    )
    sample.baseline = baseline(sample, shepard_neighbours)
    return sample


def baseline(sample: MeshSample, shepard_neighbours: int) -> dict[str, np.ndarray]:
    """The analytic baseline (module doc) of a heat2d sample, from what a mesh file carries.

    Reads only the points, the triangles, the node types, the "boundary_temperature" input
    (its values on the Dirichlet nodes) and the conductivity global "k"; never the targets,
    so it serves new, unsolved meshes at prediction time exactly as it served training.
    """
    dirichlet_nodes = np.flatnonzero(sample.node_type == SPEC.node_types.index("dirichlet"))
    if len(dirichlet_nodes) == 0:
        raise ValueError("heat2d baseline: the sample has no dirichlet nodes to interpolate")
    dirichlet_values = sample.inputs["boundary_temperature"][dirichlet_nodes, 0]
    guess = _shepard(sample.points, dirichlet_nodes, dirichlet_values, shepard_neighbours)
    k = _global(sample, "k")
    triangles = [cells for kind, cells in sample.cells if kind == "triangle"]
    if not triangles:
        raise ValueError("heat2d baseline: the sample has no triangle cells")
    triangles = np.concatenate(triangles)
    return {
        "temperature": guess[:, None],
        "heat_flux": -k * nodal_gradient(sample.points, triangles, guess),
    }


def _global(sample: MeshSample, name: str) -> np.float64:
    if sample.globals.shape != (len(SPEC.global_names),):
        raise ValueError(f"heat2d sample needs {len(SPEC.global_names)} globals "
                         f"{SPEC.global_names}, got shape {sample.globals.shape}")
    return sample.globals[SPEC.global_names.index(name)]


def _point_in_material(
    rng: np.random.Generator, length: float, holes: tuple[Circle, ...]
) -> np.ndarray:
    """A uniform point of the plate outside every hole (rejection sampling)."""
    while True:
        point = rng.uniform((0.0, 0.0), (length, 1.0))
        if all(np.hypot(point[0] - h.x, point[1] - h.y) > h.r for h in holes):
            return point


def _outer_arclength(points: np.ndarray, label: np.ndarray, length: float) -> np.ndarray:
    """Counter-clockwise arclength from (0, 0) of points on the outer rectangle.

    Left-edge points (including the corner (0, 0)) come out near the full perimeter rather
    than 0; that is harmless because the temperature is periodic in arclength.
    """
    x, y = points[:, 0], points[:, 1]
    return np.select(
        [label == BOTTOM, label == RIGHT, label == TOP, label == LEFT],
        [x, length + y, 2 * length + 1 - x, 2 * length + 2 - y],
    )


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
