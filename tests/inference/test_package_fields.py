"""Hand-edited packages and checkpoints: every field a loader reads is checked, and weights that
do not fit the model are refused in one line naming the first mismatched tensor."""

import hashlib
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import run_train
from inference_fixtures import files, package_dir  # noqa: F401 (fixtures)
from meshgnn.cli import main as meshgnn
from meshgnn.training.checkpoint import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.slow  # needs the shared debug training run
REEXPORT = "re-export the package with `meshgnn export RUN_DIR OUT_DIR`"


def edited(package_dir, tmp_path, name, edit):
    """A copy of the package whose file `name` went through `edit`, with the manifest's
    checksum updated, as a user who edits and re-hashes would leave it."""
    copy = tmp_path / f"edited_{len(list(tmp_path.iterdir()))}"
    shutil.copytree(package_dir, copy)
    if name.endswith(".json"):
        doc = json.loads((copy / name).read_text())
        edit(doc)
        (copy / name).write_text(json.dumps(doc))
    else:
        edit(copy / name)
    manifest = json.loads((copy / "manifest.json").read_text())
    if name != "manifest.json" and isinstance(manifest.get("files"), dict):
        manifest["files"][name] = hashlib.sha256((copy / name).read_bytes()).hexdigest()
        (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def predict_error(package, files, tmp_path, capsys):
    """`meshgnn predict` of an edited package: one error line, exit 2, no output folder."""
    out = tmp_path / "pred"
    with pytest.raises(SystemExit) as exit_info:
        meshgnn(["predict", str(package), str(files / "sample_00000.vtu"), "--out", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert not out.exists()
    return err


def pop(*keys):
    def edit(doc):
        for key in keys[:-1]:
            doc = doc[key]
        del doc[keys[-1]]
    return edit


def put(value, *keys):
    def edit(doc):
        for key in keys[:-1]:
            doc = doc[key]
        doc[keys[-1]] = value
    return edit


@pytest.mark.parametrize("name, edit, expected", [
    ("config.json", pop("reader"), "config.json: has no field 'reader' (a JSON object)"),
    ("config.json", put("abc", "reader", "inputs"), "config.json: field 'reader.inputs' must be a list of "
                                                    "strings, not 'abc'"),
    ("config.json", put({"temperature": 0}, "reader", "dims"), "field 'reader.dims' must be an object of field"),
    ("config.json", pop("data", "name"), "config.json: has no field 'data.name'"),
    ("config.json", put("fp64", "weights", "dtype"), "field 'weights.dtype' must be one of fp32, bf16, fp16"),
    ("config.json", put(1.5, "weights", "pruning"), "field 'weights.pruning' must be a number in [0, 1)"),
    ("config.json", put("median", "model", "aggregation"), "config.json: model.aggregation='median' is not one "
                                                           "of sum, mean, max"),
    ("config.json", put(1, "model", "hidden_size"), "config.json: unknown key model.hidden_size"),
    ("config.json", pop("model", "hidden_dim"), "model.hidden_dim"),
    ("config.json", pop("features", "source"), "config.json: field 'features' has no 'source'"),
    ("config.json", put(3, "node_dim"), "normalization.json: 'x' has"),
    ("normalization.json", pop("y"), "normalization.json: has no statistics for 'y'"),
    ("normalization.json", put([0.0], "edge_attr", "std"), "'edge_attr' mean and std must be lists of one length"),
    ("manifest.json", put(["model.safetensors"], "files"), "manifest.json: field 'files' must be an object"),
    ("manifest.json", put("1", "format_version"), "field 'format_version' must be a non-negative integer"),
    ("manifest.json", put({"../../etc/passwd": "0"}, "files", ), "the manifest does not list model.safetensors"),
])
def test_a_missing_or_mistyped_field_is_one_line_naming_file_and_field(package_dir, files, tmp_path, capsys,
                                                                        name, edit, expected):
    err = predict_error(edited(package_dir, tmp_path, name, edit), files, tmp_path, capsys)
    assert expected in err and err.endswith(REEXPORT)


def test_an_unknown_file_in_the_manifest_is_refused(package_dir, files, tmp_path, capsys):
    def add(doc):
        doc["files"]["../outside.txt"] = "0" * 64
    err = predict_error(edited(package_dir, tmp_path, "manifest.json", add), files, tmp_path, capsys)
    assert "manifest.json: lists '../outside.txt', which is not a package file" in err


def test_weights_that_do_not_fit_the_config_name_the_first_tensor(package_dir, files, tmp_path, capsys):
    first = next(k for k, v in load_file(str(package_dir / "model.safetensors")).items() if v.dim() == 2)

    def wider(path):
        state = load_file(str(path))
        state[first] = torch.zeros(state[first].shape[0] + 1, *state[first].shape[1:])
        save_file(state, str(path))

    err = predict_error(edited(package_dir, tmp_path, "model.safetensors", wider), files, tmp_path, capsys)
    rows, cols = load_file(str(package_dir / "model.safetensors"))[first].shape
    assert (f"model.safetensors: weights do not fit the model: tensor '{first}' is [{rows + 1}, {cols}] in "
            f"the saved weights but [{rows}, {cols}] in the model; they are not the weights of the model in "
            "config.json") in err

    def renamed(path):
        state = load_file(str(path))
        state["old." + first] = state.pop(first)
        save_file(state, str(path))

    err = predict_error(edited(package_dir, tmp_path, "model.safetensors", renamed), files, tmp_path, capsys)
    assert f"tensor '{first}' of the model is missing from the saved weights (it has 'old.{first}'" in err


def edited_checkpoint(run_dir, tmp_path, edit):
    """A copy of the run whose best.ckpt went through `edit` and was saved again (checksum and all)."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    for name in ("best.ckpt", "last.ckpt"):
        payload = load_checkpoint(copy / "checkpoints" / name)
        edit(payload)
        save_checkpoint({k: v for k, v in payload.items() if k not in ("format", "format_version", "checksum")},
                        copy / "checkpoints" / name)
    return copy


def test_export_of_a_checkpoint_whose_config_was_edited_is_one_line(debug_run, tmp_path, capsys):
    def hidden_24(payload):
        payload["config_yaml"] = payload["config_yaml"].replace("hidden_dim: ", "hidden_dim: 24  #", 1)

    run = edited_checkpoint(debug_run[0], tmp_path, hidden_24)
    with pytest.raises(SystemExit) as exit_info:
        meshgnn(["export", str(run), str(tmp_path / "pkg")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "best.ckpt: weights do not fit the model: tensor " in err
    assert "in the saved weights but [24, " in err and "meshgnn ckpt inspect" in err
    assert not (tmp_path / "pkg").exists()


def test_resume_and_init_from_with_weights_that_do_not_fit_are_one_line(debug_run, data_cache, tmp_path):
    """resume= of a checkpoint whose parameter was renamed (another meshgnn version), and
    init_from= with another hidden_dim: one error line each, exit 2, no traceback."""
    def renamed(payload):
        first = next(iter(payload["model"]))
        payload["model"] = {("old_" + k if k == first else k): v for k, v in payload["model"].items()}

    run = edited_checkpoint(debug_run[0], tmp_path, renamed)
    proc = run_train([f"resume={run}"], cwd=tmp_path, timeout=120)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(errors) == 1 and "the resume= checkpoint: weights do not fit the model: tensor '" in errors[0]
    assert "is missing from the saved weights (it has 'old_" in errors[0]

    hidden = int(load_checkpoint(debug_run[0] / "checkpoints" / "best.ckpt")["config_yaml"]
                 .split("hidden_dim: ", 1)[1].split()[0])
    proc = run_train(["trainer=debug", f"init_from={debug_run[0]}", f"model.hidden_dim={hidden + 8}",
                      "trainer.epochs=4",
                      f"paths.data_dir={data_cache}", f"hydra.run.dir={tmp_path / 'warm'}"], cwd=tmp_path, timeout=120)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(errors) == 1 and f"init_from={debug_run[0]}: weights do not fit the model: tensor '" in errors[0]
    assert f"in the saved weights but [{hidden + 8}, " in errors[0]
