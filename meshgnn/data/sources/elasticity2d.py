"""Plane-stress linear elasticity of cantilever parts with holes.

A part (meshgnn.data.geometry: a plate, an L-shape, a notched, tapered, ... outline of height
1 and x-extent Lx, unit thickness, with holes of several shapes; data.families,
data.hole_shapes) is clamped on its left edge x = 0 and loaded on its right edge x = Lx by a
traction (tx, ty) that varies linearly from its value at y = 0 to its value at y = 1; the rest
of the boundary and the holes are traction-free. The problem is linear, so the traction scale
only sets the displacement scale; it is kept to strains of ~1e-2 so that plots of the deformed
part still look like small strain. The end shear range is 10x smaller than the axial one
because a cantilever's root bending stress is ~6 Lx times its end shear; this also keeps
stretching and bending comparable in the data. Every parameter is drawn uniformly from its
data.ranges entry. With data.label_refinement = r > 0 the fields are solved on the mesh
refined r times and taken at its own nodes (better labels; the inputs stay the training mesh's).

Baseline: Euler-Bernoulli bar + cantilever theory of the unit-height plate [0, Lx] x [0, 1]
without holes, loaded by the resultants of the end traction: axial force P = mean(tx), shear
force V = mean(ty), and the couple C = -(tx(1) - tx(0)) / 12 that the linear variation of tx
carries about the mid-line. x is measured from the clamped edge and y from its bottom (the
clamped nodes' least x and y), so the baseline moves with the part under a rigid translation.
With eta = y - 1/2, I = 1/12 and bending moment M(x) = V (Lx - x) + C:

    deflection  v(x)  = (V (Lx x^2 / 2 - x^3 / 6) + C x^2 / 2) / (E I)
    ux = P x / E - eta v'(x)          (bar stretch + plane sections rotating)
    uy = v(x) - nu P eta / E          (deflection + Poisson contraction of the bar)
    sxx = P - M(x) eta / I,  sxy = 3/2 V (1 - 4 eta^2),  syy = 0   -> von Mises

It ignores the outline, the holes, the clamp's Poisson constraint and shear deformation, which
is the part a network has to learn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from meshgnn.data.fem import solve_elasticity, von_mises
from meshgnn.data.mesher import INTERIOR, LEFT, RIGHT
from meshgnn.data.sample import FieldSpec, MeshSample, SourceSpec
from meshgnn.data.sources.parts import Ranges, draw_part, label_mesh, streams, uniform

SPEC = SourceSpec(
    node_types=("interior", "clamped", "loaded", "free"),
    inputs=(FieldSpec("traction", 2), FieldSpec("youngs_modulus", 1), FieldSpec("poisson_ratio", 1)),
    targets=(FieldSpec("displacement", 2), FieldSpec("von_mises", 1)),
    global_names=("E", "nu", "tx0", "tx1", "ty0", "ty1", "Lx"),
)
# 3: parts of data.families/hole_shapes, data.ranges, separate part/parameter streams,
#    label_refinement, the baseline measured from the clamped edge.
VERSION = 3


def generate(index: int, seed: int, mesh_size: float, max_holes: int, *, ranges: Ranges,
             families: Sequence[str], hole_shapes: Sequence[str], label_refinement: int) -> MeshSample:
    part_rng, rng = streams(seed, index)
    part = draw_part(part_rng, mesh_size, max_holes, ranges, families, hole_shapes)
    mesh = part.mesh

    youngs_modulus = uniform(rng, ranges, "youngs_modulus")
    poisson_ratio = uniform(rng, ranges, "poisson_ratio")
    # Row c: traction component c (x, y) at the bottom (y = 0) and top (y = 1) of the edge.
    ends = np.array([uniform(rng, ranges, name, 2) for name in ("traction_x", "traction_y")])
    traction = linear_traction(ends)

    fine = label_mesh(mesh, label_refinement)
    displacement, stress = solve_elasticity(
        fine.points,
        fine.triangles,
        youngs_modulus,
        poisson_ratio,
        np.repeat((fine.node_label == LEFT)[:, None], 2, axis=1),
        fine.facets[fine.facet_label == RIGHT],
        traction,
    )
    n = len(mesh.points)  # the fine mesh's first nodes are the training mesh's
    displacement, stress = displacement[:n], stress[:n]

    clamped = mesh.node_label == LEFT
    loaded = mesh.node_label == RIGHT
    node_type = np.full(n, SPEC.node_types.index("free"), dtype=np.int64)
    node_type[mesh.node_label == INTERIOR] = SPEC.node_types.index("interior")
    node_type[clamped] = SPEC.node_types.index("clamped")
    node_type[loaded] = SPEC.node_types.index("loaded")
    applied = np.where(loaded[:, None], traction(mesh.points.T).T, 0.0)

    sample = MeshSample(
        points=mesh.points,
        cells=[("triangle", mesh.triangles)],
        node_type=node_type,
        inputs={"traction": applied,
                "youngs_modulus": np.full((n, 1), youngs_modulus),
                "poisson_ratio": np.full((n, 1), poisson_ratio)},
        targets={"displacement": displacement, "von_mises": stress[:, None]},
        globals=np.array([youngs_modulus, poisson_ratio, *ends.ravel(), part.length], dtype=np.float64),
    )
    sample.baseline = baseline(sample)
    return sample


def baseline(sample: MeshSample) -> dict[str, np.ndarray]:
    """The beam-theory baseline (module doc) of an elasticity2d sample.

    Reads only the points, the node types (the clamped edge is the origin) and the globals E,
    nu, tx0, tx1, ty0, ty1 and Lx (by name); never the targets, so it serves new, unsolved
    meshes at prediction time exactly as in training.
    """
    g = named_globals(SPEC, sample)
    clamped = sample.node_type == SPEC.node_types.index("clamped")
    if not clamped.any():
        raise ValueError("elasticity2d baseline: the sample has no clamped nodes to measure from")
    origin = sample.points[clamped].min(axis=0)
    displacement, stress = _beam_theory(
        sample.points - origin, g["Lx"], g["E"], g["nu"], traction_ends(g, "xy")
    )
    return {"displacement": displacement, "von_mises": stress[:, None]}


def named_globals(spec: SourceSpec, sample: MeshSample) -> dict[str, np.float64]:
    """The sample's globals by their `spec.global_names`, checking that they all are there."""
    if sample.globals.shape != (len(spec.global_names),):
        raise ValueError(f"sample needs {len(spec.global_names)} globals {spec.global_names}, "
                         f"got shape {sample.globals.shape}")
    return dict(zip(spec.global_names, sample.globals))


