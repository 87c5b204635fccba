"""The Taylor-Hood Navier-Stokes solver against exact flows: Poiseuille (which P2/P1 holds
exactly), Kovasznay (convergence orders under refinement); mass conservation past an obstacle;
and a clear error when Newton does not converge."""

from __future__ import annotations

import numpy as np
import pytest
from skfem import FacetBasis, Functional, MeshTri
from skfem.helpers import dot

from meshgnn.data.fem import _facet_indices
from meshgnn.data.mesher import LEFT, RIGHT, Circle, mesh_plate
from meshgnn.data.navier_stokes import (kovasznay, l2_errors, relative_divergence, solve_navier_stokes,
                                       solve_navier_stokes_fields)

LENGTH, PEAK = 3.0, 1.5  # channel [0, LENGTH] x [0, 1], inlet centreline speed


def inlet_parabola(x: np.ndarray) -> np.ndarray:
    """Poiseuille profile on x == 0 and no-slip everywhere else the callable is asked."""
    inlet = np.isclose(x[0], 0.0)
    return np.stack([np.where(inlet, 4 * PEAK * x[1] * (1 - x[1]), 0.0), np.zeros_like(x[0])])


def channel_walls(mesh):
    """Every boundary facet except the outlet (x == LENGTH) carries a velocity."""
    return mesh.facets[mesh.facet_label != RIGHT]


@pytest.mark.parametrize("viscosity", [1.0, 0.01])
def test_poiseuille_is_exact(viscosity):
    mesh = mesh_plate(LENGTH, [], 0.25)
    flow = solve_navier_stokes(mesh.points, mesh.triangles, viscosity, channel_walls(mesh), inlet_parabola)
    x, y = mesh.points.T

    np.testing.assert_allclose(flow.velocity[:, 0], 4 * PEAK * y * (1 - y), rtol=0, atol=1e-10)
    np.testing.assert_allclose(flow.velocity[:, 1], 0.0, rtol=0, atol=1e-10)
    # The do-nothing outlet (nu du/dx - p = 0 with du/dx = 0) sets the pressure to 0 there.
    np.testing.assert_allclose(flow.pressure, 8 * viscosity * PEAK * (LENGTH - x), rtol=0, atol=1e-8)
    assert flow.divergence < 1e-10
    assert flow.residual < 1e-10 and flow.iterations >= 1


def kovasznay_errors(refinements: int) -> tuple[float, float]:
    """L2 errors (velocity, pressure) at Re 40 on [-0.5, 1] x [-0.5, 1.5], exact velocity on every side."""
    velocity, pressure = kovasznay(40.0)
    mesh = MeshTri.init_tensor(np.linspace(-0.5, 1.0, 4), np.linspace(-0.5, 1.5, 5)).refined(refinements)
    boundary = mesh.facets[:, mesh.boundary_facets()].T
    fields = solve_navier_stokes_fields(mesh.p.T, mesh.t.T, 1 / 40.0, boundary, velocity)
    return l2_errors(fields, velocity, pressure)


def test_kovasznay_converges_at_taylor_hood_orders():
    errors = np.array([kovasznay_errors(r) for r in (1, 2, 3)])  # h = 1/4 ... 1/16
    orders = np.log2(errors[:-1] / errors[1:])
    assert orders[:, 0].min() >= 2.5, f"velocity L2 orders {orders[:, 0]}"
    assert orders[:, 1].min() >= 1.5, f"pressure L2 orders {orders[:, 1]}"


def test_enclosed_flow_has_zero_mean_pressure():
    """With a velocity on every side the pressure level is free; the solver fixes its mean."""
    velocity, _ = kovasznay(40.0)
    mesh = MeshTri.init_tensor(np.linspace(-0.5, 1.0, 4), np.linspace(-0.5, 1.5, 5)).refined(1)
    fields = solve_navier_stokes_fields(mesh.p.T, mesh.t.T, 1 / 40.0, mesh.facets[:, mesh.boundary_facets()].T,
                                        velocity)
    basis = fields.pressure_basis
    mean = Functional(lambda w: w.p).assemble(basis, p=basis.interpolate(fields.pressure))
    assert abs(mean) < 1e-12 and np.abs(fields.pressure).max() > 0.1


def obstacle_flow(mesh_size: float):
    mesh = mesh_plate(LENGTH, [Circle(0.8, 0.5, 0.15)], mesh_size)
    fields = solve_navier_stokes_fields(mesh.points, mesh.triangles, 0.01, channel_walls(mesh), inlet_parabola)
    return mesh, fields


def flux(mesh, fields, label: int) -> float:
    """Outward flux of the P2 velocity through the facets labelled `label`."""
    facets = _facet_indices(fields.velocity_basis.mesh, mesh.facets[mesh.facet_label == label])
    basis = FacetBasis(fields.velocity_basis.mesh, fields.velocity_basis.elem, facets=facets, intorder=4)
    return float(Functional(lambda w: dot(w.u, w.n)).assemble(basis, u=basis.interpolate(fields.velocity)))


def test_mass_is_conserved_past_an_obstacle():
    divergences = []
    for mesh_size in (0.2, 0.1):
        mesh, fields = obstacle_flow(mesh_size)
        inflow, outflow = -flux(mesh, fields, LEFT), flux(mesh, fields, RIGHT)
        assert inflow == pytest.approx(2 / 3 * PEAK, rel=1e-10)  # P2 holds the parabola exactly
        assert outflow == pytest.approx(inflow, rel=1e-6)
        divergences.append(relative_divergence(fields))
    # Taylor-Hood holds div u = 0 only against P1 pressures; the rest is discretisation error,
    # largest at the obstacle's front stagnation point, and it falls with h (0.24, 0.13 here;
    # 0.046 at h = 0.05, 0.013 at h = 0.025).
    assert divergences[0] < 0.3
    assert divergences[1] < 0.6 * divergences[0]


def test_newton_that_does_not_converge_says_so():
    mesh = mesh_plate(LENGTH, [Circle(0.8, 0.5, 0.15)], 0.25)
    with pytest.raises(ValueError, match=r"did not converge in 1 iterations .* viscosity 0\.001"):
        solve_navier_stokes(mesh.points, mesh.triangles, 1e-3, channel_walls(mesh), inlet_parabola,
                            max_iterations=1)
