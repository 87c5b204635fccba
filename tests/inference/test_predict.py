"""Prediction on mesh files: same graphs as training, VTU out, errors, ensembles, precision."""

import dataclasses

import meshio
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from inference_fixtures import files, package_dir  # noqa: F401 (fixtures)
from meshgnn.cli import main as meshgnn
from meshgnn.data.sources import get_source
from meshgnn.errors import UserError
from meshgnn.inference.package import load_model
from meshgnn.inference.predict import predict_files, predict_graph, prepare_graph, read_mesh

pytestmark = pytest.mark.slow  # needs the shared debug training run
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model(debug_run):
    return load_model(debug_run[0])


def test_a_file_predicts_like_the_generated_sample_it_holds(model, files):
    """Reading a file (fields, node types, globals) and recomputing the analytic baseline the
    residual model corrects give the model exactly the input the generator's sample gives."""
    cfg = OmegaConf.create(model.data)
    generated = get_source("heat2d").generate(1, cfg.seed, cfg.mesh_size, cfg.max_holes)
    from_file, _ = read_mesh(model, files / "sample_00001.vtu", files)
    assert model.features.residual
    expected = predict_graph(model, prepare_graph(model, generated), CPU)
    actual = predict_graph(model, prepare_graph(model, from_file), CPU)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6)