def traction_ends(g: dict[str, np.float64], components: str) -> np.ndarray:
    """The `ends` array of `linear_traction` (row c: component c at y = 0 and y = 1) from the
    globals t{c}0, t{c}1 of each component c (e.g. "xy")."""
    return np.array([[g[f"t{c}0"], g[f"t{c}1"]] for c in components], dtype=np.float64)


def linear_traction(ends: np.ndarray):
    """Traction varying linearly in y: row c of `ends` holds component c at y = 0 and y = 1.
    Returns a function of positions [dim, ...] -> tractions [components, ...]."""

    def traction(x: np.ndarray) -> np.ndarray:
        return np.stack([start + (stop - start) * x[1] for start, stop in ends])

    return traction


def _beam_theory(
    points: np.ndarray,
    length: float,
    youngs_modulus: float,
    poisson_ratio: float,
    ends: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Displacement [N, 2] and von Mises stress [N] of the holeless cantilever (see module doc)."""
    x, eta = points[:, 0], points[:, 1] - 0.5
    inertia = 1.0 / 12.0
    axial = ends[0].mean()
    shear = ends[1].mean()
    couple = -(ends[0, 1] - ends[0, 0]) / 12.0
    stiffness = youngs_modulus * inertia
    deflection = (shear * (length * x**2 / 2 - x**3 / 6) + couple * x**2 / 2) / stiffness
    slope = (shear * (length * x - x**2 / 2) + couple * x) / stiffness
    ux = axial * x / youngs_modulus - eta * slope
    uy = deflection - poisson_ratio * axial * eta / youngs_modulus
    moment = shear * (length - x) + couple
    sxx = axial - moment * eta / inertia
    sxy = 1.5 * shear * (1 - 4 * eta**2)
    return np.stack([ux, uy], axis=1), von_mises(sxx, np.zeros_like(sxx), sxy)
