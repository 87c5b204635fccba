"""Field images: drawn from the mesh's own cells (2D triangles and quads, a plane cut of a 3D
mesh that is never empty; a mesh folder's cells read from its file), and a drawing failure
never ends a run."""

import logging

import meshio
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import ROOT, compose_config
from meshgnn.data.dataset import load_datasets
from meshgnn.data.features import ModelInputs
from meshgnn.data.graph_cells import graph_cells
from meshgnn.data.sources import get_source
from meshgnn.experiment import run
from meshgnn.training import field_images
from meshgnn.training.field_images import mesh_section, render
from meshgnn.training.trainer import oscillation


def triangle_area(points: np.ndarray, triangles: np.ndarray) -> float:
    a, b, c = (points[triangles[:, i]] for i in range(3))
    return float(0.5 * np.abs((b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]).sum())


@pytest.mark.parametrize("index", [0, 2, 4])  # samples whose middle +-5 % slab holds no node
def test_the_3d_cut_of_an_elasticity3d_mesh_is_never_empty_and_interpolates_exactly(index):
    sample = get_source("elasticity3d").generate(index, 0, 0.15, 3)
    z = sample.points[:, 2]
    assert not (np.abs(z - (z.min() + z.max()) / 2) <= 0.05 * (z.max() - z.min())).any()  # the old slab
    section = mesh_section(sample.points, sample.cells)
    assert len(section.triangles) > 100
    lo, hi = sample.points[:, :2].min(axis=0), sample.points[:, :2].max(axis=0)
    assert (section.points >= lo - 1e-12).all() and (section.points <= hi + 1e-12).all()
    # a linear field is reproduced exactly at the cut points (z = the cut height)
    height = float(section.caption.split("= ")[1])
    linear = sample.points @ np.array([[1.0], [-2.0], [3.0]])
    cut_points = np.column_stack([section.points, np.full(len(section.points), 0.0)])
    cut_points[:, 2] = z[section.ends[:, 0]] + section.weight * (z[section.ends[:, 1]] - z[section.ends[:, 0]])
    assert np.allclose(cut_points[:, 2], height, atol=1e-3)
    assert np.allclose(section.values(linear), cut_points @ np.array([[1.0], [-2.0], [3.0]]))
    image = render(section.points, section.triangles, sample.targets["displacement"][section.ends[:, 0]],
                   section.values(sample.targets["displacement"]), "displacement", section.caption)
    assert image.dtype == np.uint8 and image.shape[2] == 3 and (image < 250).any()


