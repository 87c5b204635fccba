"""Reading meshes for a model: one line for a mesh of the wrong dimension whatever it lacks,
globals given once for files without them (`--globals`), the advice naming that option."""

import json
import shutil

import meshio
import numpy as np
import pytest

from inference_fixtures import files, package_dir  # noqa: F401 (fixtures)
from meshgnn.cli import main as meshgnn
from meshgnn.data.export import export_samples
from meshgnn.errors import UserError
from meshgnn.inference.mesh_input import parse_globals, read_mesh
from meshgnn.inference.package import load_package

pytestmark = pytest.mark.slow  # needs the shared debug training run


@pytest.fixture(scope="module")
def package(package_dir):
    return load_package(package_dir)


def test_a_3d_mesh_without_the_models_fields_is_one_dimension_line(package_dir, tmp_path, capsys):
    """An elasticity3d file given to a heat2d model: not 16 missing-field lines but one."""
    export_samples("elasticity3d", tmp_path / "solid", 2, 0, 0.4, 0, workers=1)
    with pytest.raises(SystemExit):
        meshgnn(["predict", str(package_dir), str(tmp_path / "solid"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "sample_00000.vtu: is a 3D mesh but" in err and "trained on 2D meshes" in err


def test_globals_given_on_the_command_line_replace_a_missing_sidecar(package, package_dir, files, tmp_path,
                                                                     capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(files / "sample_00001.vtu", bare)
    with pytest.raises(SystemExit):
        meshgnn(["predict", str(package_dir), str(bare), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--globals k=VALUE" in err and "drop it" not in err

    sidecar = json.loads((files / "sample_00001.json").read_text())
    meshgnn(["predict", str(package_dir), str(bare), "--out", str(tmp_path / "given"), "--globals",
             *(f"{k}={v!r}" for k, v in sidecar.items())])
    meshgnn(["predict", str(package_dir), str(files / "sample_00001.vtu"), "--out", str(tmp_path / "side")])
    given = meshio.read(tmp_path / "given" / "sample_00001.vtu").point_data["predicted_temperature"]
    side = meshio.read(tmp_path / "side" / "sample_00001.vtu").point_data["predicted_temperature"]
    np.testing.assert_array_equal(given, side)

    with_files = read_mesh(package, files / "sample_00001.vtu", files, parse_globals(["k=7"], package))[0]
    assert with_files.globals[0] == 7 and with_files.globals[1] == sidecar["t0"]  # given replaces, rest kept


@pytest.mark.parametrize("items, message", [
    (["q=1"], "has no global 'q'"), (["k"], "write NAME=VALUE"), (["k=1,2"], "'k' needs 1 finite"),
    (["k=x"], "not a number")])
def test_bad_globals_are_one_line(package, items, message):
    with pytest.raises(UserError, match=message):
        parse_globals(items, package)
