"""The notebook API: `meshgnn.load(path).predict(mesh)`, as the README shows it (its code block
runs here against a package of the shared debug run), and `import meshgnn` without torch."""

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf

import meshgnn
from conftest import ROOT
from meshgnn.cli import main as meshgnn_cli
from meshgnn.data.export import export_samples
from meshgnn.errors import UserError

README_MARK = "<!-- tested: tests/test_api.py -->"


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(re.escape(README_MARK) + r"\s*```python\n(.*?)```", text, re.S)
    assert match, f"README.md has no python block after {README_MARK}"
    return match.group(1)


@pytest.fixture(scope="module")
def workdir(debug_run, tmp_path_factory):
    """my_model (a package of the debug run) and mesh.vtu + mesh.json of the run's own data."""
    folder = tmp_path_factory.mktemp("api")
    meshgnn_cli(["export", str(debug_run[0]), str(folder / "my_model"), "--no-test"])
    cfg = OmegaConf.load(debug_run[0] / ".hydra" / "config.yaml").data
    export_samples("heat2d", folder / "meshes", 1, cfg.seed, cfg.mesh_size, cfg.max_holes, workers=1)
    for ext in ("vtu", "json"):
        shutil.copy(folder / "meshes" / f"sample_00000.{ext}", folder / f"mesh.{ext}")
    return folder


@pytest.mark.slow  # needs the shared debug training run
def test_readme_example_runs(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    exec(compile(readme_example(), "README.md example", "exec"), {})


@pytest.mark.slow
def test_predictions_are_the_cli_ones_in_physical_units_and_refusals_are_one_line(workdir, tmp_path):
    import meshio

    model = meshgnn.load(workdir / "my_model", device="cpu")
    fields = model.predict(workdir / "mesh.vtu")
    meshgnn_cli(["predict", str(workdir / "my_model"), str(workdir / "mesh.vtu"), "--out", str(tmp_path)])
    written = meshio.read(tmp_path / "mesh.vtu").point_data
    np.testing.assert_allclose(fields["temperature"][:, 0], written["predicted_temperature"], rtol=1e-6)
    np.testing.assert_allclose(fields["heat_flux"], written["predicted_heat_flux"][:, :2], rtol=1e-6)
    assert fields["heat_flux"].dtype == np.float64 and model.targets == {"temperature": 1, "heat_flux": 2}

    mesh = meshio.read(workdir / "mesh.vtu")
    with pytest.raises(UserError, match=r"^mesh 0: no value for global\(s\) k, .* globals=\{'k': VALUE"):
        model.predict(mesh)
    with pytest.raises(UserError, match="takes points and cells"):
        model.predict(points=mesh.points)
    with pytest.raises(UserError, match="has no global 'q'"):
        model.predict(mesh, globals={"q": 1})
    with pytest.raises(UserError, match="not int"):
        model.predict(3)


def test_import_meshgnn_loads_no_torch():
    probe = "import sys, meshgnn; print('torch' in sys.modules, callable(meshgnn.load))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True).stdout.split()
    assert out == ["False", "True"]