def test_a_hexahedral_cube_cuts_into_its_whole_cross_section():
    grid = np.stack(np.meshgrid(*[np.linspace(0.0, 1.0, 3)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    node = np.arange(27).reshape(3, 3, 3)
    hexes = [[node[i, j, k], node[i + 1, j, k], node[i + 1, j + 1, k], node[i, j + 1, k],
              node[i, j, k + 1], node[i + 1, j, k + 1], node[i + 1, j + 1, k + 1], node[i, j + 1, k + 1]]
             for i in range(2) for j in range(2) for k in range(2)]
    section = mesh_section(grid, [("quad", np.array([[0, 1, 4, 3]])), ("hexahedron", np.array(hexes))])
    assert triangle_area(section.points, section.triangles) == pytest.approx(1.0)  # the unit square


def test_a_2d_mesh_is_drawn_with_every_cell_of_its_own_including_non_delaunay_ones_and_quads():
    # a thin rhombus split along its long diagonal (not Delaunay), and a quad beside it
    points = np.array([[0.0, 0.0], [1.0, -0.1], [2.0, 0.0], [1.0, 0.1], [3.0, 0.0], [3.0, 1.0], [2.0, 1.0]])
    cells = [("line", np.array([[0, 1]])), ("triangle", np.array([[0, 1, 2], [0, 2, 3]])),
             ("quad", np.array([[2, 4, 5, 6]]))]
    section = mesh_section(points, cells)
    assert {tuple(sorted(t)) for t in section.triangles.tolist()} == {(0, 1, 2), (0, 2, 3), (2, 4, 5), (2, 5, 6)}
    assert triangle_area(section.points, section.triangles) == pytest.approx(0.2 + 1.0)
    values = np.arange(7.0)[:, None]
    assert np.array_equal(section.values(values), values)  # the nodes themselves


def test_every_triangle_of_a_generated_heat2d_mesh_is_drawn():
    sample = get_source("heat2d").generate(3, 0, 0.1, 3)
    (_, cells), = sample.cells
    section = mesh_section(sample.points, sample.cells)
    assert {tuple(sorted(t)) for t in section.triangles.tolist()} == {tuple(sorted(t)) for t in cells.tolist()}


IMAGES_RUN = ["trainer=debug", "trainer.image_every=1", f"paths.root_dir={ROOT}"]


def _launch(tmp_path, data_cache, *args):
    overrides = [*IMAGES_RUN, f"paths.data_dir={data_cache}", f"paths.output_dir={tmp_path / 'run'}", *args]
    return run(compose_config(overrides), overrides)


def _image_tags(run_dir) -> list[str]:
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0})
    events.Reload()
    return events.Tags()["images"]


def test_a_drawing_failure_warns_once_and_the_run_finishes_without_images(tmp_path, data_cache, monkeypatch,
                                                                          caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no display for you")

    monkeypatch.setattr(field_images, "render", broken)
    with caplog.at_level(logging.WARNING):
        objective = _launch(tmp_path, data_cache, "data.num_samples=20", "model.hidden_dim=16")
    warnings = [r.getMessage() for r in caplog.records if "field images" in r.getMessage()]
    assert len(warnings) == 1 and "RuntimeError: no display for you" in warnings[0], warnings
    assert np.isfinite(objective) and (tmp_path / "run" / "results.json").is_file()
    assert _image_tags(tmp_path / "run") == []


def test_3d_training_draws_the_cut_of_a_mesh_whose_middle_slab_is_empty(tmp_path, data_cache, caplog):
    # data.num_samples=12 at mesh_size 0.3: the validation mesh is sample 11, with no node in the old slab
    sample = get_source("elasticity3d").generate(11, 0, 0.3, 3)
    z = sample.points[:, 2]
    assert not (np.abs(z - (z.min() + z.max()) / 2) <= 0.05 * (z.max() - z.min())).any()
    with caplog.at_level(logging.WARNING):
        _launch(tmp_path, data_cache, "data=elasticity3d", "data.num_samples=12", "data.mesh_size=0.3",
                "trainer.epochs=1", "model.hidden_dim=8")
    assert not [r for r in caplog.records if "field images" in r.getMessage()]
    assert sorted(_image_tags(tmp_path / "run")) == ["fields/displacement", "fields/von_mises"]


def test_oscillation_measures_scatter_around_the_trend_not_the_trend():
    steady = torch.linspace(2.0, 1.0, 50).tolist()
    assert oscillation(steady) < 1e-6
    noisy = (torch.linspace(2.0, 1.0, 50) + 0.3 * torch.tensor([(-1.0) ** i for i in range(50)])).tolist()
    assert 0.15 < oscillation(noisy) < 0.25  # 0.3 scatter over a mean loss of 1.5
    assert oscillation([1.0, 2.0]) == 0.0


def test_a_mesh_folder_graph_is_drawn_from_its_file_s_quads(tmp_path):
    x, y = np.meshgrid(np.linspace(0.0, 1.0, 5), np.linspace(0.0, 0.5, 4), indexing="ij")
    points = np.column_stack([x.ravel(), y.ravel(), np.zeros(x.size)])
    node = np.arange(x.size).reshape(x.shape)
    quads = np.array([[node[i, j], node[i + 1, j], node[i + 1, j + 1], node[i, j + 1]]
                      for i in range(4) for j in range(3)])
    for k in range(10):
        field = {"temperature": np.sin(3 * points[:, 0]) + k * points[:, 1]}
        meshio.write(tmp_path / f"mesh{k}.vtu", meshio.Mesh(points, [("quad", quads)], point_data=field))
    cfg = compose_config(["data=mesh_folder", f"data.path={tmp_path}", "data.targets=[temperature]",
                          "model.residual=false", "data.process_workers=1"])
    data = load_datasets(cfg.data, tmp_path / "cache", ModelInputs.of_model(cfg.model))
    cells = graph_cells(cfg.data, data.splits["val"], 0)
    section = mesh_section(data.splits["val"][0].pos.double().numpy(), cells)
    assert len(section.triangles) == 2 * len(quads)
    assert triangle_area(section.points, section.triangles) == pytest.approx(0.5)
