"""P1 finite-element solvers (scikit-fem) on plain (points, triangles) and (points, tets) meshes.

The solvers know nothing about plates or sources: boundary conditions arrive as node masks and
facet lists, so the same code runs the dataset generators and the analytic verification tests.
`refine_uniform` gives the generators a finer mesh of the same geometry to solve reference
fields on (data.label_refinement).
Derived nodal fields (heat flux, stress) go through `nodal_gradient`, which the baselines use
too, so a baseline and the truth are always post-processed identically.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from scipy import sparse

if TYPE_CHECKING:
    from skfem import Basis, BilinearForm, FacetBasis, MeshTet, MeshTri

# A field of position: takes coordinates shaped [d, ...] (d = 2 or 3) and returns values shaped
# [...] (scalar) or [d, ...] (vector), the layout scikit-fem uses at quadrature points.
SpaceFunction = Callable[[np.ndarray], np.ndarray]


def nodal_gradient(points: np.ndarray, triangles: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Gradient of the P1 interpolant of `values`, recovered at nodes.

    The P1 gradient is constant per triangle and discontinuous across edges; averaging it
    over the triangles around each node, weighted by area, gives a continuous nodal field
    that is exact for linear data.

    values: [N] or [N, C]. Returns [N, 2] or [N, C, 2].
    """
    p0, p1, p2 = (points[triangles[:, i]] for i in range(3))
    e1, e2 = p1 - p0, p2 - p0
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]  # twice the signed area
    v = values.reshape(len(points), -1)
    dv1 = v[triangles[:, 1]] - v[triangles[:, 0]]  # [T, C]
    dv2 = v[triangles[:, 2]] - v[triangles[:, 0]]
    # Solve [e1; e2] g = [dv1; dv2] per triangle (Cramer's rule).
    gx = (dv1 * e2[:, 1, None] - dv2 * e1[:, 1, None]) / det[:, None]
    gy = (dv2 * e1[:, 0, None] - dv1 * e2[:, 0, None]) / det[:, None]
    element_gradient = np.stack([gx, gy], axis=-1)  # [T, C, 2]

    gradient = _measure_weighted_nodal_mean(triangles, 0.5 * np.abs(det), element_gradient, len(points))
    return gradient.reshape(values.shape + (2,))


class Refinement(NamedTuple):
    """A uniformly refined triangle mesh: `points` starts with the coarse mesh's points in
    their order (so a fine solution restricted to the coarse nodes is `values[:num_coarse]`);
    `facet_origin[i]` is the coarse facet that fine facet i is a piece of."""

    points: np.ndarray
    triangles: np.ndarray
    facets: np.ndarray
    facet_origin: np.ndarray


