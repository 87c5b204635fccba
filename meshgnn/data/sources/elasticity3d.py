"""3D linear elasticity of cantilever blocks with box-shaped cutouts, on tetrahedral meshes.

A block [0, Lx] x [0, 1] x [0, Lz] (Lx in [1.5, 2.5], Lz in [0.5, 1]) with 0..max_holes random
axis-aligned box cutouts is clamped on its face x = 0 (all three displacement components) and
loaded on its face x = Lx by a traction (tx, ty, tz) that varies linearly from its value at
y = 0 to its value at y = 1 (and is constant in z); every other face, cutouts included, is
traction-free. Cutouts keep a ligament of at least `MARGIN` to the clamped and loaded faces,
may open onto the other faces (notches, slots, holes through the depth) or be closed cavities,
and never split the part. Traction ranges follow the 2D source (elasticity2d): the end shear
ranges are 10x (ty) and 20x (tz, the thinner direction) smaller than the axial one so that
stretching and both bendings give comparable stresses and strains stay ~1e-2.

Mesh: a structured tensor-product grid whose spacing is at most `mesh_size` and whose grid
planes include every cutout face, each hexahedron split into the 6 tetrahedra around its main
diagonal (Kuhn subdivision: the same diagonal direction in every hex, so neighbouring hexes
split their shared face the same way and the mesh is conforming). Tetrahedra whose centroid
lies inside a cutout are dropped (with cutout faces on grid planes this removes exactly the
cutouts) and unused nodes are removed. The geometry draws do not depend on `mesh_size`, so a
seed gives the same part at every resolution.

Baseline: Euler-Bernoulli bar + cantilever theory of the same block without cutouts, loaded by
the resultants of the end traction per unit cross-section area A = Lz: axial stress
a = mean(tx), shear stresses qy = mean(ty) and qz = mean(tz), and the couple per unit area
c = -(tx(1) - tx(0)) / 12 that the linear variation of tx carries about the mid-plane y = 1/2.
With eta = y - 1/2, zeta = z - Lz/2, s(x) = Lx x^2 / 2 - x^3 / 6 and the second moments per
unit area Iy / A = 1/12 (bending in y) and Iz / A = Lz^2 / 12 (bending in z):

    deflections  v(x) = (qy s(x) + c x^2 / 2) / (E / 12),   w(x) = qz s(x) / (E Lz^2 / 12)
    ux = a x / E - eta v'(x) - zeta w'(x)     (bar stretch + plane sections rotating)
    uy = v(x) - nu a eta / E                  (deflection + Poisson contraction of the bar)
    uz = w(x) - nu a zeta / E
    sxx = a - 12 (qy (Lx - x) + c) eta - 12 qz (Lx - x) zeta / Lz^2
    sxy = 3/2 qy (1 - 4 eta^2),  sxz = 3/2 qz (1 - 4 zeta^2 / Lz^2),  others 0   -> von Mises

It ignores the cutouts, the clamp's Poisson constraint, shear deformation, the torsion that tz
carries when it varies along y (its resultant then acts off the centre line), and the
anticlastic (Poisson) curvature of the cross-section; that is the part a network has to learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from meshgnn.data.fem import solve_elasticity_3d, von_mises_3d
from meshgnn.data.sample import FieldSpec, MeshSample, SourceSpec
from meshgnn.data.sources.elasticity2d import linear_traction, named_globals, traction_ends

SPEC = SourceSpec(
    node_types=("interior", "clamped", "loaded", "free"),
    inputs=(FieldSpec("traction", 3), FieldSpec("youngs_modulus", 1), FieldSpec("poisson_ratio", 1)),
    targets=(FieldSpec("displacement", 3), FieldSpec("von_mises", 1)),
    global_names=("E", "nu", "tx0", "tx1", "ty0", "ty1", "tz0", "tz1", "Lx", "Lz"),
    spatial_dim=3,
)
VERSION = 1

LENGTH_RANGE = (1.5, 2.5)  # Lx
DEPTH_RANGE = (0.5, 1.0)  # Lz (the height in y is 1)
YOUNGS_MODULUS_RANGE = (0.5, 2.0)
POISSON_RATIO_RANGE = (0.2, 0.4)
TRACTION_RANGE = ((-0.01, 0.01), (-0.001, 0.001), (-0.0005, 0.0005))  # (tx, ty, tz) end values

# Cutout sizes along x and y, and along z as a fraction of Lz (> 1 lets it go through the depth).
CUTOUT_SIZE_X = (0.2, 0.6)
CUTOUT_SIZE_Y = (0.15, 0.5)
CUTOUT_SIZE_Z = (0.3, 1.5)
# Least distance between distinct grid planes of the geometry (block faces and cutout faces)
# along each axis: the thinnest ligament, and the smallest element side the grid may need.
MARGIN = 0.1
ATTEMPTS_PER_CUTOUT = 50


@dataclass(frozen=True)
class Box:
    """An axis-aligned box lo <= x <= hi (lo, hi: 3 coordinates each)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]


