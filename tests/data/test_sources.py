"""Built-in generators: reproducibility, the data contract, and the physics they promise."""

from __future__ import annotations

import dataclasses
import io
import logging
import sys

import numpy as np
import pytest

from meshgnn.data.generate import generate_samples
from meshgnn.data.sample import MeshSample
from meshgnn.data.sources import SOURCES, get_source, heat2d
from meshgnn.errors import UserError

MESH_SIZE = 0.1  # coarse keeps the suite fast; the generators are size-agnostic
SIZE_3D = 0.25  # 3D node counts grow as 1/h^3


def mesh_size(source) -> float:
    return SIZE_3D if source.spec.spatial_dim == 3 else MESH_SIZE
MAX_HOLES = 3


def sample_arrays(sample: MeshSample) -> dict[str, np.ndarray]:
    arrays = {"points": sample.points, "node_type": sample.node_type, "globals": sample.globals}
    arrays |= {f"cells/{kind}": cells for kind, cells in sample.cells}
    for group in ("inputs", "targets", "baseline"):
        arrays |= {f"{group}/{k}": v for k, v in getattr(sample, group).items()}
    return arrays


def assert_same(a: MeshSample, b: MeshSample) -> None:
    arrays_a, arrays_b = sample_arrays(a), sample_arrays(b)
    assert arrays_a.keys() == arrays_b.keys()
    for key in arrays_a:
        np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)


@pytest.fixture(scope="module", params=sorted(SOURCES))
def source(request):
    return SOURCES[request.param]


def test_same_seed_and_index_give_identical_samples(source):
    first, second = (source.generate(3, 7, mesh_size(source), MAX_HOLES) for _ in range(2))
    assert_same(first, second)


def test_baseline_recomputes_from_what_a_mesh_file_carries(source):
    """A sample stripped of its baseline (as a new mesh file comes) gets back exactly the
    generated one from its source's `baseline`."""
    baseline = get_source(source.name).baseline
    for index in range(2):
        sample = source.generate(index, 5, mesh_size(source), MAX_HOLES)
        stripped = dataclasses.replace(sample, baseline={})
        assert_same(dataclasses.replace(stripped, baseline=baseline(stripped)), sample)


def test_baseline_does_not_read_the_targets(source):
    sample = source.generate(1, 5, mesh_size(source), MAX_HOLES)
    blind = dataclasses.replace(
        sample, targets={k: np.zeros_like(v) for k, v in sample.targets.items()}, baseline={}
    )
    recomputed = source.baseline(blind)
    assert list(recomputed) == list(sample.baseline)
    for key, value in sample.baseline.items():
        np.testing.assert_array_equal(recomputed[key], value, err_msg=key)


def test_different_indices_give_different_geometry(source):
    a, b = (source.generate(i, 7, mesh_size(source), MAX_HOLES) for i in (0, 1))
    assert a.points.shape != b.points.shape or not np.array_equal(a.points, b.points)


def test_sample_matches_spec(source):
    spec = source.spec
    for index in range(3):
        sample = source.generate(index, 0, mesh_size(source), MAX_HOLES)
        n = sample.num_nodes
        assert sample.points.shape == (n, spec.spatial_dim) and sample.points.dtype == np.float64
        [(kind, cells)] = sample.cells
        expected = {2: ("triangle", 3), 3: ("tetra", 4)}[spec.spatial_dim]
        assert (kind, cells.shape[1]) == expected and cells.dtype == np.int64
        assert sample.node_type.shape == (n,) and sample.node_type.dtype == np.int64
        assert set(np.unique(sample.node_type)) <= set(range(len(spec.node_types)))
        assert spec.node_types[0] == "interior"
        for group, fields in [
            (sample.inputs, spec.inputs),
            (sample.targets, spec.targets),
            (sample.baseline, spec.targets),
        ]:
            assert list(group) == [f.name for f in fields]
            for f in fields:
                assert group[f.name].shape == (n, f.dim) and group[f.name].dtype == np.float64
                assert np.isfinite(group[f.name]).all()
        assert sample.globals.shape == (len(spec.global_names),)
        assert sample.globals.dtype == np.float64


