"""Shared helpers: the repository root, composing configs, running train.py like a user."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

# One torch (OpenMP) thread per process unless the caller chose otherwise. Set before torch is
# imported, and inherited by every train.py / meshgnn subprocess a test starts: `make test` runs
# two pytest workers on a 2-core machine, each starting subprocesses, and torch's default of a
# thread per core then puts 4+ spinning OpenMP threads on 2 cores: measured here, 3 debug runs
# at once took 34 s each (22 s CPU) with 2 threads, 14 s (9 s CPU) with 1. Tests of thread
# choices set them explicitly (sweep slots, torchrun's env), which wins over this default.
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import pytest
from hydra import compose, initialize_config_dir

from meshgnn.config import register_configs
from meshgnn.data.features import FeatureSpec, ModelInputs, add_features, normalize, single_graph_store
from meshgnn.data.graph import sample_to_graph
from meshgnn.data.hierarchy import HierarchySpec
from meshgnn.data.normalizer import Normalizer
from meshgnn.data.sources import get_source

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

register_configs()

NOBODY = 65534  # the unprivileged user the permission tests run as


@functools.cache
def _nobody_problem() -> str | None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return "needs root and setpriv to run as another user"
    probe = subprocess.run([*_AS_NOBODY, sys.executable, "-c", "import meshgnn"], capture_output=True, text=True,
                           cwd="/", env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    if probe.returncode != 0:  # e.g. a checkout under a folder only root may enter (mktemp -d)
        return f"user {NOBODY} cannot import meshgnn from this checkout: {probe.stderr.strip()[-200:]}"
    return None


_AS_NOBODY = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")


def as_nobody() -> list[str]:
    """The command prefix that runs a command as user nobody (with PYTHONPATH=sys.path in its
    environment), or a skip saying why that user cannot run this checkout's meshgnn."""
    problem = _nobody_problem()
    if problem:
        pytest.skip(problem)
    return list(_AS_NOBODY)


def compose_config(overrides: list[str] | None = None):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides or [])


TARGETS = [("temperature", 1), ("heat_flux", 2)]  # heat2d's, in column order


def heat2d_graph(index: int, num_levels: int, mesh_size: float = 0.12):
    """One generated heat2d mesh as a model input, through the pipeline's own per-graph steps
    (the way a mesh file is loaded): features, coarse levels, normalisation with a prior.
    A plate with circular holes, so that a coarse `mesh_size` gives the tiny graphs tests need."""
    source = get_source("heat2d")
    plates = {**source.knob_values(), "families": ["plate"], "hole_shapes": ["circle"]}
    store, slices = single_graph_store(sample_to_graph(source.generate(index, 0, mesh_size, 2, plates), source.spec))
    hierarchy = HierarchySpec(num_levels, 2.0) if num_levels else None
    features = FeatureSpec(source=source.spec, fourier_features=4, fourier_scale=1.0, fourier_seed=0,
                           boundary_distance=True, baseline_input=True,
                           model_inputs=ModelInputs(broadcast_globals=False, residual=True, hierarchy=hierarchy))
    add_features(store, slices, features)
    normalizer = Normalizer.fit({"x": store.x, "edge_attr": store.edge_attr, "y": store.y}, std_floor=1e-6)
    normalize(store, slices, normalizer, residual=True)
    return store



def run_train(args: list[str], cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python train.py ARGS` in a subprocess, as a user would type it."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    """One dataset cache for the whole session, so tiny datasets are generated once."""
    return tmp_path_factory.mktemp("data_cache")


@pytest.fixture(scope="session")
def debug_run(tmp_path_factory, data_cache) -> tuple[Path, subprocess.CompletedProcess]:
    """One `python train.py trainer=debug trainer.image_every=1` run for every test that only
    reads a finished run."""
    cwd = tmp_path_factory.mktemp("debug_run")
    run_dir = cwd / "run"
    proc = run_train(["trainer=debug", "trainer.image_every=1", f"hydra.run.dir={run_dir}",
                      f"paths.data_dir={data_cache}"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc


def start_train(args: list[str], cwd: Path) -> subprocess.Popen:
    """`python train.py ARGS` in the background (for signals and kills)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def epochs_logged(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0
