"""Training runs for the benchmarks: `train.py` subprocesses (the real pipeline, as a user runs
it), several at once, with the datasets they share generated once beforehand.

Each job's run directory is `<out>/<job name>` and its log `<out>/<job name with / as _>.log`;
every job shares `<out>/data_cache`, so a dataset two jobs need is generated once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from meshgnn.config import register_configs  # noqa: E402
from meshgnn.data.dataset import generating_keys, load_datasets  # noqa: E402
from meshgnn.data.features import ModelInputs  # noqa: E402


@dataclass
class Job:
    """One train.py run; `after` names the job whose checkpoint it starts from."""

    name: str
    args: list[str]
    after: str | None = None
    seconds: float = 0.0
    results: dict = field(default_factory=dict)
    error: str = ""


def data_dir(out: Path) -> Path:
    return out / "data_cache"


def run_job(job: Job, out: Path, common: list[str]) -> Job:
    """Run one job to its end; a failure is recorded in `job.error` (with its log), not raised,
    so one broken run does not lose the others' results."""
    run_dir = out / job.name
    log = out / f"{job.name.replace('/', '_')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    args = [*job.args, *common, f"hydra.run.dir={run_dir}", f"paths.data_dir={data_dir(out)}"]
    start = time.perf_counter()
    with log.open("w") as stream:
        proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT,
                              stdout=stream, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    job.seconds = time.perf_counter() - start
    results = run_dir / "results.json"
    if proc.returncode == 0 and results.is_file():
        job.results = json.loads(results.read_text())
    else:
        job.error = f"exit {proc.returncode}, see {log}"
    print(f"  {job.name}: {job.seconds:.0f} s {job.error}", flush=True)
    return job


def run_all(jobs: list[Job], out: Path, common: list[str], parallel: int) -> dict[str, Job]:
    """Run jobs `parallel` at a time; a job with `after` waits for that job's checkpoint."""
    done: dict[str, Job] = {}
    pending = list(jobs)
    with ThreadPoolExecutor(parallel) as pool:
        while pending:
            ready = [j for j in pending if j.after is None or j.after in done]
            pending = [j for j in pending if j not in ready]
            for job in pool.map(lambda j: run_job(j, out, common), ready):
                done[job.name] = job
    return done


def compose_args(args: list[str]) -> DictConfig:
    """The config train.py composes from these overrides (an `init_from=` left out: it names a
    checkpoint that may not exist yet and does not change the data)."""
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=[a for a in args if not a.startswith("init_from=")])


def pregenerate(jobs: list[Job], out: Path, common: list[str]) -> None:
    """Generate every dataset the jobs need once, up front, with all cores (instead of
    several parallel runs generating the same one). `common` are the overrides every job gets:
    they may change the data too."""
    seen = set()
    for job in jobs:
        cfg = compose_args([*job.args, *common])
        keys = json.dumps(generating_keys(cfg.data), sort_keys=True)
        if keys not in seen:
            seen.add(keys)
            load_datasets(cfg.data, data_dir(out), ModelInputs(broadcast_globals=True, residual=False, hierarchy=None))
