"""`meshgnn evaluate`, the package's own test numbers at export, staged run directories, and
file modes of everything a package or a prediction writes."""

import json
import os
import shutil
import stat

import pytest
import torch
from omegaconf import OmegaConf

from inference_fixtures import files, package_dir  # noqa: F401 (fixtures)
from meshgnn.cli import main as meshgnn
from meshgnn.errors import UserError
from meshgnn.inference.evaluate import evaluate_files
from meshgnn.inference.package import load_model, load_package

pytestmark = pytest.mark.slow  # needs the shared debug training run
CPU = torch.device("cpu")


def test_evaluate_on_the_runs_own_data_reproduces_its_results(debug_run, data_cache, tmp_path, capsys):
    run_dir, _ = debug_run
    out = tmp_path / "eval.json"
    meshgnn(["evaluate", str(run_dir), "heat2d", "--out", str(out), "--data-dir", str(data_cache)])
    printed = capsys.readouterr().out
    assert "test split of heat2d" in printed and "rel_l2 analytic" in printed
    doc, results = json.loads(out.read_text()), json.loads((run_dir / "results.json").read_text())
    for who in ("model", "baseline_mean", "baseline_analytic"):
        assert set(doc[who]) == set(results[who])
        for key, value in results[who].items():
            assert doc[who][key] == pytest.approx(value, rel=1e-5), (who, key)
    assert doc["evaluated"]["num_meshes"] == 4 and doc["evaluated"]["data"]["name"] == "heat2d"


def test_evaluate_takes_data_overrides_and_refuses_typos_and_other_data(debug_run, data_cache, tmp_path, capsys):
    run_dir, _ = debug_run
    out = tmp_path / "coarse.json"
    meshgnn(["evaluate", str(run_dir), "heat2d", "num_samples=10", "data.mesh_size=0.2", "--out", str(out),
             "--data-dir", str(data_cache)])
    doc = json.loads(out.read_text())
    assert doc["evaluated"]["data"]["mesh_size"] == 0.2 and doc["evaluated"]["num_meshes"] == 1
    for args, message in ((["heat2d", "data.mesh_sise=0.2"], "unknown key data.mesh_sise"),
                          (["elasticity2d"], "trained on 'heat2d' data")):
        with pytest.raises(SystemExit):
            meshgnn(["evaluate", str(run_dir), *args, "--data-dir", str(data_cache)])
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


def test_evaluate_on_a_folder_averages_its_files(package_dir, files, tmp_path):
    package = load_package(package_dir)
    out = tmp_path / "folder.json"
    meshgnn(["evaluate", str(package_dir), str(files), "--out", str(out)])
    doc = json.loads(out.read_text())
    assert doc["evaluated"]["num_meshes"] == 3 and doc["evaluated"]["files"] == str(files)
    single = [evaluate_files([package], [files / f"sample_{i:05d}.vtu"], CPU).results() for i in range(3)]
    for key in ("test/temperature/rel_l2", "test/heat_flux/mae"):
        assert doc["model"][key] == pytest.approx(sum(s["model"][key] for s in single) / 3)
        assert doc["baseline_analytic"][key] == pytest.approx(sum(s["baseline_analytic"][key] for s in single) / 3)
    (tmp_path / "bare").mkdir()
    shutil.copy(files / "sample_00000.json", tmp_path / "bare")
    import meshio
    mesh = meshio.read(files / "sample_00000.vtu")
    del mesh.point_data["temperature"]
    meshio.write(tmp_path / "bare" / "sample_00000.vtu", mesh)
    with pytest.raises(UserError, match="has no true temperature to evaluate against"):
        evaluate_files([package], [tmp_path / "bare"], CPU)