@dataclass(frozen=True)
class Block:
    """The part [0, length] x [0, 1] x [0, depth] minus the union of `cutouts`."""

    length: float
    depth: float
    cutouts: tuple[Box, ...] = ()

    @property
    def extent(self) -> tuple[float, float, float]:
        return (self.length, 1.0, self.depth)


@dataclass(frozen=True)
class TetMesh:
    """A linear tetrahedral mesh.

    points:         [N, 3] float64.
    tets:           [T, 4] int64, positively oriented (det[p1-p0, p2-p0, p3-p0] > 0).
    boundary_faces: [F, 3] int64 node triples of the faces that belong to one tetrahedron.
    """

    points: np.ndarray
    tets: np.ndarray
    boundary_faces: np.ndarray


def generate(index: int, seed: int, mesh_size: float, max_holes: int) -> MeshSample:
    rng = np.random.default_rng([seed, index])
    block = random_block(rng, max_holes)
    mesh = mesh_block(block, mesh_size)
    points, length = mesh.points, block.length

    youngs_modulus = rng.uniform(*YOUNGS_MODULUS_RANGE)
    poisson_ratio = rng.uniform(*POISSON_RATIO_RANGE)
    # Row c: traction component c (x, y, z) at the bottom (y = 0) and top (y = 1) of the face.
    ends = np.array([rng.uniform(low, high, size=2) for low, high in TRACTION_RANGE])
    traction = linear_traction(ends)

    # Grid coordinates are exact (the block faces are grid planes), so == is safe here.
    clamped = points[:, 0] == 0.0
    loaded = points[:, 0] == length
    fixed = np.repeat(clamped[:, None], 3, axis=1)
    loaded_faces = mesh.boundary_faces[loaded[mesh.boundary_faces].all(axis=1)]
    displacement, stress = solve_elasticity_3d(
        points, mesh.tets, youngs_modulus, poisson_ratio, fixed, loaded_faces, traction
    )

    on_boundary = np.zeros(len(points), dtype=bool)
    on_boundary[mesh.boundary_faces.ravel()] = True
    node_type = np.full(len(points), SPEC.node_types.index("interior"), dtype=np.int64)
    node_type[on_boundary] = SPEC.node_types.index("free")
    node_type[clamped] = SPEC.node_types.index("clamped")
    node_type[loaded] = SPEC.node_types.index("loaded")
    applied = np.where(loaded[:, None], traction(points.T).T, 0.0)

    sample = MeshSample(
        points=points,
        cells=[("tetra", mesh.tets)],
        node_type=node_type,
        inputs={"traction": applied,
                "youngs_modulus": np.full((len(points), 1), youngs_modulus),
                "poisson_ratio": np.full((len(points), 1), poisson_ratio)},
        targets={"displacement": displacement, "von_mises": stress[:, None]},
        globals=np.array(
            [youngs_modulus, poisson_ratio, *ends.ravel(), length, block.depth], dtype=np.float64
        ),
    )
    sample.baseline = baseline(sample)
    return sample


