"""Every geometry family and hole shape gives valid heat2d and elasticity2d samples: the boundary
conditions sit where the physics puts them, the solve converged, the baselines hold."""

from __future__ import annotations

import numpy as np
import pytest

from meshgnn.data.geometry import FAMILIES, HOLE_SHAPES
from meshgnn.data.sources import SOURCES

MESH_SIZE, HOLES = 0.12, 3


def sample_of(name: str, family: str, shape: str, index: int):
    data = {**SOURCES[name].knob_values(), "families": [family], "hole_shapes": [shape]}
    return SOURCES[name].generate(index, 0, MESH_SIZE, HOLES, data)


def boundary_nodes(sample) -> np.ndarray:
    """Nodes on an edge of one triangle only: the outline's and the holes'."""
    triangles = sample.cells[0][1]
    edges = np.sort(triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    edges, count = np.unique(edges, axis=0, return_counts=True)
    return np.unique(edges[count == 1])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("shape", HOLE_SHAPES)
def test_every_family_and_hole_shape_gives_valid_samples(family, shape):
    holes = 0
    for index in range(3):
        heat, elastic = (sample_of(name, family, shape, index) for name in ("heat2d", "elasticity2d"))
        holes += (heat.node_type == SOURCES["heat2d"].spec.node_types.index("insulated")).any()
        np.testing.assert_array_equal(heat.points, elastic.points)  # one part stream: the same part
        for sample in (heat, elastic):
            for group in (sample.targets, sample.baseline):
                assert all(np.isfinite(v).all() for v in group.values())
        _check_heat(heat)
        _check_elasticity(elastic)
    assert holes  # the shape was tried


def _check_heat(sample) -> None:
    types = SOURCES["heat2d"].spec.node_types
    dirichlet = sample.node_type == types.index("dirichlet")
    insulated = sample.node_type == types.index("insulated")
    boundary = np.zeros(sample.num_nodes, dtype=bool)
    boundary[boundary_nodes(sample)] = True
    np.testing.assert_array_equal(dirichlet | insulated, boundary)
    length = sample.globals[-1]
    on_box = np.isclose(sample.points[:, 0], 0) | np.isclose(sample.points[:, 0], length)
    assert dirichlet[boundary & on_box].all()  # the left and right edges are outline
    if insulated.any():  # the holes keep their margin from the outline: no hole node is on it
        gap = np.min(np.linalg.norm(sample.points[insulated][:, None] - sample.points[dirichlet][None], axis=-1))
        assert gap > 0.04
    known = sample.inputs["boundary_temperature"][dirichlet]
    np.testing.assert_allclose(sample.targets["temperature"][dirichlet], known, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(sample.baseline["temperature"][dirichlet], known)
    np.testing.assert_array_equal(sample.inputs["boundary_temperature"][~dirichlet], 0.0)


def _check_elasticity(sample) -> None:
    types = SOURCES["elasticity2d"].spec.node_types
    clamped = sample.node_type == types.index("clamped")
    loaded = sample.node_type == types.index("loaded")
    x, y = sample.points.T
    np.testing.assert_array_equal(x[clamped], 0.0)
    assert y[clamped].min() == 0.0 and y[clamped].max() == 1.0  # the whole left edge
    np.testing.assert_array_equal(x[loaded], sample.globals[-1])
    assert y[loaded].min() == 0.0 and loaded.sum() >= 2
    np.testing.assert_array_equal(sample.targets["displacement"][clamped], 0.0)
    np.testing.assert_array_equal(sample.inputs["traction"][~loaded], 0.0)
    assert np.abs(sample.inputs["traction"][loaded]).max() > 0
    assert np.abs(sample.targets["displacement"]).max() > 0
