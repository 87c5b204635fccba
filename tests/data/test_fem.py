"""The P1 solvers against exact solutions: heat on an annulus, uniform tension of a plate; and
the solver library keeps quiet below warnings."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from skfem import Basis, ElementTriP1, Functional, MeshTri

from meshgnn.data.fem import nodal_gradient, solve_elasticity, solve_heat
from meshgnn.data.mesher import BOTTOM, INTERIOR, LEFT, RIGHT, mesh_annulus, mesh_plate

INNER_RADIUS, OUTER_RADIUS = 0.5, 1.0
T_INNER, SLOPE, CONDUCTIVITY = 1.0, 2.0, 1.3


def exact_temperature(r: np.ndarray) -> np.ndarray:
    """Source-free conduction in a ring: T = a + b ln r."""
    return T_INNER + SLOPE * np.log(r / INNER_RADIUS)


def solve_annulus(mesh_size: float):
    mesh = mesh_annulus(INNER_RADIUS, OUTER_RADIUS, mesh_size)
    boundary = np.flatnonzero(mesh.node_label != INTERIOR)
    r = np.hypot(*mesh.points[boundary].T)
    temperature, flux = solve_heat(
        mesh.points, mesh.triangles, CONDUCTIVITY, None, boundary, exact_temperature(r)
    )
    return mesh, temperature, flux


def l2_error(points: np.ndarray, triangles: np.ndarray, nodal: np.ndarray) -> float:
    """L2 norm over the mesh of (P1 interpolant of `nodal` - exact temperature)."""
    basis = Basis(MeshTri(points.T.copy(), triangles.T.copy()), ElementTriP1(), intorder=4)
    squared = Functional(
        lambda w: (w.u - exact_temperature(np.hypot(w.x[0], w.x[1]))) ** 2
    ).assemble(basis, u=basis.interpolate(nodal))
    return float(np.sqrt(squared))


def test_heat_matches_log_solution_on_annulus():
    mesh, temperature, flux = solve_annulus(0.05)
    r = np.hypot(*mesh.points.T)

    assert l2_error(mesh.points, mesh.triangles, temperature) < 1.5e-3
    assert np.abs(temperature - exact_temperature(r)).max() < 2.5e-3
    exact_flux = -CONDUCTIVITY * SLOPE * mesh.points / r[:, None] ** 2
    flux_error = np.linalg.norm(flux - exact_flux) / np.linalg.norm(exact_flux)
    assert flux_error < 0.03  # nodal averaging is first order at the boundary


def test_heat_converges_at_second_order():
    sizes = [0.2, 0.1, 0.05, 0.025]
    errors = [l2_error(m.points, m.triangles, t) for m, t, _ in map(solve_annulus, sizes)]
    rates = np.log(np.array(errors[:-1]) / errors[1:]) / np.log(np.array(sizes[:-1]) / sizes[1:])
    assert rates.min() > 1.8, f"observed L2 rates {rates}"


def test_elasticity_reproduces_uniaxial_tension_exactly():
    youngs_modulus, poisson_ratio, stress, length = 1.7, 0.3, 0.8, 2.0
    mesh = mesh_plate(length, [], 0.15)
    # Rollers: the left edge slides vertically, the bottom edge horizontally, so the plate
    # contracts freely and the exact field is linear, which P1 represents exactly.
    fixed = np.zeros((len(mesh.points), 2), dtype=bool)
    fixed[:, 0] = np.isclose(mesh.points[:, 0], 0.0)
    fixed[:, 1] = np.isclose(mesh.points[:, 1], 0.0)
    assert fixed[mesh.node_label == LEFT, 0].all() and fixed[mesh.node_label == BOTTOM, 1].all()

    displacement, von_mises = solve_elasticity(
        mesh.points,
        mesh.triangles,
        youngs_modulus,
        poisson_ratio,
        fixed,
        mesh.facets[mesh.facet_label == RIGHT],
        lambda x: np.stack([np.full_like(x[0], stress), np.zeros_like(x[0])]),
    )

    x, y = mesh.points.T
    exact = np.c_[stress * x / youngs_modulus, -poisson_ratio * stress * y / youngs_modulus]
    np.testing.assert_allclose(displacement, exact, rtol=0, atol=1e-10)
    np.testing.assert_allclose(von_mises, stress, rtol=0, atol=1e-10)


@pytest.mark.parametrize("shape", [(), (3,)])
def test_nodal_gradient_is_exact_for_linear_fields(shape):
    mesh = mesh_plate(1.5, [], 0.2)
    slopes = np.random.default_rng(0).normal(size=shape + (2,))
    values = mesh.points @ slopes.reshape(-1, 2).T + 0.5
    gradient = nodal_gradient(mesh.points, mesh.triangles, values.reshape((-1,) + shape))
    assert gradient.shape == (len(mesh.points),) + shape + (2,)
    np.testing.assert_allclose(gradient, np.broadcast_to(slopes, gradient.shape), atol=1e-12)


GENERATE_TWICE = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="[%(name)s][%(levelname)s] %(message)s")
from meshgnn.data.generate import generate_samples
from meshgnn.data.sources import get_source
for workers in (1, 2):  # in this process, then in two worker processes (which inherit INFO logging)
    generate_samples(get_source("heat2d"), 2, 0, 0.2, 1, workers)
"""


@pytest.mark.slow
def test_generation_logs_no_solver_info_lines_in_the_main_process_or_in_workers():
    proc = subprocess.run([sys.executable, "-c", GENERATE_TWICE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[skfem" not in proc.stderr, proc.stderr[:500]
    assert proc.stderr.count("[meshgnn.data][INFO] generating heat2d: 2/2") == 2  # our own INFO lines stay