def baseline(sample: MeshSample) -> dict[str, np.ndarray]:
    """The beam-theory baseline (module doc) of an elasticity3d sample.

    Reads only the points and the globals E, nu, tx0 ... tz1, Lx and Lz (by name); never the
    targets, so it serves new, unsolved meshes at prediction time exactly as in training.
    """
    g = named_globals(SPEC, sample)
    displacement, stress = _beam_theory(
        sample.points, g["Lx"], g["Lz"], g["E"], g["nu"], traction_ends(g, "xyz")
    )
    return {"displacement": displacement, "von_mises": stress[:, None]}


def random_block(rng: np.random.Generator, max_holes: int) -> Block:
    """Sample a block size and 0..max_holes cutouts (independent of any mesh size).

    Cutouts are placed by rejection sampling; one that finds no valid spot within
    `ATTEMPTS_PER_CUTOUT` tries is dropped, so crowded blocks get fewer cutouts. A spot is
    valid when every distinct grid plane stays `MARGIN` away from the others along its axis
    and the remaining part is still one face-connected piece.
    """
    length = float(rng.uniform(*LENGTH_RANGE))
    depth = float(rng.uniform(*DEPTH_RANGE))
    block = Block(length, depth)
    for _ in range(int(rng.integers(0, max_holes + 1))):
        for _ in range(ATTEMPTS_PER_CUTOUT):
            candidate = Block(length, depth, block.cutouts + (_random_box(rng, length, depth),))
            if _is_valid(candidate):
                block = candidate
                break
    return block


def mesh_block(block: Block, mesh_size: float) -> TetMesh:
    """Kuhn-split tensor grid of `block` (see module doc) with its cutouts removed."""
    planes = _grid_planes(block)
    axes = [_subdivide(p, mesh_size) for p in planes]
    shape = tuple(len(a) for a in axes)
    grid = np.meshgrid(*axes, indexing="ij")
    points = np.stack([g.ravel() for g in grid], axis=1)

    # Node number of hex corner (i + di, j + dj, k + dk) for every hex (i, j, k).
    node = np.arange(points.shape[0]).reshape(shape)
    hexes = shape[0] - 1, shape[1] - 1, shape[2] - 1

    def corner(d: tuple[int, int, int]) -> np.ndarray:
        return node[d[0]: d[0] + hexes[0], d[1]: d[1] + hexes[1], d[2]: d[2] + hexes[2]].ravel()

    tets = []
    for order in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
        # The monotone path 000 -> ... -> 111 that steps along the axes in this order.
        step = np.zeros(3, dtype=int)
        path = [corner(tuple(step))]
        for axis in order:
            step[axis] = 1
            path.append(corner(tuple(step)))
        tets.append(np.stack(path, axis=1))
    tets = np.concatenate(tets)

    centroid = points[tets].mean(axis=1)
    keep = np.ones(len(tets), dtype=bool)
    for box in block.cutouts:
        keep &= ~((centroid > box.lo) & (centroid < box.hi)).all(axis=1)
    tets = _positively_oriented(points, tets[keep])

    used = np.zeros(len(points), dtype=bool)
    used[tets.ravel()] = True
    new_index = np.cumsum(used) - 1
    tets = new_index[tets]
    return TetMesh(points[used], tets, boundary_faces(tets))


def boundary_faces(tets: np.ndarray) -> np.ndarray:
    """Node triples (sorted) of the faces that belong to exactly one tetrahedron."""
    faces = np.sort(tets[:, [0, 1, 2, 0, 1, 3, 0, 2, 3, 1, 2, 3]].reshape(-1, 3), axis=1)
    n = np.int64(tets.max() + 1)
    keys = (faces[:, 0] * n + faces[:, 1]) * n + faces[:, 2]
    _, first, count = np.unique(keys, return_index=True, return_counts=True)
    return faces[first[count == 1]]