def test_export_measures_the_pruned_bf16_package_not_the_run(debug_run, data_cache, tmp_path, capsys):
    run_dir, _ = debug_run
    out = tmp_path / "small"
    meshgnn(["export", str(run_dir), str(out), "--precision", "bf16", "--prune", "0.5",
             "--data-dir", str(data_cache)])
    printed = capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    run = json.loads((run_dir / "results.json").read_text())["model"]
    test = manifest["test"]
    assert test["of"] == "package" and test["num_meshes"] == 4
    assert test["metrics"]["test/temperature/rel_l2"] != pytest.approx(run["test/temperature/rel_l2"], rel=1e-4)
    assert f"temperature {test['metrics']['test/temperature/rel_l2']:.4f}" in printed
    assert "package test rel L2 (bf16, pruned 0.5 weights" in printed
    meshgnn(["evaluate", str(out), "heat2d", "--out", str(tmp_path / "e.json"), "--data-dir", str(data_cache)])
    again = json.loads((tmp_path / "e.json").read_text())["model"]
    assert again["test/temperature/rel_l2"] == pytest.approx(test["metrics"]["test/temperature/rel_l2"], rel=1e-6)


def test_export_of_a_folder_model_without_its_folder_says_whose_numbers(package_dir):
    from meshgnn.inference.evaluate import package_test

    package = load_package(package_dir)
    package.data = {**package.data, "name": "mesh_folder", "path": "/nonexistent/folder"}
    package.pruning = 0.2
    package.origin = {**package.origin, "test_metrics": {"test/temperature/rel_l2": 0.5}}
    test = package_test(package, None, CPU)
    assert test["of"] == "run" and "not measured" in test["reason"] and "/nonexistent/folder" in test["reason"]
    assert test["metrics"] == {"test/temperature/rel_l2": 0.5} and "not of this package" in test["reason"]


@pytest.fixture(scope="module")
def staged_run(debug_run, tmp_path_factory):
    """A staged run's layout: stage1 finished, stage2 interrupted with checkpoints (copies of
    the debug run), the launch config listing both stages."""
    run_dir, _ = debug_run
    staged = tmp_path_factory.mktemp("staged") / "run"
    for stage in ("stage1", "stage2"):
        shutil.copytree(run_dir, staged / stage, ignore=shutil.ignore_patterns(".hydra", "tb"))
    (staged / "stage2" / "results.json").unlink()
    (staged / "stage2" / "checkpoints" / "best.ckpt").unlink()
    launch = staged / ".hydra" / "launches" / "01"
    launch.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"stages": {"stage1": {}, "stage2": {}}}), launch / "config.yaml")
    return staged


def test_export_and_predict_read_a_staged_runs_last_finished_stage(staged_run, files, tmp_path, capsys):
    meshgnn(["export", str(staged_run), str(tmp_path / "pkg"), "--no-test"])
    printed = capsys.readouterr().out
    assert "stage stage1 of the staged run" in printed
    origin = json.loads((tmp_path / "pkg" / "manifest.json").read_text())["origin"]
    assert origin["checkpoint"] == str((staged_run / "stage1" / "checkpoints" / "best.ckpt").resolve())
    meshgnn(["predict", str(staged_run), str(files / "sample_00000.vtu"), "--out", str(tmp_path / "pred")])
    assert "stage stage1 of the staged run" in capsys.readouterr().out
    assert (tmp_path / "pred" / "sample_00000.vtu").is_file()
    shutil.rmtree(staged_run / "stage1" / "checkpoints")
    with pytest.raises(UserError, match=r"its stage stage1 \(the one it is read at\) has no checkpoints"):
        load_model(staged_run)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_package_and_prediction_files_respect_the_umask(debug_run, files, tmp_path, umask):
    previous = os.umask(umask)
    try:
        program = ["--program"] if umask == 0o027 else []  # torch.export costs seconds: once
        meshgnn(["export", str(debug_run[0]), str(tmp_path / "pkg"), *program, "--no-test"])
        meshgnn(["predict", str(tmp_path / "pkg"), str(files), "--out", str(tmp_path / "pred")])
    finally:
        os.umask(previous)
    written = [p for folder in ("pkg", "pred") for p in (tmp_path / folder).rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"model.safetensors", "manifest.json", "predictions.csv", "sample_00000.vtu",
                                        *(["program.pt2"] if umask == 0o027 else [])}
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