def test_predict_writes_vtu_with_predictions_and_errors(debug_run, files, tmp_path, capsys):
    out = tmp_path / "pred"
    meshgnn(["predict", str(debug_run[0]), str(files), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "rel_l2" in printed and "mean (3 files)" in printed
    for index in range(3):
        source = meshio.read(files / f"sample_{index:05d}.vtu")
        written = meshio.read(out / f"sample_{index:05d}.vtu")
        n = len(source.points)
        assert written.point_data["predicted_temperature"].shape == (n,)
        assert written.point_data["predicted_heat_flux"].shape == (n, 3)  # 2D vectors padded for ParaView
        assert written.point_data["error_temperature"].shape == (n,)
        np.testing.assert_allclose(written.point_data["error_temperature"],
                                   written.point_data["predicted_temperature"] - source.point_data["temperature"])
        np.testing.assert_array_equal(written.point_data["conductivity"], source.point_data["conductivity"])
        assert "std_temperature" not in written.point_data


def test_files_without_targets_get_predictions_only(model, files, tmp_path):
    mesh = meshio.read(files / "sample_00000.vtu")
    for name in ("temperature", "heat_flux"):
        del mesh.point_data[name]
    meshio.write(tmp_path / "new.vtu", mesh)
    (tmp_path / "new.json").write_text((files / "sample_00000.json").read_text())
    (result,) = predict_files([model], [tmp_path / "new.vtu"], tmp_path / "out", CPU)
    assert result.errors == {}
    written = meshio.read(tmp_path / "out" / "new.vtu")
    assert "predicted_temperature" in written.point_data and "error_temperature" not in written.point_data


def test_missing_input_field_and_wrong_dimension_are_one_line_errors(model, files, tmp_path, capsys):
    mesh = meshio.read(files / "sample_00000.vtu")
    del mesh.point_data["conductivity"]
    meshio.write(tmp_path / "bad.vtu", mesh)
    (tmp_path / "bad.json").write_text((files / "sample_00000.json").read_text())
    with pytest.raises(SystemExit):
        meshgnn(["predict", str(model.origin["run_dir"]), str(tmp_path / "bad.vtu"), "--out",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.vtu" in err and "'conductivity'" in err

    tets = get_source("elasticity3d").generate(0, 0, 0.3, 0)
    solid = meshio.Mesh(tets.points, tets.cells, point_data={
        k: np.zeros((len(tets.points), *v.shape[1:]))
        for k, v in meshio.read(files / "sample_00000.vtu").point_data.items()})
    meshio.write(tmp_path / "solid.vtu", solid)
    (tmp_path / "solid.json").write_text((files / "sample_00000.json").read_text())
    with pytest.raises(UserError, match=r"solid.vtu: is a 3D mesh but .* was trained on 2D meshes"):
        predict_files([model], [tmp_path / "solid.vtu"], tmp_path / "out", CPU)


def test_ensemble_of_identical_members_is_the_member_with_zero_std(model, files, tmp_path):
    (single,) = predict_files([model], [files / "sample_00002.vtu"], tmp_path / "one", CPU)
    (triple,) = predict_files([model] * 3, [files / "sample_00002.vtu"], tmp_path / "three", CPU)
    for name in single.mean:
        np.testing.assert_allclose(triple.mean[name], single.mean[name], rtol=1e-12)
        assert not triple.std[name].any()
    written = meshio.read(tmp_path / "three" / "sample_00002.vtu")
    assert not written.point_data["std_temperature"].any()


def test_members_that_predict_other_things_are_refused(model):
    other = dataclasses.replace(model, name="other", reader=dataclasses.replace(
        model.reader, inputs=("boundary_temperature", "heat_source")))
    with pytest.raises(UserError, match="other cannot join an ensemble .* input fields differ"):
        predict_files([model, other], [], None, CPU)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_lower_precision_stays_close_to_fp32(model, files, precision):
    sample, _ = read_mesh(model, files / "sample_00000.vtu", files)
    graph = prepare_graph(model, sample)
    exact = predict_graph(model, graph, CPU, "fp32")
    approx = predict_graph(model, graph, CPU, precision)
    for name in exact:
        rel = (approx[name] - exact[name]).norm() / exact[name].norm()
        assert 0 < rel < 0.02, (name, float(rel))


def test_predictions_table_as_data_keeps_same_named_files_of_subfolders_apart(package_dir, files, tmp_path,
                                                                              capsys):
    """predictions.csv/.json name files by path relative to the input folder, carry the
    analytic baseline's errors, and the console shows the same relative paths."""
    import csv
    import json
    import shutil

    meshes = tmp_path / "meshes"
    for sub, index in (("a", 0), ("b", 1)):
        (meshes / sub).mkdir(parents=True)
        for ext in ("vtu", "json"):
            shutil.copy(files / f"sample_{index:05d}.{ext}", meshes / sub / f"wing.{ext}")
    out = tmp_path / "pred"
    meshgnn(["predict", str(package_dir), str(meshes), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "a/wing.vtu" in printed and "b/wing.vtu" in printed and "baseline rel_l2" in printed
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert [(r["file"], r["target"]) for r in rows] == [
        ("a/wing.vtu", "temperature"), ("a/wing.vtu", "heat_flux"), ("b/wing.vtu", "temperature"),
        ("b/wing.vtu", "heat_flux")]
    assert rows[0]["rel_l2"] != rows[2]["rel_l2"] and float(rows[0]["baseline_rel_l2"]) > 0
    doc = json.loads((out / "predictions.json").read_text())
    assert [f["file"] for f in doc["files"]] == ["a/wing.vtu", "b/wing.vtu"]
    assert doc["files"][1]["output"] == "b/wing.vtu" and (out / "b" / "wing.vtu").is_file()
    assert set(doc["files"][0]["baseline_errors"]["heat_flux"]) == {"rel_l2", "mae", "max_abs"}
    assert doc["mean"]["temperature"]["files"] == 2

    written = meshio.read(out / "a" / "wing.vtu")  # the true vector as wide as the predicted one
    assert written.point_data["heat_flux"].shape == written.point_data["predicted_heat_flux"].shape
    assert written.point_data["heat_flux"].shape[1] == 3 and not written.point_data["heat_flux"][:, 2].any()


def test_ensemble_predictions_are_written_as_data_too(package_dir, files, tmp_path):
    import json

    out = tmp_path / "ens"
    meshgnn(["ensemble", str(package_dir), str(package_dir), "--no-test", "--predict", str(files), "--out", str(out)])
    doc = json.loads((out / "predictions.json").read_text())
    assert doc["model"].startswith("ensemble of ") and len(doc["files"]) == 3
    assert (out / "predictions.csv").read_text().count("\n") == 1 + 3 * 2  # header, 3 files x 2 targets


def test_a_file_the_model_cannot_take_costs_only_itself(debug_run, files, tmp_path, capsys):
    """One bad file in a folder: the others are predicted and tabled, the bad one is one line,
    and the exit status says something was refused."""
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(2):
        for suffix in (".vtu", ".json"):
            name = f"sample_{index:05d}{suffix}"
            (folder / name).write_bytes((files / name).read_bytes())
    (folder / "sample_00001.json").unlink()  # its globals are gone
    out = tmp_path / "pred"
    with pytest.raises(SystemExit) as exited:
        meshgnn(["predict", str(debug_run[0]), str(folder), "--out", str(out)])
    assert exited.value.code == 2
    printed = capsys.readouterr()
    assert (out / "sample_00000.vtu").is_file() and not (out / "sample_00001.vtu").exists()
    rows = (out / "predictions.csv").read_text().splitlines()[1:]
    assert rows and all(row.startswith("sample_00000.vtu,") for row in rows)
    assert printed.err.count("sample_00001.vtu: no value for global(s)") == 1
    assert "1 of 2 file(s) could not be predicted" in printed.err
