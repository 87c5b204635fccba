"""Steady incompressible Navier-Stokes on triangle meshes: Taylor-Hood P2/P1 and Newton's method.

    (u . grad) u - nu lap u + grad p = 0,   div u = 0   (density 1)

Velocity is Dirichlet on the facets the caller lists (inlet profile, no-slip walls and
obstacles); every other boundary facet is a "do-nothing" outflow, nu grad u . n - p n = 0,
which is the natural condition of the gradient (not symmetric-gradient) form of the viscous
term, so it costs nothing and fixes the pressure level there. Taylor-Hood is inf-sup stable,
so no stabilisation term changes the discrete problem: the solver converges at the textbook
orders (velocity 3, pressure 2 in L2), which the Kovasznay test checks.

Newton starts from the Stokes solution, which has the right boundary data and mass balance
and is close to the Navier-Stokes one at the moderate Reynolds numbers of steady flow past
an obstacle (Re <= ~50 on the obstacle scale); from there Newton converges quadratically in
a handful of steps, where Picard iteration would take tens. Each step is one sparse direct
solve (SuperLU), so no iterative-solver tolerance enters the result.

Like meshgnn.data.fem, the solver knows nothing of channels or obstacles: the generators
pass node pairs and a velocity callable.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import splu

from meshgnn.data.fem import _facet_indices, _mesh, _skfem

if TYPE_CHECKING:
    from skfem import BilinearForm, CellBasis, Functional, LinearForm

# P2 velocity products reach degree 5 in the convection term; the degree-4 rule (6 points)
# keeps P2 mass and stiffness exact, and Newton stays exact for the discrete problem it defines.
_INTORDER = 4

# SuperLU's column ordering: COLAMD fills the saddle-point LU about half as much as minimum
# degree on A^T + A (10.2M against 20.4M factor entries, 5.6x faster, at 27k dofs).
_PERMUTATION = "COLAMD"


@dataclass(frozen=True)
class FlowSolution:
    """Vertex values of a steady flow and how the solve went.

    residual:   the final relative Newton update, ||x_k - x_(k-1)|| / ||x_k|| over all velocity
                and pressure dofs (the quantity the tolerance is checked against).
    divergence: ||div u||_L2 / ||grad u||_L2 of the discrete P2 velocity: Taylor-Hood conserves
                mass only weakly (against P1 pressures), so this says how well it did.
    """

    velocity: np.ndarray  # [N, 2] at the mesh vertices (the P2 field's vertex dofs)
    pressure: np.ndarray  # [N] at the vertices (P1)
    iterations: int  # Newton iterations taken
    residual: float
    divergence: float


@dataclass(frozen=True)
class FlowFields:
    """The whole discrete solution, for quadrature on the P2/P1 fields (error norms, fluxes)
    and the cost split of the solve.

    velocity: [velocity_basis.N] P2 dofs; pressure: [pressure_basis.N] P1 dofs.
    assembly_seconds: bases, Stokes blocks, convection per step, boundary data, condensing;
    solve_seconds: the sparse LU factorisations and triangular solves.
    """

    velocity_basis: CellBasis
    pressure_basis: CellBasis
    velocity: np.ndarray
    pressure: np.ndarray
    iterations: int
    residual: float
    assembly_seconds: float
    solve_seconds: float


def solve_navier_stokes(points: np.ndarray, triangles: np.ndarray, viscosity: float,
                        velocity_edges: np.ndarray, velocity: Callable[[np.ndarray], np.ndarray], *,
                        tolerance: float = 1e-10, max_iterations: int = 25) -> FlowSolution:
    """Steady flow with `velocity` ([2, K] positions -> [2, K] velocities) held on the
    `velocity_edges` ([M, 2] boundary node pairs) and do-nothing outflow on the rest of the
    boundary; vertex values of the Taylor-Hood solution.

    Raises ValueError when Newton has not converged within `max_iterations`."""
    fields = solve_navier_stokes_fields(points, triangles, viscosity, velocity_edges, velocity,
                                        tolerance=tolerance, max_iterations=max_iterations)
    return FlowSolution(
        velocity=fields.velocity[fields.velocity_basis.nodal_dofs].T,
        pressure=fields.pressure[fields.pressure_basis.nodal_dofs[0]],
        iterations=fields.iterations,
        residual=fields.residual,
        divergence=relative_divergence(fields),
    )


def solve_navier_stokes_fields(points: np.ndarray, triangles: np.ndarray, viscosity: float,
                               velocity_edges: np.ndarray, velocity: Callable[[np.ndarray], np.ndarray], *,
                               tolerance: float = 1e-10, max_iterations: int = 25) -> FlowFields:
    """`solve_navier_stokes`, returning the P2/P1 fields themselves (see FlowFields).

    If every boundary facet carries a velocity, the pressure is fixed only up to a constant:
    its first dof is pinned to 0 for a regular system and the result shifted to zero mean."""
    fe, forms = _skfem(), _forms()
    start = time.perf_counter()
    mesh = _mesh(points, triangles)
    ubasis = fe.Basis(mesh, fe.ElementVector(fe.ElementTriP2()), intorder=_INTORDER)
    pbasis = fe.Basis(mesh, fe.ElementTriP1(), intorder=_INTORDER)
    nu_, np_ = ubasis.N, pbasis.N
    viscous = fe.asm(forms.viscous, ubasis, nu=viscosity)
    divergence = fe.asm(forms.divergence, ubasis, pbasis)  # [np_, nu_]: (div u, q)

    facets = _facet_indices(mesh, velocity_edges)
    held, state = _velocity_dofs(ubasis, facets, velocity)
    pinned = np.setdiff1d(mesh.boundary_facets(), facets).size == 0
    if pinned:
        held = np.r_[held, nu_]  # the first pressure dof, held at 0
    state = np.r_[state, np.zeros(np_)]
    timer = _Timer(assembly=time.perf_counter() - start)

    def step(convection: sparse.spmatrix | None, load: np.ndarray) -> np.ndarray:
        """The flow that solves the (linearised) system with right-hand side [load; 0]."""
        with timer.measure("assembly"):
            block = viscous if convection is None else viscous + convection
            matrix = sparse.bmat([[block, -divergence.T], [-divergence, None]], format="csr")
            system, rhs, x, free = fe.condense(matrix, np.r_[load, np.zeros(np_)], x=state, D=held)
        with timer.measure("solve"):
            x = x.copy()
            x[free] = splu(system.tocsc(), permc_spec=_PERMUTATION).solve(rhs)
        return x

    state = step(None, np.zeros(nu_))  # Stokes
    residual, iterations = np.inf, 0
    while not residual < tolerance and iterations < max_iterations:
        iterations += 1
        with timer.measure("assembly"):
            current = ubasis.interpolate(state[:nu_])
            # Newton about U: J(U) x_new = c(U), with J = viscous + N(U) + M(U) the Jacobian and
            # c(U) = ((U.grad) U, v), because N(U) U = M(U) U = c(U) (the linear terms cancel).
            convection = fe.asm(forms.convection, ubasis, previous=current)
            load = fe.asm(forms.advection, ubasis, previous=current)
        new = step(convection, load)
        residual = float(np.linalg.norm(new - state) / max(np.linalg.norm(new), np.finfo(float).tiny))
        state = new
        if not np.isfinite(residual):  # diverged: no later step recovers from inf or nan
            break
    if not residual < tolerance:
        raise ValueError(f"navier_stokes: Newton did not converge in {iterations} iterations (relative update "
                         f"{residual:.3g} > tolerance {tolerance:g}) at viscosity {viscosity:g}")

    pressure = state[nu_:]
    if pinned:
        mean = fe.Functional(lambda w: w.p).assemble(pbasis, p=pbasis.interpolate(pressure)) / _area(pbasis)
        pressure = pressure - mean
    return FlowFields(ubasis, pbasis, state[:nu_], pressure, iterations, residual, timer.assembly, timer.solve)


def relative_divergence(fields: FlowFields) -> float:
    """||div u||_L2 / ||grad u||_L2 of the P2 velocity (0 for a field at rest)."""
    u = fields.velocity_basis.interpolate(fields.velocity)
    div2 = _forms().divergence_squared.assemble(fields.velocity_basis, u=u)
    grad2 = _forms().gradient_squared.assemble(fields.velocity_basis, u=u)
    return float(np.sqrt(div2 / grad2)) if grad2 > 0 else 0.0


def _area(basis: CellBasis) -> float:
    return float(_skfem().Functional(lambda w: 1.0 + 0.0 * w.x[0]).assemble(basis))


class _Timer:
    """Seconds spent in assembly and in the sparse solves."""

    def __init__(self, assembly: float = 0.0) -> None:
        self.assembly, self.solve = assembly, 0.0

    @contextlib.contextmanager
    def measure(self, name: str):
        start = time.perf_counter()
        yield
        setattr(self, name, getattr(self, name) + time.perf_counter() - start)


def _velocity_dofs(ubasis: CellBasis, facets: np.ndarray,
                   velocity: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The P2 dofs on `facets` (vertex and edge-midpoint dofs of both components) and a
    velocity dof vector holding `velocity` there (zero elsewhere)."""
    dofs = ubasis.get_dofs(facets=facets)
    state = np.zeros(ubasis.N)
    held = []
    for component in range(2):
        index = dofs.all([f"u^{component + 1}"])
        state[index] = np.asarray(velocity(ubasis.doflocs[:, index]))[component]
        held.append(index)
    return np.concatenate(held), state