def refine_uniform(points: np.ndarray, triangles: np.ndarray, facets: np.ndarray, times: int) -> Refinement:
    """Split every triangle into 4 at its edge midpoints, `times` times, carrying the boundary
    facets along (each split in 2), so reference fields can be solved on a finer mesh of the
    very same discrete geometry and read back at the coarse nodes. Counter-clockwise triangles
    stay counter-clockwise."""
    origin = np.arange(len(facets))
    for _ in range(times):
        n = np.int64(len(points))  # int64 codes: int32 node numbers would overflow n * n
        edges = np.sort(triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1).astype(np.int64)
        codes, inverse = np.unique(edges[:, 0] * n + edges[:, 1], return_inverse=True)
        ends = np.c_[codes // n, codes % n]
        ab, bc, ca = (n + inverse.reshape(-1, 3)).T  # the midpoints of edges (0, 1), (1, 2), (2, 0)
        a, b, c = triangles.T
        triangles = np.concatenate([np.c_[a, ab, ca], np.c_[ab, b, bc], np.c_[ca, bc, c], np.c_[ab, bc, ca]])
        points = np.concatenate([points, 0.5 * (points[ends[:, 0]] + points[ends[:, 1]])])
        facet_codes = facets.min(axis=1).astype(np.int64) * n + facets.max(axis=1)
        middle = n + np.searchsorted(codes, facet_codes)
        if not np.array_equal(codes[middle - n], facet_codes):
            raise ValueError("refine_uniform: facets contains node pairs that are not triangle edges")
        facets = np.concatenate([np.c_[facets[:, 0], middle], np.c_[middle, facets[:, 1]]])
        origin = np.concatenate([origin, origin])
    return Refinement(points, triangles, facets, origin)


@functools.cache
def _skfem() -> ModuleType:
    """scikit-fem, imported on first use: only generating data solves anything, and the import
    (~0.5 s) would otherwise be paid by every `train.py` and `meshgnn` process.

    Its INFO records (~8 a solve: basis set-up, assembly, the linear solve) would flood the
    console and train.log of every dataset generation, in worker processes too (they inherit
    the root logger's INFO level), so only its warnings and errors get through. Set here, in
    whichever process solves, before any of its records."""
    logging.getLogger("skfem").setLevel(logging.WARNING)
    import skfem

    return skfem


class _Forms(NamedTuple):
    laplace: "BilinearForm"
    elasticity: "BilinearForm"


@functools.cache
def _forms() -> _Forms:
    """The bilinear forms the solvers assemble (built with scikit-fem, so on first use)."""
    from skfem.helpers import ddot, dot, grad, sym_grad, trace

    def laplace(u, v, w):
        return dot(grad(u), grad(v))

    def elasticity(u, v, w):
        eps_u, eps_v = sym_grad(u), sym_grad(v)
        return w.lam * trace(eps_u) * trace(eps_v) + 2 * w.mu * ddot(eps_u, eps_v)

    return _Forms(_skfem().BilinearForm(laplace), _skfem().BilinearForm(elasticity))


def _measure_weighted_nodal_mean(cells: np.ndarray, measure: np.ndarray, element_values: np.ndarray,
                                 num_points: int) -> np.ndarray:
    """[N, ...]: at each node, the mean of its cells' values weighted by cell area/volume."""
    node_element = sparse.csr_matrix(
        (np.repeat(measure, cells.shape[1]), (cells.ravel(), np.repeat(np.arange(len(cells)), cells.shape[1]))),
        shape=(num_points, len(cells)),
    )
    weight = np.asarray(node_element.sum(axis=1))
    return node_element @ element_values.reshape(len(cells), -1) / weight


def solve_heat(
    points: np.ndarray,
    triangles: np.ndarray,
    conductivity: float,
    source: SpaceFunction | None,
    dirichlet_nodes: np.ndarray,
    dirichlet_values: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Solve -div(k grad T) = q with T fixed on `dirichlet_nodes`, zero flux elsewhere.

    Returns nodal temperature [N] and nodal heat flux -k grad T [N, 2].
    """
    fe = _skfem()
    basis = fe.Basis(_mesh(points, triangles), fe.ElementTriP1())
    stiffness = conductivity * fe.asm(_forms().laplace, basis)
    load = np.zeros(basis.N)
    if source is not None:
        load = fe.asm(fe.LinearForm(lambda v, w: source(w.x) * v), basis)
    temperature = np.zeros(basis.N)
    temperature[dirichlet_nodes] = dirichlet_values
    temperature = fe.solve(*fe.condense(stiffness, load, x=temperature, D=dirichlet_nodes))
    return temperature, -conductivity * nodal_gradient(points, triangles, temperature)


def solve_elasticity(
    points: np.ndarray,
    triangles: np.ndarray,
    youngs_modulus: float,
    poisson_ratio: float,
    fixed: np.ndarray,
    traction_facets: np.ndarray,
    traction: SpaceFunction,
) -> tuple[np.ndarray, np.ndarray]:
    """Plane-stress linear elasticity with zero displacement on fixed components.

    fixed:           [N, 2] bool, True where that displacement component is held at 0
                     (both True = clamped; one True = roller).
    traction_facets: [F, 2] boundary node pairs carrying `traction` (vector of position);
                     the rest of the boundary is traction-free.

    Returns nodal displacement [N, 2] and nodal von Mises stress [N].
    """
    fe = _skfem()
    mesh = _mesh(points, triangles)
    basis = fe.Basis(mesh, fe.ElementVector(fe.ElementTriP1()))
    lam, mu = plane_stress_lame(youngs_modulus, poisson_ratio)
    facet_basis = fe.FacetBasis(mesh, basis.elem, facets=_facet_indices(mesh, traction_facets))
    displacement = _elastic_displacement(basis, facet_basis, lam, mu, traction, fixed)

    du = nodal_gradient(points, triangles, displacement)  # [N, 2 (component), 2 (direction)]
    exx, eyy, exy = du[:, 0, 0], du[:, 1, 1], 0.5 * (du[:, 0, 1] + du[:, 1, 0])
    sxx = lam * (exx + eyy) + 2 * mu * exx
    syy = lam * (exx + eyy) + 2 * mu * eyy
    sxy = 2 * mu * exy
    return displacement, von_mises(sxx, syy, sxy)


def _elastic_displacement(basis: Basis, facet_basis: FacetBasis, lam: float, mu: float,
                          traction: SpaceFunction, fixed: np.ndarray) -> np.ndarray:
    """[N, dim] displacement: linear elasticity with `traction` on the facets and the
    `fixed` ([N, dim] bool) components held at zero (2D and 3D alike)."""
    from skfem.helpers import dot

    fe = _skfem()
    stiffness = fe.asm(_forms().elasticity, basis, lam=lam, mu=mu)
    load = fe.asm(fe.LinearForm(lambda v, w: dot(traction(w.x), v)), facet_basis)
    dofs = basis.nodal_dofs  # [dim, N]: dof of component c at node i
    u = fe.solve(*fe.condense(stiffness, load, D=dofs.T[fixed]))
    return u[dofs].T


def plane_stress_lame(youngs_modulus: float, poisson_ratio: float) -> tuple[float, float]:
    """Lamé parameters that turn the 2D elasticity operator into plane stress (thin plate)."""
    lam = youngs_modulus * poisson_ratio / (1 - poisson_ratio**2)
    mu = youngs_modulus / (2 * (1 + poisson_ratio))
    return lam, mu


def von_mises(sxx: np.ndarray, syy: np.ndarray, sxy: np.ndarray) -> np.ndarray:
    """Von Mises stress of a plane-stress state (szz = 0)."""
    return np.sqrt(sxx**2 - sxx * syy + syy**2 + 3 * sxy**2)


def nodal_gradient_3d(points: np.ndarray, tets: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Gradient of the P1 interpolant of `values` on a tetrahedral mesh, recovered at nodes.

    The 3D twin of `nodal_gradient`: the gradient is constant per tetrahedron and averaged
    over the tetrahedra around each node, weighted by volume (exact for linear data).

    values: [N] or [N, C]. Returns [N, 3] or [N, C, 3].
    """
    p0 = points[tets[:, 0]]
    edges = np.stack([points[tets[:, i]] - p0 for i in (1, 2, 3)], axis=1)  # [T, 3 (edge), 3]
    v = values.reshape(len(points), -1)
    dv = np.stack([v[tets[:, i]] - v[tets[:, 0]] for i in (1, 2, 3)], axis=1)  # [T, 3, C]
    # edges @ g = dv per tetrahedron, g[t, d, c] = d v_c / d x_d.
    element_gradient = np.linalg.solve(edges, dv).transpose(0, 2, 1)  # [T, C, 3]

    volume = np.abs(np.linalg.det(edges)) / 6.0
    gradient = _measure_weighted_nodal_mean(tets, volume, element_gradient, len(points))
    return gradient.reshape(values.shape + (3,))


def solve_elasticity_3d(
    points: np.ndarray,
    tets: np.ndarray,
    youngs_modulus: float,
    poisson_ratio: float,
    fixed: np.ndarray,
    traction_facets: np.ndarray,
    traction: SpaceFunction,
) -> tuple[np.ndarray, np.ndarray]:
    """3D linear elasticity (P1 tetrahedra) with zero displacement on fixed components.

    fixed:           [N, 3] bool, True where that displacement component is held at 0
                     (all True = clamped; some True = roller/symmetry).
    traction_facets: [F, 3] boundary node triples carrying `traction` (vector of position);
                     the rest of the boundary is traction-free.

    Returns nodal displacement [N, 3] and nodal von Mises stress [N]; the stress is the
    volume-weighted average of the (constant) element stresses around each node.
    """
    fe = _skfem()
    mesh = fe.MeshTet(np.ascontiguousarray(points.T), np.ascontiguousarray(tets.T), validate=False)
    # P1 strains are constant per element, so the one-point rule is exact for the stiffness
    # (and ~10x cheaper than the default); the traction load keeps its own exact rule.
    basis = fe.Basis(mesh, fe.ElementVector(fe.ElementTetP1()), intorder=1)
    lam, mu = lame(youngs_modulus, poisson_ratio)
    facet_basis = fe.FacetBasis(mesh, basis.elem, facets=_facet_indices_3d(mesh, traction_facets))
    displacement = _elastic_displacement(basis, facet_basis, lam, mu, traction, fixed)

    du = nodal_gradient_3d(points, tets, displacement)  # [N, 3 (component), 3 (direction)]
    strain = 0.5 * (du + du.transpose(0, 2, 1))
    volumetric = np.trace(strain, axis1=1, axis2=2)
    stress = 2 * mu * strain + lam * volumetric[:, None, None] * np.eye(3)
    return displacement, von_mises_3d(stress)


def lame(youngs_modulus: float, poisson_ratio: float) -> tuple[float, float]:
    """Lamé parameters (lambda, mu) of a 3D isotropic solid."""
    lam = youngs_modulus * poisson_ratio / ((1 + poisson_ratio) * (1 - 2 * poisson_ratio))
    mu = youngs_modulus / (2 * (1 + poisson_ratio))
    return lam, mu


def von_mises_3d(stress: np.ndarray) -> np.ndarray:
    """Von Mises stress of full 3D stress tensors [..., 3, 3]."""
    deviator = stress - np.trace(stress, axis1=-2, axis2=-1)[..., None, None] * np.eye(3) / 3
    return np.sqrt(1.5 * np.einsum("...ij,...ij->...", deviator, deviator))


def _mesh(points: np.ndarray, triangles: np.ndarray) -> MeshTri:
    # validate=False: the mesher already guarantees a clean mesh and validation costs time.
    return _skfem().MeshTri(
        np.ascontiguousarray(points.T), np.ascontiguousarray(triangles.T), validate=False
    )


def _facet_indices(mesh: MeshTri, node_pairs: np.ndarray) -> np.ndarray:
    """scikit-fem facet numbers of the given node pairs (scikit-fem stores pairs sorted).
    The pair codes are built in int64: scikit-fem keeps int32 facets and an int32 `nvertices`,
    whose product overflows past ~46k nodes (a refined mesh reaches that) and mismatches codes."""
    n = np.int64(mesh.nvertices)
    facets = mesh.facets.astype(np.int64)
    known = facets[0] * n + facets[1]
    order = np.argsort(known)
    pairs = np.asarray(node_pairs, dtype=np.int64)
    wanted = pairs.min(axis=1) * n + pairs.max(axis=1)
    found = np.searchsorted(known, wanted, sorter=order).clip(max=len(known) - 1)
    position = order[found]
    if not np.array_equal(known[position], wanted):
        raise ValueError("traction_facets contains node pairs that are not mesh edges")
    return position


def _facet_indices_3d(mesh: MeshTet, node_triples: np.ndarray) -> np.ndarray:
    """scikit-fem facet numbers of the given node triples (scikit-fem stores triples sorted)."""
    n = np.int64(mesh.nvertices)
    facets = mesh.facets.astype(np.int64)
    known = (facets[0] * n + facets[1]) * n + facets[2]
    order = np.argsort(known)
    triples = np.sort(np.asarray(node_triples, dtype=np.int64), axis=1)
    wanted = (triples[:, 0] * n + triples[:, 1]) * n + triples[:, 2]
    found = np.searchsorted(known, wanted, sorter=order).clip(max=len(known) - 1)
    position = order[found]
    if not np.array_equal(known[position], wanted):
        raise ValueError("traction_facets contains node triples that are not mesh faces")
    return position