@pytest.mark.parametrize("name", ["heat2d", "elasticity2d"])
def test_2d_sample_meshes_are_clean(name):
    for index in range(5):
        sample = SOURCES[name].generate(index, 0, MESH_SIZE, MAX_HOLES)
        points, [(_, triangles)] = sample.points, sample.cells
        a, b, c = (points[triangles[:, i]] for i in range(3))
        cross = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
        assert (cross > 0).all(), "triangles must be counter-clockwise"
        assert np.array_equal(np.unique(triangles), np.arange(len(points)))
        assert len(np.unique(points, axis=0)) == len(points)


def test_heat_boundary_temperature_is_continuous():
    """Along every outer-boundary facet the jump is bounded by the Fourier series' slope (in
    arclength around the outline, whatever its shape)."""
    spec = SOURCES["heat2d"].spec
    for index in range(5):
        sample = SOURCES["heat2d"].generate(index, 0, MESH_SIZE, MAX_HOLES)
        g = dict(zip(spec.global_names, sample.globals))
        dirichlet = sample.node_type == spec.node_types.index("dirichlet")
        temperature = sample.inputs["boundary_temperature"][:, 0]
        edges = np.sort(sample.cells[0][1][:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        edges, count = np.unique(edges, axis=0, return_counts=True)
        # Boundary edges belong to one triangle; those joining two Dirichlet nodes are the
        # outer facets, which form one closed loop through every Dirichlet node.
        edges = edges[(count == 1) & dirichlet[edges].all(axis=1)]
        assert len(edges) == dirichlet.sum()
        length = np.linalg.norm(np.diff(sample.points[edges], axis=1)[:, 0], axis=1)
        perimeter = length.sum()  # the outline is a polygon: its facets add up to its perimeter
        max_slope = sum(2 * np.pi * m / perimeter * np.hypot(g[f"a{m}"], g[f"b{m}"])
                        for m in range(1, heat2d.NUM_MODES + 1))
        jump = np.abs(np.diff(temperature[edges], axis=1)[:, 0])
        assert (jump <= max_slope * length + 1e-12).all()


def test_heat_baseline_is_exact_on_dirichlet_nodes():
    spec = SOURCES["heat2d"].spec
    for index in range(3):
        sample = SOURCES["heat2d"].generate(index, 0, MESH_SIZE, MAX_HOLES)
        dirichlet = sample.node_type == spec.node_types.index("dirichlet")
        np.testing.assert_array_equal(
            sample.baseline["temperature"][dirichlet],
            sample.inputs["boundary_temperature"][dirichlet],
        )
        np.testing.assert_allclose(
            sample.targets["temperature"][dirichlet],
            sample.inputs["boundary_temperature"][dirichlet],
        )


def test_elasticity_boundary_conditions():
    spec = SOURCES["elasticity2d"].spec
    sample = SOURCES["elasticity2d"].generate(0, 0, MESH_SIZE, MAX_HOLES)
    node_type = sample.node_type
    clamped = node_type == spec.node_types.index("clamped")
    loaded = node_type == spec.node_types.index("loaded")
    assert np.allclose(sample.points[clamped, 0], 0.0) and clamped.sum() > 2
    assert np.allclose(sample.points[loaded, 0], sample.globals[-1]) and loaded.sum() > 2
    np.testing.assert_array_equal(sample.targets["displacement"][clamped], 0.0)
    np.testing.assert_array_equal(sample.inputs["traction"][~loaded], 0.0)
    assert np.abs(sample.inputs["traction"][loaded]).max() > 0


def test_unknown_source_is_a_user_error():
    with pytest.raises(UserError, match="heat2d") as info:
        get_source("heat3d")
    assert "elasticity2d" in str(info.value) and "\n" not in str(info.value)


def test_worker_count_does_not_change_the_data(source, caplog, monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal, even under `pytest -s`
    with caplog.at_level(logging.INFO, logger="meshgnn.data"):
        serial = generate_samples(source, 5, 11, mesh_size(source), MAX_HOLES, workers=1)
    parallel = generate_samples(source, 5, 11, mesh_size(source), MAX_HOLES, workers=2)
    assert len(serial) == len(parallel) == 5
    for a, b in zip(serial, parallel):
        assert_same(a, b)
    # Without a terminal, progress comes as log lines instead of a bar.
    assert any("5/5" in record.getMessage() for record in caplog.records)


def _global_shepard(points: np.ndarray, known: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Data version 2's baseline, the reference: every known node weighted by 1/d^2."""
    others = np.setdiff1d(np.arange(len(points)), known)
    weights = 1.0 / ((points[others, None, :] - points[known][None, :, :]) ** 2).sum(-1)
    result = np.empty(len(points))
    result[known], result[others] = values, weights @ values / weights.sum(1)
    return result


@pytest.fixture(scope="module")
def heat_sample() -> MeshSample:
    return SOURCES["heat2d"].generate(2, 0, MESH_SIZE, MAX_HOLES)


def _dirichlet(sample: MeshSample) -> tuple[np.ndarray, np.ndarray]:
    known = np.flatnonzero(sample.node_type == heat2d.SPEC.node_types.index("dirichlet"))
    return known, sample.inputs["boundary_temperature"][known, 0]


def test_heat_baseline_averages_the_nearest_dirichlet_nodes(heat_sample):
    """shepard_neighbours=k: each node's value is the 1/d^2 mean of its k nearest Dirichlet
    nodes; the others, however many, do not count."""
    source, (known, values) = SOURCES["heat2d"], _dirichlet(heat_sample)
    guess = source.baseline(heat_sample, {"shepard_neighbours": 3})["temperature"][:, 0]
    interior = np.setdiff1d(np.arange(heat_sample.num_nodes), known)
    for node in interior[:: max(1, len(interior) // 20)]:
        d2 = ((heat_sample.points[known] - heat_sample.points[node]) ** 2).sum(1)
        nearest = np.argsort(d2)[:3]
        expected = (values[nearest] / d2[nearest]).sum() / (1 / d2[nearest]).sum()
        assert guess[node] == pytest.approx(expected, rel=1e-12)
    np.testing.assert_array_equal(guess[known], values)
    # so far-away boundary values no longer pull on a node
    assert not np.allclose(guess, source.baseline(heat_sample, {"shepard_neighbours": 8})["temperature"][:, 0])


def test_heat_baseline_over_every_dirichlet_node_is_the_old_global_shepard(heat_sample):
    known, values = _dirichlet(heat_sample)
    everything = SOURCES["heat2d"].baseline(heat_sample, {"shepard_neighbours": len(known) + 5})
    np.testing.assert_allclose(everything["temperature"][:, 0],
                               _global_shepard(heat_sample.points, known, values), rtol=1e-10)


def test_shepard_cell_is_a_checked_knob_of_the_cache_key():
    from conftest import compose_config

    from meshgnn.config import validate
    from meshgnn.data.dataset import generating_keys

    assert heat2d.VERSION == 6
    default, wider = (compose_config(["data.num_samples=20"] + extra).data
                      for extra in ([], ["data.shepard_cell=0.16"]))
    assert default.shepard_cell == 0.08  # conf/data/heat2d.yaml's, also what knob_values() falls back to
    assert SOURCES["heat2d"].knob_values(None, ("shepard_cell",)) == {"shepard_cell": 0.08}
    assert generating_keys(default)["shepard_cell"] == 0.08
    assert generating_keys(default) != generating_keys(wider)
    with pytest.raises(UserError, match="shepard_cell"):
        validate(compose_config(["data.shepard_cell=0"]))


def _patch_oracle(points: np.ndarray, known: np.ndarray, values: np.ndarray, cell: float) -> np.ndarray:
    """Version 6's definition written plainly: patch means by a dict of grid cells, then every
    non-Dirichlet node's 1/d^2 mean of the patch values."""
    corner = points[known].min(axis=0) - 1e-3 * cell
    members: dict[tuple[int, int], list[int]] = {}
    for node in known:
        members.setdefault(tuple(np.floor((points[node] - corner) / cell).astype(int)), []).append(node)
    centres = np.array([points[m].mean(axis=0) for m in members.values()])
    patch_values = np.array([values[np.searchsorted(known, m)].mean() for m in members.values()])
    with np.errstate(divide="ignore", invalid="ignore"):  # a one-node patch sits on its node: reset below
        weights = 1.0 / ((points[:, None, :] - centres[None]) ** 2).sum(-1)
        result = weights @ patch_values / weights.sum(1)
    result[known] = values
    return result


def test_heat_baseline_weights_every_boundary_patch(heat_sample):
    known, values = _dirichlet(heat_sample)
    for cell in (0.08, 0.2):
        guess = SOURCES["heat2d"].baseline(heat_sample, {"shepard_cell": cell, "shepard_neighbours": None})["temperature"][:, 0]
        np.testing.assert_allclose(guess, _patch_oracle(heat_sample.points, known, values, cell), rtol=1e-12)
        np.testing.assert_array_equal(guess[known], values)
    # a rigid translation moves the patches with the mesh
    moved = dataclasses.replace(heat_sample, points=heat_sample.points + np.array([3.7, -1.3]))
    np.testing.assert_allclose(SOURCES["heat2d"].baseline(moved)["temperature"],
                               SOURCES["heat2d"].baseline(heat_sample)["temperature"], rtol=1e-9, atol=1e-12)


def test_the_patch_baseline_is_the_same_at_every_resolution():
    """The same plates meshed 1x and 4x finer: the patches are physical, so the baseline's error
    stays put (no neighbour count to scale), and so does its mean value on the coarse nodes."""
    data = {**SOURCES["heat2d"].knob_values(), "families": ["plate"], "hole_shapes": ["circle"]}

    def baseline_error(size: float) -> float:
        errors = []
        for index in range(3):
            sample = SOURCES["heat2d"].generate(index, 0, size, 2, data)
            guess = SOURCES["heat2d"].baseline(sample, data)
            errors.append(np.linalg.norm(guess["heat_flux"] - sample.targets["heat_flux"])
                          / np.linalg.norm(sample.targets["heat_flux"]))
        return float(np.mean(errors))

    assert baseline_error(0.03) < 1.2 * baseline_error(0.12)


def test_the_baseline_with_a_spacing_covers_the_same_boundary_at_every_resolution():
    """The same plates meshed 1x and 4x finer: with data.shepard_spacing the baseline's error
    stays put; a fixed neighbour count (null, and what a data section from before the knob
    means) reaches a quarter as far along the boundary and its error grows."""
    data = {**SOURCES["heat2d"].knob_values(), "families": ["plate"], "hole_shapes": ["circle"]}

    def baseline_error(size: float, spacing: float | None) -> float:
        errors = []
        for index in range(3):
            sample = SOURCES["heat2d"].generate(index, 0, size, 2, data)
            guess = SOURCES["heat2d"].baseline(sample, {"shepard_neighbours": 16, "shepard_spacing": spacing})
            errors.append(np.linalg.norm(guess["heat_flux"] - sample.targets["heat_flux"])
                          / np.linalg.norm(sample.targets["heat_flux"]))
        return float(np.mean(errors))

    assert baseline_error(0.03, 0.12) < 1.2 * baseline_error(0.12, 0.12)  # measured 1.12x
    assert baseline_error(0.03, None) > 1.8 * baseline_error(0.12, None)  # measured 2.5x
    sample = SOURCES["heat2d"].generate(0, 0, 0.12, 2, data)
    old = SOURCES["heat2d"].baseline(sample, {"name": "heat2d", "shepard_neighbours": 16})
    fixed = SOURCES["heat2d"].baseline(sample, {"shepard_neighbours": 16, "shepard_spacing": None})
    assert np.array_equal(old["heat_flux"], fixed["heat_flux"])


def test_a_heat2d_data_section_without_the_knob_is_one_clear_line(heat_sample):
    with pytest.raises(UserError, match="no shepard_neighbours.*retrain") as info:
        SOURCES["heat2d"].baseline(heat_sample, {"name": "heat2d", "mesh_size": 0.1})
    assert "\n" not in str(info.value)
