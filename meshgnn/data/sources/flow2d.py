"""Steady incompressible flow through a 2D channel past obstacles (Navier-Stokes, density 1).

A channel [0, Lx] x [0, 1] (meshgnn.data.channel: 1..data.max_holes obstacles of
data.hole_shapes, placed in its first 60 % and one obstacle size clear of the walls and of each
other) solves (u.grad)u - nu lap u + grad p = 0, div u = 0 with Taylor-Hood P2/P1 elements by
Newton's method from a Stokes start (meshgnn.data.navier_stokes). Boundary conditions:
- inlet x = 0: the Poiseuille parabola u = 6 U y (1 - y), v = 0, of mean speed U (peak 1.5 U);
- walls y = 0, 1 and the obstacles: no slip, u = v = 0;
- outlet x = Lx: do-nothing, nu du/dn - p n = 0 (free outflow; it sets the pressure level: a
  developed profile leaves at p = 0).
U is drawn from data.ranges.mean_velocity and the Reynolds number Re = U D / nu from
data.ranges.reynolds, with D the largest obstacle's diameter (twice its circumradius);
nu = U D / Re follows. Re stays in [10, 40] by default: the steady regime, since a cylinder's
wake starts shedding vortices at Re ~ 47 (no physical steady solution above it, and Newton
stops converging near it), while Re >= 10 has a recirculation behind the obstacles, which is
what makes the flow nonlinear and worth a surrogate. Per U the fields scale (u ~ U, p ~ U^2 at a
fixed Re), so U varies the magnitudes a network must handle.

Node types: inlet (x = 0), outlet (x = Lx), wall (y = 0, 1, with the four channel corners: no
slip wins there, their velocity is 0), obstacle, interior. Inputs: the Dirichlet velocity
"boundary_velocity" (the parabola on inlet nodes, 0 elsewhere) and the constant "viscosity".
Targets: "velocity" and "pressure" at the vertices (the P2 field's vertex values and the P1
pressure). No vorticity target: it is the curl of the velocity a model already predicts, and
would spend the model's capacity on a derived, noisier (gradient of P1 values) field.

Baseline: the inlet's Poiseuille flow carried along the whole channel, as if there were no
obstacles: u = 6 U eta (1 - eta), v = 0, with eta = (y - y0) / H across the channel's height H
(its bounding box: y0 its bottom), and the exact Poiseuille pressure of the do-nothing outlet,
p = 12 nu U (x1 - x) / H^2 (x1 the outlet's x; with mean U the parabola is u = G/(2 nu) y (H - y)
for the pressure gradient G = 12 nu U / H^2). Velocity 0 on wall and obstacle nodes, the input
itself on inlet nodes. It is the exact solution of a channel without obstacles.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from meshgnn.data.channel import random_channel
from meshgnn.data.mesher import BOTTOM, FIRST_HOLE, LEFT, RIGHT, TOP, TriMesh
from meshgnn.data.navier_stokes import solve_navier_stokes
from meshgnn.data.sample import FieldSpec, MeshSample, SourceSpec
from meshgnn.data.sources.elasticity2d import named_globals
from meshgnn.data.sources.parts import Ranges, streams, uniform
from meshgnn.errors import UserError

SPEC = SourceSpec(
    node_types=("interior", "inlet", "outlet", "wall", "obstacle"),
    inputs=(FieldSpec("boundary_velocity", 2), FieldSpec("viscosity", 1)),
    targets=(FieldSpec("velocity", 2), FieldSpec("pressure", 1)),
    global_names=("nu", "U", "Re", "D", "Lx"),
)
VERSION = 1

_ON_INLET = 1e-9  # |x| below which a velocity dof lies on the inlet x = 0 (obstacles keep >= 0.25 away)


def generate(index: int, seed: int, mesh_size: float, max_holes: int, *, ranges: Ranges,
             hole_shapes: Sequence[str], newton_tolerance: float, newton_max_iterations: int) -> MeshSample:
    if max_holes < 1:
        raise UserError(f"flow2d needs at least one obstacle per channel, got max_holes={max_holes}; "
                        "set data.max_holes (or --max-holes) to 1 or more")
    channel_rng, rng = streams(seed, index)
    channel = random_channel(channel_rng, mesh_size, max_holes, ranges["length"], ranges["hole_size"], hole_shapes)
    mean_velocity = uniform(rng, ranges, "mean_velocity")
    reynolds = uniform(rng, ranges, "reynolds")
    scale = channel.obstacle_scale
    try:
        return solve_channel(channel.mesh, mean_velocity, reynolds, scale, newton_tolerance, newton_max_iterations)
    except ValueError as exc:  # Newton did not converge (meshgnn.data.navier_stokes)
        shapes = ", ".join(obstacle.shape for obstacle in channel.obstacles)
        raise UserError(
            f"flow2d sample {index} (data.seed={seed}: Re {reynolds:.4g}, U {mean_velocity:.4g}, "
            f"nu {mean_velocity * scale / reynolds:.4g}, D {scale:.4g}, Lx {channel.length:.4g}, obstacles {shapes}; "
            f"mesh size {mesh_size:.4g}, {len(channel.mesh.points)} nodes) failed: {str(exc).splitlines()[0]}; "
            "raise data.newton_max_iterations or lower data.ranges.reynolds's hi") from exc


def solve_channel(mesh: TriMesh, mean_velocity: float, reynolds: float, scale: float, tolerance: float,
                  max_iterations: int) -> MeshSample:
    """The solved sample of a channel mesh (labels of meshgnn.data.channel; no obstacles is a
    plain channel) at mean inflow speed U and Re = U `scale` / nu. Raises the solver's
    ValueError when Newton does not converge."""
    viscosity = mean_velocity * scale / reynolds
    inflow = inlet_velocity(mean_velocity)
    no_outflow = mesh.facets[mesh.facet_label != RIGHT]  # inlet, walls, obstacles: every facet but the outlet
    solution = solve_navier_stokes(mesh.points, mesh.triangles, viscosity, no_outflow, inflow,
                                   tolerance=tolerance, max_iterations=max_iterations)
    node_type = node_types(mesh)
    inlet = node_type == SPEC.node_types.index("inlet")
    n = len(mesh.points)
    boundary_velocity = np.zeros((n, 2))
    boundary_velocity[inlet] = inflow(mesh.points[inlet].T).T
    length = float(mesh.points[:, 0].max())
    sample = MeshSample(
        points=mesh.points,
        cells=[("triangle", mesh.triangles)],
        node_type=node_type,
        inputs={"boundary_velocity": boundary_velocity, "viscosity": np.full((n, 1), viscosity)},
        targets={"velocity": solution.velocity, "pressure": solution.pressure[:, None]},
        globals=np.array([viscosity, mean_velocity, reynolds, scale, length], dtype=np.float64),
    )
    sample.baseline = baseline(sample)
    return sample


def node_types(mesh: TriMesh) -> np.ndarray:
    """[N] index into SPEC.node_types from the mesh's boundary labels (module doc). The mesher
    gives a corner its vertical edge's label (inlet/outlet); here it is wall: no slip holds there."""
    kind = SPEC.node_types.index
    label = mesh.node_label
    node_type = np.full(len(label), kind("interior"), dtype=np.int64)
    node_type[label == LEFT] = kind("inlet")
    node_type[label == RIGHT] = kind("outlet")
    y = mesh.points[:, 1]
    corner = np.isin(label, (LEFT, RIGHT)) & ((y == 0.0) | (y == 1.0))
    node_type[np.isin(label, (BOTTOM, TOP)) | corner] = kind("wall")
    node_type[label >= FIRST_HOLE] = kind("obstacle")
    return node_type


