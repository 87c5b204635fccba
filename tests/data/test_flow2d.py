"""data=flow2d: the channel and its node types, mass conservation of the generated fields, the
Poiseuille baseline, bad config, and the source end to end (train.py, export, mesh_folder)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from conftest import compose_config, run_train
from meshgnn.cli import main as meshgnn
from meshgnn.config import validate
from meshgnn.data import polygons
from meshgnn.data.channel import INLET_CLEARANCE, OBSTACLE_REGION, clearance, random_channel
from meshgnn.data.mesher import mesh_plate
from meshgnn.data.sources import flow2d, get_source
from meshgnn.errors import UserError

SHAPES = ["circle", "ellipse", "slot", "polygon"]
COARSE = 0.1
KIND = flow2d.SPEC.node_types.index


def channel(index: int, mesh_size: float = COARSE, max_obstacles: int = 3):
    return random_channel(np.random.default_rng([0, index]), mesh_size, max_obstacles, (1.5, 2.5), (0.08, 0.2), SHAPES)


def test_node_types_tag_every_boundary_kind():
    for index in range(4):
        mesh = channel(index).mesh
        node_type = flow2d.node_types(mesh)
        x, y = mesh.points.T
        length = x.max()
        left, right, walls = x == 0.0, x == length, (y == 0.0) | (y == 1.0)
        assert (node_type[left & ~walls] == KIND("inlet")).all() and (node_type[left & walls] == KIND("wall")).all()
        assert (node_type[right & ~walls] == KIND("outlet")).all() and (node_type[right & walls] == KIND("wall")).all()
        assert (node_type[walls] == KIND("wall")).all()
        assert ((left | right) & walls).sum() == 4  # the channel's corners: no slip
        boundary = np.unique(mesh.facets)
        on_obstacle = np.setdiff1d(boundary, np.flatnonzero(left | right | walls))
        assert len(on_obstacle) and (node_type[on_obstacle] == KIND("obstacle")).all()
        interior = np.setdiff1d(np.arange(len(x)), boundary)
        assert (node_type[interior] == KIND("interior")).all()
        assert (node_type == KIND("obstacle")).sum() == len(on_obstacle)


def test_obstacles_keep_clear_of_inlet_outlet_walls_and_each_other():
    counts = set()
    for index in range(30):
        part = channel(index, mesh_size=0.2)
        counts.add(len(part.obstacles))
        for k, obstacle in enumerate(part.obstacles):
            assert INLET_CLEARANCE <= obstacle.x <= OBSTACLE_REGION * part.length
            gap = clearance(obstacle.size)
            assert obstacle.size + gap <= obstacle.y <= 1 - obstacle.size - gap
            assert polygons.distance_to(np.array([[obstacle.x, obstacle.y]]), obstacle.reference)[0] <= obstacle.size
            for other in part.obstacles[k + 1:]:
                distance = np.hypot(obstacle.x - other.x, obstacle.y - other.y)
                assert distance >= obstacle.size + other.size + max(gap, clearance(other.size))
    assert counts == {1, 2, 3}
    assert part.obstacle_scale == 2 * max(o.size for o in part.obstacles)


@pytest.fixture(scope="module")
def solved(monkeypatch_module):
    """A generated sample at a mesh size fine enough for 1e-3 on vertex-value fluxes, with the
    solver's own report of it (the real solve, recorded on the way)."""
    reports = []
    solve = flow2d.solve_navier_stokes

    def recorded(*args, **kwargs):
        reports.append(solve(*args, **kwargs))
        return reports[-1]

    monkeypatch_module.setattr(flow2d, "solve_navier_stokes", recorded)
    sample = get_source("flow2d").generate(0, 0, 0.06, 2)
    return sample, reports[0]


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def boundary_flux(sample, on: np.ndarray) -> float:
    """Trapezoid integral of u across the channel over the nodes `on` (a vertical side)."""
    nodes = np.flatnonzero(on)
    nodes = nodes[np.argsort(sample.points[nodes, 1])]
    return float(np.trapezoid(sample.targets["velocity"][nodes, 0], sample.points[nodes, 1]))


def test_generated_fields_conserve_mass(solved):
    sample, report = solved
    g = dict(zip(flow2d.SPEC.global_names, sample.globals))
    x = sample.points[:, 0]
    inlet, outlet = x == 0.0, x == g["Lx"]
    flux_in, flux_out = boundary_flux(sample, inlet), boundary_flux(sample, outlet)
    segments = inlet.sum() - 1
    # the trapezoid rule on the parabola of mean U, over equal segments: U (1 - 1 / n^2)
    assert flux_in == pytest.approx(g["U"] * (1 - 1 / segments**2), rel=1e-12)
    assert flux_out == pytest.approx(flux_in, rel=1e-3)
    # Taylor-Hood holds div u = 0 only against P1 pressures: ||div u|| / ||grad u|| is 0.11 here
    # (h = 0.06; a circle's falls to 0.03 at h = 0.03), while the fluxes balance to 1e-3.
    assert report.divergence < 0.15 and report.residual < 1e-10
    np.testing.assert_array_equal(report.velocity, sample.targets["velocity"])


def test_no_slip_and_inflow_hold_on_the_generated_fields(solved):
    sample, _ = solved
    velocity, node_type = sample.targets["velocity"], sample.node_type
    no_slip = np.isin(node_type, (KIND("wall"), KIND("obstacle")))
    np.testing.assert_allclose(velocity[no_slip], 0.0, atol=1e-12)
    inlet = node_type == KIND("inlet")
    np.testing.assert_allclose(velocity[inlet], sample.inputs["boundary_velocity"][inlet], atol=1e-12)
    assert (sample.inputs["boundary_velocity"][~inlet] == 0).all()
    g = dict(zip(flow2d.SPEC.global_names, sample.globals))
    assert g["nu"] == pytest.approx(g["U"] * g["D"] / g["Re"]) and 10 <= g["Re"] <= 40
    np.testing.assert_array_equal(sample.inputs["viscosity"], g["nu"])


