"""The 3D elasticity source: its P1 tet solver, its mesh, its data contract and its baseline."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from skfem import Basis, ElementTetP1, ElementVector, MeshTet, asm

from conftest import compose_config
from meshgnn.config import validate
from meshgnn.data.fem import _forms, lame, nodal_gradient_3d, solve_elasticity_3d
from meshgnn.data.graph import edges_from_cells
from meshgnn.data.sources import SOURCES, elasticity3d
from meshgnn.data.sources.elasticity3d import MARGIN, Block, mesh_block, random_block

MESH_SIZE = 0.2  # coarse keeps the file fast; the generator is size-agnostic
MAX_HOLES = 3
INDICES = range(6)
SPEC = elasticity3d.SPEC


@pytest.fixture(scope="module")
def samples():
    return {i: elasticity3d.generate(i, 0, MESH_SIZE, MAX_HOLES) for i in INDICES}


def block_of(index: int, seed: int = 0, max_holes: int = MAX_HOLES) -> Block:
    """The geometry `generate` drew: the block is the first thing drawn from its rng."""
    return random_block(np.random.default_rng([seed, index]), max_holes)


def faces_of(tets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct faces (sorted node triples) and how many tets share each."""
    faces = np.sort(tets[:, [0, 1, 2, 0, 1, 3, 0, 2, 3, 1, 2, 3]].reshape(-1, 3), axis=1)
    return np.unique(faces, axis=0, return_counts=True)


def volumes(points: np.ndarray, tets: np.ndarray) -> np.ndarray:
    p = points[tets]
    return np.linalg.det(p[:, 1:] - p[:, :1]) / 6.0


def solid_volume(block: Block) -> float:
    """Block volume minus the volume of the union of its cutouts (exact, on the plane cells)."""
    planes = elasticity3d._grid_planes(block)
    centres = np.stack(np.meshgrid(*[(p[1:] + p[:-1]) / 2 for p in planes], indexing="ij"), -1)
    sizes = np.einsum("i,j,k->ijk", *[np.diff(p) for p in planes])
    solid = np.ones(sizes.shape, dtype=bool)
    for box in block.cutouts:
        solid &= ~((centres > box.lo) & (centres < box.hi)).all(axis=-1)
    return float(sizes[solid].sum())


# --- (a) the solver against an exact linear solution ---------------------------------------


def test_solver_reproduces_triaxial_uniform_stress_exactly():
    youngs_modulus, poisson_ratio = 1.7, 0.3
    stress = np.array([0.8, -0.3, 0.5])  # normal stress on the x = Lx, y = 1, z = Lz faces
    block = Block(length=1.6, depth=0.7)
    mesh = mesh_block(block, 0.25)
    x = mesh.points
    # Rollers on the three faces through the origin: each holds only its normal component,
    # so the block deforms freely and the exact field is linear, which P1 represents exactly.
    fixed = x == 0.0
    far = np.array(block.extent)
    loaded = (x == far)[mesh.boundary_faces].all(axis=1).any(axis=1)

    def traction(p: np.ndarray) -> np.ndarray:
        on_face = [np.abs(p[a] - far[a]) < 1e-9 for a in range(3)]
        return np.stack([np.where(on_face[a], stress[a], 0.0) for a in range(3)])

    displacement, von_mises = solve_elasticity_3d(
        x, mesh.tets, youngs_modulus, poisson_ratio, fixed, mesh.boundary_faces[loaded], traction
    )

    strain = (stress * (1 + poisson_ratio) - poisson_ratio * stress.sum()) / youngs_modulus
    np.testing.assert_allclose(displacement, x * strain, rtol=0, atol=1e-10)
    exact_von_mises = np.sqrt(0.5 * ((stress - np.roll(stress, 1)) ** 2).sum())
    np.testing.assert_allclose(von_mises, exact_von_mises, rtol=0, atol=1e-10)


def test_nodal_gradient_3d_is_exact_for_linear_fields():
    mesh = mesh_block(block_of(1), 0.3)
    slopes = np.random.default_rng(0).normal(size=(2, 3))
    gradient = nodal_gradient_3d(mesh.points, mesh.tets, mesh.points @ slopes.T + 0.5)
    assert gradient.shape == (len(mesh.points), 2, 3)
    np.testing.assert_allclose(gradient, np.broadcast_to(slopes, gradient.shape), atol=1e-12)


# --- (b) the generator: reproducibility, mesh, data contract ----------------------------------


def test_registered_with_its_spec():
    source = SOURCES["elasticity3d"]
    assert source.spec is SPEC and source.make is elasticity3d.generate
    assert SPEC.spatial_dim == 3 and SPEC.node_types[0] == "interior"