def inlet_velocity(mean_velocity: float) -> Callable[[np.ndarray], np.ndarray]:
    """The Dirichlet velocity of the solver: positions [2, K] -> velocities [2, K]; the parabola
    of mean `mean_velocity` on the inlet (it is 0 at the walls by itself), 0 on the obstacles."""

    def velocity(x: np.ndarray) -> np.ndarray:
        u = np.where(np.abs(x[0]) <= _ON_INLET, 6 * mean_velocity * x[1] * (1 - x[1]), 0.0)
        return np.stack([u, np.zeros_like(u)])

    return velocity


def baseline(sample: MeshSample) -> dict[str, np.ndarray]:
    """The Poiseuille baseline (module doc) of a flow2d sample.

    Reads only the points, the node types, the "boundary_velocity" input (exact on the inlet)
    and the globals nu and U; never the targets, so it serves new, unsolved meshes at prediction
    time exactly as in training. Vectorised, O(N).
    """
    g = named_globals(SPEC, sample)
    low, high = sample.points.min(axis=0), sample.points.max(axis=0)
    height = high[1] - low[1]
    eta = (sample.points[:, 1] - low[1]) / height
    velocity = np.zeros((sample.num_nodes, 2))
    velocity[:, 0] = 6 * g["U"] * eta * (1 - eta)
    kind = SPEC.node_types.index
    velocity[np.isin(sample.node_type, (kind("wall"), kind("obstacle")))] = 0.0
    inlet = sample.node_type == kind("inlet")
    velocity[inlet] = sample.inputs["boundary_velocity"][inlet]
    pressure = 12 * g["nu"] * g["U"] * (high[0] - sample.points[:, 0]) / height**2
    return {"velocity": velocity, "pressure": pressure[:, None]}
