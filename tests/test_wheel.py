"""The wheel built from pyproject.toml installs into a fresh venv and trains, sweeps and predicts
there, without the repository on sys.path.

The fresh venv takes its dependencies from the project's .venv through a .pth line naming that
site-packages folder: a plain path line adds the folder but runs none of the .pth files inside
it, so .venv's editable install of this checkout stays out, and the venv's own site-packages
(holding the wheel) comes first on sys.path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow

SOURCES = ("pyproject.toml", "setup.py", "README.md", "meshgnn", "hydra_plugins", "conf")
# Tiny and independent of conf/trainer/debug.yaml; shared by the run and the sweep (one dataset).
TINY = ["trainer.epochs=1", "trainer.image_every=0", "data.num_samples=10", "data.mesh_size=0.15",
        "data.max_holes=1", "model.hidden_dim=8"]


def _check(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built offline from a copy of the package's sources (the checkout stays clean)."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(path, source / name)
    _check(subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--no-index", "--quiet", str(source), "-w", str(base / "dist")],
                          capture_output=True, text=True))
    (built,) = (base / "dist").glob("meshgnn-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding only the wheel, its dependencies read from the project's .venv."""
    env = tmp_path_factory.mktemp("venv") / "env"
    _check(subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], capture_output=True, text=True))
    site = Path(sysconfig.get_path("purelib", vars={"base": str(env), "platbase": str(env)}))
    (site / "project_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _check(subprocess.run([sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "install",
                           "--no-deps", "--no-index", "--quiet", str(wheel)], capture_output=True, text=True))
    return env


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("work")


def run_in(venv: Path, cwd: Path, *command: str) -> subprocess.CompletedProcess:
    """A command of the venv's bin/, run from `cwd` with no PYTHONPATH (so no checkout)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    program = str(venv / "bin" / command[0])
    return subprocess.run([program, *command[1:]], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**env, "PYTHONUNBUFFERED": "1"})


def test_wheel_carries_conf_and_every_module_but_no_tests(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    conf = {f"meshgnn/conf/{p.relative_to(ROOT / 'conf').as_posix()}" for p in (ROOT / "conf").rglob("*.yaml")}
    modules = {p.relative_to(ROOT).as_posix() for d in ("meshgnn", "hydra_plugins") for p in (ROOT / d).rglob("*.py")}
    assert "meshgnn/conf/config.yaml" in conf
    assert conf <= names, sorted(conf - names)
    assert modules <= names, sorted(modules - names)
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/")) or "__pycache__" in n]


def test_installed_package_is_the_wheel_with_its_own_conf(venv, workdir):
    out = _check(run_in(venv, workdir, "python", "-c", "import meshgnn, meshgnn.conf_location as c; "
                        "print(meshgnn.__file__); print(c.conf_dir())"))
    package, conf = (Path(line) for line in out.split())
    assert package.is_relative_to(venv) and not package.is_relative_to(ROOT)
    assert conf == package.parent / "conf"
    # `python -m meshgnn.train` composes from that folder too
    hydra_cfg = _check(run_in(venv, workdir, "python", "-m", "meshgnn.train", "--cfg", "hydra"))
    assert f"path: {conf}" in hydra_cfg


def test_installed_wheel_trains_sweeps_and_predicts(venv, workdir):
    cache = f"paths.data_dir={workdir / 'data_cache'}"
    _check(run_in(venv, workdir, "meshgnn", "train", *TINY, cache))
    (run_dir,) = (workdir / "outputs").glob("*/*")
    assert (run_dir / "checkpoints" / "best.ckpt").is_file() and (run_dir / "results.json").is_file()

    _check(run_in(venv, workdir, "meshgnn", "train", "-m", "hparams_search=grid", *TINY[:-1], cache,
                  "model.hidden_dim=choice(8)", "data.fourier_features=choice(4)", "optim.lr=choice(1e-3)",
                  "loss.smoothness_weight=choice(0.05,0.1)"))
    (sweep,) = (workdir / "multirun").glob("*/*")
    assert all((sweep / str(n) / "results.json").is_file() for n in (0, 1))

    exported = workdir / "exported"
    _check(run_in(venv, workdir, "meshgnn", "data", "export", "heat2d", "--out", str(exported), "--num-samples", "2",
                  "--mesh-size", "0.15", "--max-holes", "1"))
    printed = _check(run_in(venv, workdir, "meshgnn", "predict", str(run_dir), str(exported), "--out", "predicted"))
    assert "wrote 2 VTU file(s)" in printed
    assert sorted(p.name for p in (workdir / "predicted").glob("*.vtu")) == ["sample_00000.vtu", "sample_00001.vtu"]