def test_config_composes_and_validates():
    cfg = compose_config(["data=elasticity3d"])
    assert cfg.data.name == "elasticity3d"
    validate(cfg)


def test_same_seed_and_index_give_identical_samples(samples):
    again = elasticity3d.generate(3, 0, MESH_SIZE, MAX_HOLES)
    first = samples[3]
    np.testing.assert_array_equal(first.points, again.points)
    np.testing.assert_array_equal(first.cells[0][1], again.cells[0][1])
    np.testing.assert_array_equal(first.node_type, again.node_type)
    np.testing.assert_array_equal(first.globals, again.globals)
    for group in ("inputs", "targets", "baseline"):
        a, b = getattr(first, group), getattr(again, group)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{group}/{key}")
    other = elasticity3d.generate(4, 0, MESH_SIZE, MAX_HOLES)
    assert other.points.shape != first.points.shape or (other.points != first.points).any()


def test_geometry_draws_do_not_depend_on_mesh_size():
    coarse = elasticity3d.generate(2, 0, 0.3, MAX_HOLES)
    fine = elasticity3d.generate(2, 0, MESH_SIZE, MAX_HOLES)
    np.testing.assert_array_equal(coarse.globals, fine.globals)


def test_mesh_is_conforming_positive_connected_and_exact(samples):
    assert sum(len(block_of(i).cutouts) for i in INDICES) >= 3, "the test must see cutouts"
    for index, sample in samples.items():
        block = block_of(index)
        [(kind, tets)] = sample.cells
        points = sample.points
        assert kind == "tetra" and tets.dtype == np.int64 and tets.shape[1] == 4
        assert np.array_equal(np.unique(tets), np.arange(len(points))), "unused nodes kept"
        assert len(np.unique(points, axis=0)) == len(points)
        vol = volumes(points, tets)
        assert (vol > 0).all(), "tets must be positively oriented"
        # Exactly the cutouts are removed.
        np.testing.assert_allclose(vol.sum(), solid_volume(block), rtol=1e-12)

        faces, count = faces_of(tets)
        assert count.max() == 2
        # Every face seen once lies on the part's surface; any other would be a hanging face.
        centre = points[faces[count == 1]].mean(axis=1)
        extent = np.array(block.extent)
        on_surface = ((np.abs(centre) < 1e-12) | (np.abs(centre - extent) < 1e-12)).any(axis=1)
        for box in block.cutouts:
            lo, hi = np.array(box.lo), np.array(box.hi)
            inside = ((centre >= lo - 1e-12) & (centre <= hi + 1e-12)).all(axis=1)
            on_plane = ((np.abs(centre - lo) < 1e-12) | (np.abs(centre - hi) < 1e-12)).any(axis=1)
            on_surface |= inside & on_plane
        assert on_surface.all(), f"sample {index}: {(~on_surface).sum()} hanging faces"

        # One piece, connected through shared faces (an edge or a vertex would not carry load).
        all_faces = np.sort(tets[:, [0, 1, 2, 0, 1, 3, 0, 2, 3, 1, 2, 3]].reshape(-1, 3), axis=1)
        owner = np.repeat(np.arange(len(tets)), 4)
        order = np.lexsort(all_faces.T[::-1])
        same = (all_faces[order[1:]] == all_faces[order[:-1]]).all(axis=1)
        a, b = owner[order[:-1]][same], owner[order[1:]][same]
        graph = sparse.coo_matrix((np.ones(len(a)), (a, b)), shape=(len(tets), len(tets)))
        assert connected_components(graph, directed=False)[0] == 1

        # Cutouts keep off the clamped and loaded faces, which stay whole.
        for box in block.cutouts:
            assert box.lo[0] >= MARGIN and box.hi[0] <= block.length - MARGIN
        for x_face, name in ((0.0, "clamped"), (block.length, "loaded")):
            on_face = faces[(count == 1) & (points[faces, 0] == x_face).all(axis=1)]
            p = points[on_face]
            area = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)
            np.testing.assert_allclose(area.sum(), block.depth, rtol=1e-12, err_msg=name)


