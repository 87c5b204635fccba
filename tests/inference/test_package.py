"""Model packages: export from a real run, load, verify, refuse what is not a package."""

import json

import pytest
import torch
from safetensors.torch import load_file

from inference_fixtures import package_dir  # noqa: F401 (fixtures)
from meshgnn.cli import main as meshgnn
from meshgnn.errors import UserError
from meshgnn.inference.ensemble import evaluate_on_test
from meshgnn.inference.export import write_package
from meshgnn.inference.package import load_model, load_package, package_from_checkpoint

pytestmark = pytest.mark.slow  # needs the shared debug training run


def test_export_writes_a_self_describing_package_without_pickle(package_dir, debug_run):
    run_dir, _ = debug_run
    assert sorted(p.name for p in package_dir.iterdir()) == [
        "config.json", "manifest.json", "model.safetensors", "normalization.json"]
    manifest = json.loads((package_dir / "manifest.json").read_text())
    assert set(manifest["files"]) == {"config.json", "model.safetensors", "normalization.json"}
    assert manifest["origin"]["checkpoint"].endswith("checkpoints/best.ckpt")
    results = json.loads((run_dir / "results.json").read_text())["model"]
    assert manifest["origin"]["test_metrics"]["test/temperature/rel_l2"] == results["test/temperature/rel_l2"]
    assert {"torch", "torch_geometric", "meshgnn", "python"} <= set(manifest["versions"])
    config = json.loads((package_dir / "config.json").read_text())
    assert [f[0] for f in config["features"]["source"]["inputs"]] == [
        "boundary_temperature", "heat_source", "conductivity"]
    assert config["reader"]["node_type_field"] == "node_type"
    assert config["features"]["fourier_features"] > 0
    assert all(isinstance(v, torch.Tensor) for v in load_file(str(package_dir / "model.safetensors")).values())


def test_package_predicts_the_test_split_exactly_as_the_trained_model(package_dir, debug_run, data_cache):
    run_dir, _ = debug_run
    results = json.loads((run_dir / "results.json").read_text())["model"]
    table = evaluate_on_test([load_package(package_dir)], data_cache, torch.device("cpu"))
    (name,) = [n for n in table.names if n != "ensemble"]
    for target in ("temperature", "heat_flux"):
        for metric in ("rel_l2", "mae"):
            key = f"test/{target}/{metric}"
            assert table.metrics[name][key] == pytest.approx(results[key], rel=1e-5)


def test_tampered_incomplete_and_foreign_packages_are_refused(package_dir, tmp_path):
    import shutil

    tampered = tmp_path / "tampered"
    shutil.copytree(package_dir, tampered)
    config = json.loads((tampered / "config.json").read_text())
    config["model"]["hidden_dim"] += 1
    (tampered / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="config.json: checksum mismatch"):
        load_package(tampered)

    incomplete = tmp_path / "incomplete"
    shutil.copytree(package_dir, incomplete)
    (incomplete / "normalization.json").unlink()
    with pytest.raises(UserError, match="normalization.json is missing"):
        load_package(incomplete)

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(UserError, match="not a meshgnn package manifest"):
        load_package(foreign)
    with pytest.raises(UserError, match="has no manifest.json"):
        load_package(tmp_path)


def test_export_refuses_a_non_empty_folder_and_keeps_it(package_dir, debug_run, capsys):
    run_dir, _ = debug_run
    before = {p.name: p.read_bytes() for p in package_dir.iterdir()}
    with pytest.raises(SystemExit) as exit_info:
        meshgnn(["export", str(run_dir), str(package_dir)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "not empty" in err and len(err.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in package_dir.iterdir()} == before


def test_pruned_bf16_package_stores_what_it_says(debug_run, tmp_path):
    run_dir, _ = debug_run
    package = load_model(run_dir, prune=0.2)
    out = write_package(package, tmp_path / "small", weight_dtype="bf16")
    weights = load_file(str(out / "model.safetensors"))
    linear = [v for k, v in weights.items() if k.endswith("weight") and v.dim() == 2]
    assert all(v.dtype == torch.bfloat16 for v in linear)
    zeros = sum(int((v == 0).sum()) for v in linear) / sum(v.numel() for v in linear)
    assert 0.19 <= zeros <= 0.21
    loaded = load_package(out)
    assert loaded.pruning == 0.2 and loaded.weight_dtype == "bf16"
    fresh = package_from_checkpoint(run_dir).model.state_dict()
    for key, value in loaded.model.state_dict().items():  # loaded back exactly as stored
        torch.testing.assert_close(value, weights[key].float())
        assert (value == 0).sum() >= (fresh[key] == 0).sum()
    with pytest.raises(UserError, match="already pruned"):
        load_model(out, prune=0.2)


def test_exported_program_predicts_like_the_package_on_a_new_mesh_size(debug_run, tmp_path):
    """`meshgnn export --program` traces on a generated mesh; the program, run without the
    model's Python classes, matches eager on a mesh of another size read from a file."""
    from meshgnn.data.export import export_samples
    from meshgnn.inference.deploy import load_program, run_program
    from meshgnn.inference.predict import prepare_graph, read_mesh

    out = tmp_path / "deployable"
    meshgnn(["export", str(debug_run[0]), str(out), "--program"])
    assert "program.pt2" in json.loads((out / "manifest.json").read_text())["files"]
    package = load_package(out)
    export_samples("heat2d", tmp_path / "finer", 1, 5, 0.09, 2, workers=1)
    sample, _ = read_mesh(package, tmp_path / "finer" / "sample_00000.vtu", tmp_path / "finer")
    graph = prepare_graph(package, sample)
    program = load_program(out / "program.pt2")
    expected, _ = package.model(graph)
    actual = run_program(program, graph)
    for name, _dim in package.targets:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-4, atol=1e-5)
