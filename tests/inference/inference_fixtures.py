"""Fixtures of the inference tests: a package exported from the shared debug run, and mesh
files of that run's own data. Test modules import them (`from inference_fixtures import ...`):
a second conftest.py would shadow tests/conftest.py, which tests import as `conftest`."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from meshgnn.cli import main as meshgnn
from meshgnn.data.export import export_samples


@pytest.fixture(scope="module")
def package_dir(debug_run, tmp_path_factory) -> Path:
    """`meshgnn export RUN_DIR OUT_DIR` of the debug run (tests copy it before editing it)."""
    out = tmp_path_factory.mktemp("pkg") / "model"
    meshgnn(["export", str(debug_run[0]), str(out)])
    return out


@pytest.fixture(scope="module")
def files(package_dir, tmp_path_factory) -> Path:
    """Three files of the run's own data config (seed, mesh size) as `meshgnn data export` writes."""
    from meshgnn.inference.package import load_package

    cfg = OmegaConf.create(load_package(package_dir).data)
    folder = tmp_path_factory.mktemp("meshes")
    export_samples("heat2d", folder, 3, cfg.seed, cfg.mesh_size, cfg.max_holes, workers=1)
    return folder