def test_baseline_is_the_solution_of_a_channel_without_obstacles():
    """Poiseuille flow: the P2/P1 solution is the baseline's parabola and linear pressure, with
    p = 0 at the do-nothing outlet."""
    sample = flow2d.solve_channel(mesh_plate(1.7, [], COARSE), 0.8, 20.0, 0.2, 1e-10, 25)
    for name, exact in sample.baseline.items():
        np.testing.assert_allclose(exact, sample.targets[name], atol=1e-9, err_msg=name)
    assert np.abs(sample.targets["pressure"]).max() > 0.1  # a real pressure drop, 12 nu U Lx


def test_baseline_reads_no_targets_is_exact_on_the_inlet_and_moves_with_the_mesh(solved):
    sample, _ = solved
    blind = dataclasses.replace(sample, targets={}, baseline={})
    for name, value in flow2d.baseline(blind).items():
        np.testing.assert_array_equal(value, sample.baseline[name], err_msg=name)
    inlet = sample.node_type == KIND("inlet")
    np.testing.assert_array_equal(sample.baseline["velocity"][inlet], sample.inputs["boundary_velocity"][inlet])
    moved = flow2d.baseline(dataclasses.replace(blind, points=sample.points + (3.0, -2.0)))
    for name, value in moved.items():
        np.testing.assert_allclose(value, sample.baseline[name], atol=1e-12, err_msg=name)
    rel = {name: np.linalg.norm(sample.baseline[name] - sample.targets[name]) / np.linalg.norm(sample.targets[name])
           for name in sample.targets}
    assert 0.05 < rel["velocity"] < 1 and 0.05 < rel["pressure"] < 1  # a baseline, not the answer


@pytest.mark.parametrize("override,key", [
    ("data.ranges.reynolds=[10,50]", "data.ranges.reynolds"),
    ("data.ranges.reynolds=[0,40]", "data.ranges.reynolds"),
    ("data.ranges.mean_velocity=[0,1]", "data.ranges.mean_velocity"),
    ("data.ranges.mean_velocity=[-1,1]", "data.ranges.mean_velocity"),
    ("data.max_holes=0", "data.max_holes"),
    ("data.ranges.hole_size=[0.1,0.3]", "data.ranges.hole_size"),
    ("data.ranges.length=[0.5,2]", "data.ranges.length"),
    ("data.hole_shapes=[star]", "data.hole_shapes"),
    ("data.newton_max_iterations=0", "data.newton_max_iterations"),
])
def test_bad_config_is_one_line_naming_the_key(override, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")) as info:
        validate(compose_config(["data=flow2d", override]))
    assert "\n" not in str(info.value)


def test_no_obstacle_is_a_clear_error():
    with pytest.raises(UserError, match="max_holes=0.*data.max_holes"):
        get_source("flow2d").generate(0, 0, COARSE, 0)


@pytest.mark.slow
def test_a_sample_that_does_not_converge_is_one_line_naming_it(tmp_path, data_cache):
    proc = run_train(["data=flow2d", "trainer=debug", "data.num_samples=4", "data.newton_max_iterations=1",
                      f"hydra.run.dir={tmp_path / 'run'}", f"paths.data_dir={data_cache}"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    [line] = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert "flow2d sample " in line and "Re " in line and "data.newton_max_iterations" in line


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory, data_cache):
    cwd = tmp_path_factory.mktemp("flow2d_run")
    proc = run_train(["data=flow2d", "trainer=debug", f"hydra.run.dir={cwd / 'run'}", f"paths.data_dir={data_cache}"],
                     cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd / "run"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flow2d_files") / "meshes"
    meshgnn(["data", "export", "flow2d", "--out", str(folder), "--num-samples", "6", "--mesh-size", str(COARSE),
             "--max-holes", "2", "--workers", "1"])
    return folder


@pytest.mark.slow
def test_flow2d_trains_and_an_exported_file_predicts_like_its_generated_sample(flow_run, exported):
    from meshgnn.inference.package import load_model
    from meshgnn.inference.predict import predict_graph, prepare_graph, read_mesh

    results = json.loads((flow_run / "results.json").read_text())["model"]
    assert {"test/velocity/rel_l2", "test/pressure/rel_l2"} <= set(results)
    model, cpu = load_model(flow_run), torch.device("cpu")
    assert model.features.residual
    generated = get_source("flow2d").generate(1, 0, COARSE, 2)
    from_file, _ = read_mesh(model, exported / "sample_00001.vtu", exported)
    expected = predict_graph(model, prepare_graph(model, generated), cpu)
    actual = predict_graph(model, prepare_graph(model, from_file), cpu)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_an_exported_flow2d_folder_trains_through_mesh_folder(exported, tmp_path, data_cache):
    run_dir = tmp_path / "run"
    proc = run_train(["data=mesh_folder", f"data.path={exported}", "data.inputs=[boundary_velocity,viscosity]",
                      "data.targets=[velocity,pressure]", "data.node_type_field=node_type",
                      "data.node_type_values=[0,1,2,3,4]", "data.globals=[nu,U,Re,D,Lx]", "model.hidden_dim=16",
                      "trainer.epochs=1", "data.process_workers=1", f"hydra.run.dir={run_dir}",
                      f"paths.data_dir={data_cache}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {"test/velocity/rel_l2", "test/pressure/rel_l2"} <= set(json.loads((run_dir / "results.json").read_text())["model"])