def _random_box(rng: np.random.Generator, length: float, depth: float) -> Box:
    size_x = rng.uniform(*CUTOUT_SIZE_X)
    x0 = rng.uniform(MARGIN, length - MARGIN - size_x)
    lo, hi = [x0], [x0 + size_x]
    # In y and z the box may stick out of the block; clipped, it becomes a notch or a slot.
    for extent, size_range in ((1.0, CUTOUT_SIZE_Y), (depth, np.multiply(CUTOUT_SIZE_Z, depth))):
        size = rng.uniform(*size_range)
        centre = rng.uniform(0.0, extent)
        lo.append(max(0.0, centre - size / 2))
        hi.append(min(extent, centre + size / 2))
    return Box(tuple(lo), tuple(hi))


def _grid_planes(block: Block) -> list[np.ndarray]:
    """Sorted distinct coordinates of the block and cutout faces along each axis."""
    return [
        np.unique([0.0, block.extent[axis]]
                  + [c for box in block.cutouts for c in (box.lo[axis], box.hi[axis])])
        for axis in range(3)
    ]


def _is_valid(block: Block) -> bool:
    planes = _grid_planes(block)
    if any(np.diff(p).min() < MARGIN for p in planes):
        return False
    # The planes cut the block into cells that are each either solid or inside a cutout;
    # the part is connected iff the solid cells are (6-neighbour = face-sharing connectivity).
    centres = np.meshgrid(*[(p[1:] + p[:-1]) / 2 for p in planes], indexing="ij")
    centres = np.stack(centres, axis=-1)
    solid = np.ones(centres.shape[:3], dtype=bool)
    for box in block.cutouts:
        solid &= ~((centres > box.lo) & (centres < box.hi)).all(axis=-1)
    _, components = ndimage.label(solid)
    return components == 1


def _subdivide(planes: np.ndarray, mesh_size: float) -> np.ndarray:
    """Split each interval between consecutive planes into equal steps of at most mesh_size."""
    pieces = [
        np.linspace(a, b, max(1, int(np.ceil((b - a) / mesh_size - 1e-9))) + 1)[:-1]
        for a, b in zip(planes[:-1], planes[1:])
    ]
    return np.concatenate(pieces + [planes[-1:]])


def _positively_oriented(points: np.ndarray, tets: np.ndarray) -> np.ndarray:
    p = points[tets]
    volume = np.linalg.det(p[:, 1:] - p[:, :1])
    tets = tets.copy()
    tets[volume < 0] = tets[volume < 0][:, [0, 2, 1, 3]]
    return tets


def _beam_theory(
    points: np.ndarray,
    length: float,
    depth: float,
    youngs_modulus: float,
    poisson_ratio: float,
    ends: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Displacement [N, 3] and von Mises stress [N] of the cutout-free block (see module doc)."""
    x, eta, zeta = points[:, 0], points[:, 1] - 0.5, points[:, 2] - depth / 2
    axial, shear_y, shear_z = ends.mean(axis=1)
    couple = -(ends[0, 1] - ends[0, 0]) / 12.0
    stiffness_y = youngs_modulus / 12.0  # E Iy / A
    stiffness_z = youngs_modulus * depth**2 / 12.0  # E Iz / A
    s, ds = length * x**2 / 2 - x**3 / 6, length * x - x**2 / 2
    deflection_y = (shear_y * s + couple * x**2 / 2) / stiffness_y
    slope_y = (shear_y * ds + couple * x) / stiffness_y
    deflection_z = shear_z * s / stiffness_z
    slope_z = shear_z * ds / stiffness_z
    contraction = poisson_ratio * axial / youngs_modulus
    ux = axial * x / youngs_modulus - eta * slope_y - zeta * slope_z
    uy = deflection_y - contraction * eta
    uz = deflection_z - contraction * zeta

    sxx = (axial - 12 * (shear_y * (length - x) + couple) * eta
           - 12 * shear_z * (length - x) * zeta / depth**2)
    sxy = 1.5 * shear_y * (1 - 4 * eta**2)
    sxz = 1.5 * shear_z * (1 - 4 * zeta**2 / depth**2)
    stress = np.zeros((len(points), 3, 3))
    stress[:, 0, 0] = sxx
    stress[:, 0, 1] = stress[:, 1, 0] = sxy
    stress[:, 0, 2] = stress[:, 2, 0] = sxz
    return np.stack([ux, uy, uz], axis=1), von_mises_3d(stress)