class _Forms(NamedTuple):
    viscous: "BilinearForm"
    divergence: "BilinearForm"
    convection: "BilinearForm"
    advection: "LinearForm"
    divergence_squared: "Functional"
    gradient_squared: "Functional"


@functools.cache
def _forms() -> _Forms:
    """The forms of the Taylor-Hood system (built with scikit-fem, so on first use)."""
    fe = _skfem()
    from skfem.helpers import ddot, div, dot, grad, mul

    def viscous(u, v, w):
        return w.nu * ddot(grad(u), grad(v))

    def divergence(u, q, w):
        return div(u) * q

    def convection(u, v, w):  # the Jacobian of (U.grad)U at U = w.previous, applied to u
        U = w.previous
        return dot(mul(grad(u), U) + mul(grad(U), u), v)

    def advection(v, w):
        U = w.previous
        return dot(mul(grad(U), U), v)

    def divergence_squared(w):
        return div(w.u) ** 2

    def gradient_squared(w):
        return ddot(grad(w.u), grad(w.u))

    return _Forms(fe.BilinearForm(viscous), fe.BilinearForm(divergence), fe.BilinearForm(convection),
                  fe.LinearForm(advection), fe.Functional(divergence_squared), fe.Functional(gradient_squared))


def kovasznay(reynolds: float) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    """Kovasznay's exact solution (velocity, pressure up to a constant) at `reynolds` = 1 / nu:
    a steady Navier-Stokes flow behind a grid, smooth, with convection and viscosity both
    active, which is why it measures the solver's convergence orders (test and benchmark)."""
    rate = reynolds / 2 - np.sqrt(reynolds**2 / 4 + 4 * np.pi**2)

    def velocity(x: np.ndarray) -> np.ndarray:
        decay = np.exp(rate * x[0])
        return np.stack([1 - decay * np.cos(2 * np.pi * x[1]), rate / (2 * np.pi) * decay * np.sin(2 * np.pi * x[1])])

    def pressure(x: np.ndarray) -> np.ndarray:
        return 0.5 * (1 - np.exp(2 * rate * x[0]))

    return velocity, pressure


def l2_errors(fields: FlowFields, velocity: Callable[[np.ndarray], np.ndarray],
              pressure: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float]:
    """L2 errors of the P2 velocity and P1 pressure against exact fields, by quadrature on the
    fields themselves (not at vertices); both pressures have their mean removed first, as an
    exact pressure is known only up to a constant."""
    fe = _skfem()
    ubasis, pbasis = fields.velocity_basis, fields.pressure_basis
    u, p = ubasis.interpolate(fields.velocity), pbasis.interpolate(fields.pressure)
    shift = fe.Functional(lambda w: w.p - pressure(w.x)).assemble(pbasis, p=p) / _area(pbasis)
    velocity_error = fe.Functional(lambda w: ((w.u - velocity(w.x)) ** 2).sum(axis=0)).assemble(ubasis, u=u)
    pressure_error = fe.Functional(lambda w: (w.p - pressure(w.x) - shift) ** 2).assemble(pbasis, p=p)
    return float(np.sqrt(velocity_error)), float(np.sqrt(pressure_error))