def test_sample_matches_spec_and_boundary_conditions(samples):
    for index, sample in samples.items():
        n = sample.num_nodes
        g = dict(zip(SPEC.global_names, sample.globals))
        assert sample.points.shape == (n, 3) and sample.points.dtype == np.float64
        assert sample.node_type.shape == (n,) and sample.node_type.dtype == np.int64
        for group, fields in [
            (sample.inputs, SPEC.inputs),
            (sample.targets, SPEC.targets),
            (sample.baseline, SPEC.targets),
        ]:
            assert list(group) == [f.name for f in fields]
            for f in fields:
                assert group[f.name].shape == (n, f.dim) and group[f.name].dtype == np.float64
                assert np.isfinite(group[f.name]).all()
        assert sample.globals.shape == (len(SPEC.global_names),)
        assert sample.globals.dtype == np.float64
        np.testing.assert_allclose(sample.points.max(axis=0), [g["Lx"], 1.0, g["Lz"]])
        np.testing.assert_allclose(sample.points.min(axis=0), 0.0)
        assert 1.5 <= g["Lx"] <= 2.5 and 0.5 <= g["Lz"] <= 1.0
        np.testing.assert_array_equal(sample.inputs["youngs_modulus"], g["E"])
        np.testing.assert_array_equal(sample.inputs["poisson_ratio"], g["nu"])

        node_type = np.array(SPEC.node_types)[sample.node_type]
        x = sample.points[:, 0]
        np.testing.assert_array_equal(node_type == "clamped", x == 0.0)
        np.testing.assert_array_equal(node_type == "loaded", x == g["Lx"])
        faces, count = faces_of(sample.cells[0][1])
        on_boundary = np.zeros(n, dtype=bool)
        on_boundary[faces[count == 1]] = True
        np.testing.assert_array_equal(node_type == "interior", ~on_boundary)
        assert (node_type == "interior").any() and (node_type == "free").any()

        clamped, loaded = node_type == "clamped", node_type == "loaded"
        np.testing.assert_array_equal(sample.targets["displacement"][clamped], 0.0)
        assert np.abs(sample.targets["displacement"][~clamped]).max() > 0
        assert (sample.targets["von_mises"] >= 0).all()
        np.testing.assert_array_equal(sample.inputs["traction"][~loaded], 0.0)
        y = sample.points[loaded, 1]
        ends = sample.globals[2:8].reshape(3, 2)
        expected = ends[:, 0] + (ends[:, 1] - ends[:, 0]) * y[:, None]
        np.testing.assert_allclose(sample.inputs["traction"][loaded], expected, atol=1e-15)


def test_clamp_reaction_balances_the_applied_end_force(samples):
    """The solve is right globally: the load it saw is the end force, and the clamp holds it."""
    for sample in list(samples.values())[:2]:
        g = dict(zip(SPEC.global_names, sample.globals))
        [(_, tets)] = sample.cells
        mesh = MeshTet(sample.points.T.copy(), tets.T.copy())
        basis = Basis(mesh, ElementVector(ElementTetP1()), intorder=1)
        lam, mu = lame(g["E"], g["nu"])
        stiffness = asm(_forms().elasticity, basis, lam=lam, mu=mu)
        u = np.zeros(basis.N)
        u[basis.nodal_dofs.T] = sample.targets["displacement"]
        internal = (stiffness @ u)[basis.nodal_dofs.T]  # [N, 3] nodal internal forces
        clamped = sample.node_type == SPEC.node_types.index("clamped")
        ends = sample.globals[2:8].reshape(3, 2)
        applied = ends.mean(axis=1) * g["Lz"]  # a traction linear in y over the 1 x Lz face
        # Off the clamp K u is the external load; on it, the support's reaction.
        np.testing.assert_allclose(internal[~clamped].sum(axis=0), applied, rtol=1e-8, atol=1e-14)
        np.testing.assert_allclose(internal[clamped].sum(axis=0), -applied, rtol=1e-8, atol=1e-14)


# --- (c) the baseline -------------------------------------------------------------------------


def test_baseline_is_close_on_blocks_without_cutouts():
    for index in range(3):
        sample = elasticity3d.generate(index, 0, MESH_SIZE, 0)
        for name in ("displacement", "von_mises"):
            truth, guess = sample.targets[name], sample.baseline[name]
            error = np.linalg.norm(guess - truth) / np.linalg.norm(truth)
            assert error < 1.0, (index, name, error)
        clamped = sample.node_type == SPEC.node_types.index("clamped")
        np.testing.assert_allclose(sample.baseline["displacement"][clamped, 0], 0.0, atol=1e-15)


# --- (d) graph edges --------------------------------------------------------------------------


def test_graph_edges_are_the_tet_edges_both_ways(samples):
    sample = samples[1]
    [(kind, tets)] = sample.cells
    assert kind == "tetra"
    edge_index = edges_from_cells(sample.cells, sample.num_nodes).numpy()
    have = set(zip(*edge_index.tolist()))
    assert len(have) == edge_index.shape[1], "edges must be unique"
    # Each tet's 6 edges, in both directions, and nothing else.
    pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    expected = {(int(t[a]), int(t[b])) for t in tets for a, b in pairs}
    assert have == expected | {(b, a) for a, b in expected}
