"""Packages and checkpoints written before layout 2 (raw coordinates, per-mesh coarse cells;
`meshgnn.data.features.LAYOUT`): they predict as they did, resuming one is one line, and its
weights start a new run. The fixture was written by the code of da7af77
(tests/fixtures/old_package_v1/README.md says how to rebuild it)."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from conftest import run_train
from meshgnn.data.features import LAYOUT, fix_cell_size
from meshgnn.inference.package import Package, load_model, load_package
from meshgnn.inference.predict import predict_files
from meshgnn.training.checkpoint import load_checkpoint

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "old_package_v1"
CPU = torch.device("cpu")


def predict_plate(package: Package, out: Path) -> dict[str, np.ndarray]:
    (result,) = predict_files([package], [FIXTURE / "plate.vtu"], out, CPU)
    return result.mean


def assert_predicts_as_it_did(package: Package, reference: str, out: Path) -> None:
    expected = np.load(FIXTURE / reference)
    predicted = predict_plate(package, out)
    for name in ("temperature", "heat_flux"):
        np.testing.assert_allclose(predicted[name], expected[name].reshape(predicted[name].shape), rtol=0,
                                   atol=1e-5, err_msg=name)


def on_current_layout(package: Package) -> Package:
    inputs = replace(package.features.model_inputs, layout=LAYOUT)
    return replace(package, features=fix_cell_size(replace(package.features, model_inputs=inputs),
                                                   package.normalizer))


def test_a_package_of_layout_1_loads_and_predicts_as_it_did(tmp_path):
    package = load_package(FIXTURE / "package")
    assert "layout" not in json.loads((FIXTURE / "package" / "config.json").read_text())["features"]["model_inputs"]
    inputs = package.features.model_inputs
    assert inputs.layout == 1 and inputs.hierarchy.num_levels == 3 and inputs.hierarchy.cell_size is None
    assert_predicts_as_it_did(package, "predicted.npz", tmp_path / "out")
    # the same weights on layout-2 inputs predict otherwise (the plate is off the origin and
    # meshed coarser than training): the layout flag is what keeps the old predictions
    other = predict_plate(on_current_layout(package), tmp_path / "current")
    assert np.abs(other["temperature"] - np.load(FIXTURE / "predicted.npz")["temperature"]).max() > 1e-3


def test_a_checkpoint_of_layout_1_predicts_as_it_did(tmp_path):
    package = load_model(FIXTURE / "old.ckpt")
    assert package.features.model_inputs.layout == 1
    assert_predicts_as_it_did(package, "predicted_ckpt.npz", tmp_path / "out")


def test_resuming_a_checkpoint_of_layout_1_is_one_line_pointing_to_init_from(tmp_path):
    ckpt = tmp_path / "old.ckpt"
    shutil.copy(FIXTURE / "old.ckpt", ckpt)
    proc = run_train([f"resume={ckpt}", f"hydra.run.dir={tmp_path / 'run'}", f"paths.data_dir={tmp_path / 'data'}"],
                     cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "cannot be resumed" in lines[0] and f"init_from={ckpt}" in lines[0] and "layout 1" in lines[0]


def test_init_from_a_checkpoint_of_layout_1_trains_on_layout_2(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_train(["debug=default", "model=multiscale_gnn", "model.hidden_dim=4", "model.num_layers=1",
                      "model.num_levels=1", "model.mlp_layers=1", "data.num_samples=10", "trainer.epochs=2",
                      f"init_from={FIXTURE / 'old.ckpt'}", f"hydra.run.dir={run_dir}",
                      f"paths.data_dir={tmp_path / 'data'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    inputs = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["features"]["model_inputs"]
    assert inputs["layout"] == LAYOUT and inputs["hierarchy"]["cell_size"] > 0
