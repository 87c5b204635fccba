"""The folder pipeline (`predict_files` with reader processes and batches): the same VTU files
as predicting one file at a time, for a multi-scale and a single-level model (both correcting
heat2d's analytic baseline), bad files
costing only themselves, and the throughput line and record."""

import json
import re
import shutil

import meshio
import numpy as np
import pytest
import torch

from conftest import run_train
from meshgnn.cli import main as meshgnn
from meshgnn.data.export import export_samples
from meshgnn.errors import UserError
from meshgnn.inference.folder_predict import FileReader, batches
from meshgnn.inference.package import load_model
from meshgnn.inference.predict import plan_outputs, predict_files, predict_sample, read_mesh

pytestmark = pytest.mark.slow  # trains a single-level model and uses the shared debug run
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def models(debug_run, data_cache, tmp_path_factory):
    """The shared debug run (the default model: coarse levels, residual on heat2d's baseline)
    and a tiny single-level one."""
    cwd = tmp_path_factory.mktemp("single_run")
    proc = run_train(["trainer=debug", "model.num_levels=0", "model.hidden_dim=8", f"hydra.run.dir={cwd / 'run'}",
                      f"paths.data_dir={data_cache}"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"multiscale": load_model(debug_run[0]), "single": load_model(cwd / "run")}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Five heat2d meshes of different sizes (a mesh-size range is drawn per sample)."""
    out = tmp_path_factory.mktemp("folder") / "meshes"
    export_samples("heat2d", out, 5, 3, [0.12, 0.3], 1, workers=1)
    return out


def vtu_fields(path):
    return meshio.read(path).point_data


@pytest.mark.parametrize("name, workers", [("multiscale", 2), ("single", 0)])
def test_batched_folder_writes_what_one_file_at_a_time_writes(models, folder, tmp_path, name, workers):
    model = models[name]
    assert model.features.residual and (model.features.model_inputs.hierarchy is not None) == (name == "multiscale")
    with FileReader(model, None, 0) as reader:
        reads = list(reader.read(plan_outputs([model], [folder], tmp_path / "plan")))
    sizes = [r.sample.num_nodes for r in reads]
    assert len(set(sizes)) > 1
    limit = sizes[0] + sizes[1]  # the first two meshes together, the rest in further batches
    groups = [len(g) for g in batches(reads, limit, lambda read: None)]
    assert groups[0] == 2 and len(groups) > 1 and sum(groups) == len(reads)

    one_by_one = predict_files([model], [folder], tmp_path / "one", CPU, workers=0, batch_nodes=1)
    batched = predict_files([model], [folder], tmp_path / "batched", CPU, workers=workers, batch_nodes=limit)
    assert [r.name for r in batched] == [r.name for r in one_by_one] == [r.name for r in reads]
    for result in one_by_one:
        expected, actual = vtu_fields(tmp_path / "one" / result.output), vtu_fields(tmp_path / "batched" / result.output)
        assert expected.keys() == actual.keys() and "predicted_temperature" in actual
        for key in expected:
            np.testing.assert_allclose(actual[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)

    # and one file at a time is the one-graph preparation every other caller uses
    sample, _ = read_mesh(model, folder / batched[-1].name, folder)
    (alone,) = predict_sample([model], sample, CPU)
    for target, values in alone.items():
        np.testing.assert_allclose(batched[-1].mean[target], values.double().numpy(), rtol=1e-5, atol=1e-6)


def test_a_bad_file_in_a_batched_folder_costs_only_itself(models, folder, tmp_path):
    model = models["multiscale"]
    inputs = tmp_path / "in"
    shutil.copytree(folder, inputs)
    (inputs / "sample_00002.json").unlink()  # its globals are gone
    runs = {}
    for label, workers, batch_nodes in (("one", 0, 1), ("batched", 2, 10 ** 9)):
        failures = []
        results = predict_files([model], [inputs], tmp_path / label, CPU, failures=failures, workers=workers,
                                batch_nodes=batch_nodes)
        runs[label] = ([r.name for r in results], failures)
        assert not (tmp_path / label / "sample_00002.vtu").exists()
    assert runs["batched"] == runs["one"]
    names, failures = runs["batched"]
    assert names == [f"sample_{i:05d}.vtu" for i in (0, 1, 3, 4)]
    assert [(f, "no value for global(s)" in reason) for f, reason in failures] == [("sample_00002.vtu", True)]

    with pytest.raises(UserError, match="sample_00002.vtu: no value for global"):  # no failures list: it raises
        predict_files([model], [inputs], tmp_path / "raises", CPU, workers=2)
    assert (tmp_path / "raises" / "sample_00001.vtu").is_file()  # the files before it were predicted


def test_throughput_is_printed_and_recorded(debug_run, folder, tmp_path, capsys):
    out = tmp_path / "pred"
    meshgnn(["predict", str(debug_run[0]), str(folder), "--out", str(out), "--workers", "0", "--batch-nodes", "5000"])
    printed = capsys.readouterr().out
    match = re.search(r"predicted 5 meshes \(([\d,]+) nodes\) in [\d.]+ s: ([\d.]+) meshes/s, ([\d,]+) nodes/s",
                      printed)
    assert match, printed
    doc = json.loads((out / "predictions.json").read_text())["throughput"]
    assert doc["meshes"] == 5 and doc["nodes"] == int(match.group(1).replace(",", ""))
    assert doc["workers"] == 0 and doc["batch_nodes"] == 5000 and doc["seconds"] > 0
    assert doc["meshes_per_s"] == pytest.approx(5 / doc["seconds"]) and doc["nodes_per_s"] > doc["meshes_per_s"]


def test_bad_reader_and_batch_options_are_one_line(debug_run, folder, tmp_path, capsys):
    for option, value in (("--workers", "-1"), ("--batch-nodes", "0")):
        with pytest.raises(SystemExit):
            meshgnn(["predict", str(debug_run[0]), str(folder), "--out", str(tmp_path / "o"), option, value])
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and option in err
