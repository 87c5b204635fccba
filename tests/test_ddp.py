"""DistributedDataParallel under torchrun (CPU, gloo), on one node and on two: one run
directory, the same training as one process with the global batch, and exact resume of a run
stopped mid-epoch.

Three launches serve the one-node checks (each launch pays ~8 s of imports per process):
  A  `python train.py data.batch_size=8`                       (1 process, 2 epochs)
  B  `torchrun --nproc_per_node=2 train.py data.batch_size=4 trainer.max_time=1e-9`
     from an empty folder with no hydra.run.dir: stops after its first step, saves last.ckpt
  C  `torchrun --nproc_per_node=2 train.py resume=<B's dir> trainer.max_time=0`
     continues mid-epoch 1 on both ranks and finishes epoch 2
B + C must equal A: the debug data (40 graphs: train 32, val 4, test 4) splits evenly over 2
ranks and the per-rank batch of 4, so each global batch of B/C holds exactly A's graphs.
Without CUDA the processes use gloo; the `gpu` test compares NCCL on 2 GPUs with 1 GPU.

Two nodes: the SLURM recipe docs/slurm_ddp.sbatch itself runs twice on a 2-node allocation
faked on this machine (stand-ins for srun and scontrol only: srun starts one real torchrun agent
per "node", as two separate processes, which meet at a c10d rendezvous on 127.0.0.1):
  D  stops after its first step (MAX_TIME=1e-9) and requeues itself;
  E  the requeued job (SLURM_RESTART_COUNT=1, MAX_TIME=0) resumes through resume=auto and finishes.
D + E must equal A as B + C do: 2 ranks of batch 4, one on each node.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, run_train
from meshgnn.data.sampler import EpochBatchSampler
from meshgnn.distributed import QUIET_RANK_OVERRIDES, different_directories, hydra_quote, rank_argv
from meshgnn.training.checkpoint import load_checkpoint
from meshgnn.training.field_errors import ErrorAccumulator

COMMON = ["trainer=debug", "trainer.epochs=2", "trainer.image_every=0"]
# Parameters after 8 Adam steps: DDP averages two half-batch gradients where one process
# takes the mean over the whole batch, so float32 rounding differs (seen: 1.2e-7 at most).
PARAM_TOL = {"rtol": 1e-4, "atol": 1e-6}
METRIC_REL = 1e-5  # metrics are sums over graphs: the ranks' partial sums add up (seen: ~2e-7)


def torchrun(args: list[str], cwd, timeout: float = 300) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node=2 --standalone train.py ARGS` with this interpreter's torch."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           str(ROOT / "train.py"), *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def single_run(tmp_path_factory, data_cache):
    cwd = tmp_path_factory.mktemp("single")
    proc = run_train([*COMMON, "data.batch_size=8", f"hydra.run.dir={cwd / 'run'}",
                      f"paths.data_dir={data_cache}"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd / "run"


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, data_cache):
    """B then C (module docstring); returns (cwd, run dir, B's process, C's process)."""
    cwd = tmp_path_factory.mktemp("ddp")
    stopped = torchrun([*COMMON, "data.batch_size=4", "trainer.max_time=1e-9",
                        f"paths.data_dir={data_cache}"], cwd)
    runs = sorted(cwd.glob("outputs/*/*"))
    assert len(runs) == 1, (runs, stopped.stderr[-3000:])
    resumed = torchrun([f"resume={runs[0]}", "trainer.max_time=0", f"paths.data_dir={data_cache}"], cwd)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return cwd, runs[0], stopped, resumed


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_ddp_stop_is_agreed_and_one_run_directory_is_made(ddp_run):
    cwd, run_dir, stopped, _ = ddp_run
    # Both ranks stopped after the same step (exit 3; torchrun itself then exits 1); rank 0
    # alone saved and said how to resume.
    assert stopped.returncode != 0 and re.search(r"exitcode\s*:\s*3", stopped.stderr), stopped.stderr[-3000:]
    assert stopped.stderr.count("stopped by max_time during epoch 1") == 1, stopped.stderr[-3000:]
    assert f"torchrun --nproc_per_node=2 train.py resume={run_dir}" in stopped.stderr
    # One run directory (the default outputs/<date>/<time>), also after the resume in place.
    assert sorted(cwd.glob("outputs/*/*")) == [run_dir]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "best.ckpt", "epoch_0001.ckpt", "epoch_0002.ckpt", "last.ckpt"]
    assert [row["epoch"] for row in _metrics(run_dir)] == [1, 2]
    assert len(list((run_dir / ".hydra" / "launches").iterdir())) == 2  # rank 0's snapshots only
    log = (run_dir / "train.log").read_text()
    assert log.count("data parallel: 2 processes, data.batch_size=4 per process (8 graphs per step)") == 2
    launches = json.loads((run_dir / "run.json").read_text())["launches"]
    assert len(launches) == 2  # one entry per launch, not per rank


@pytest.mark.slow
def test_ddp_trains_like_one_process_with_the_global_batch(single_run, ddp_run):
    _, run_dir, _, _ = ddp_run
    for name in ("epoch_0001.ckpt", "last.ckpt", "best.ckpt"):
        single = load_checkpoint(single_run / "checkpoints" / name)
        ddp = load_checkpoint(run_dir / "checkpoints" / name)
        assert single["epoch"] == ddp["epoch"] and single["global_step"] == ddp["global_step"], name
        for key, tensor in single["model"].items():
            torch.testing.assert_close(ddp["model"][key], tensor, **PARAM_TOL, msg=f"{name} {key}")
    assert len(load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["rng_per_rank"]) == 2
    for one, two in zip(_metrics(single_run), _metrics(run_dir), strict=True):
        for key, value in one.items():
            if key.startswith(("val/", "train/loss", "train/temperature", "train/heat_flux")):
                assert two[key] == pytest.approx(value, rel=METRIC_REL), key
    single_results = json.loads((single_run / "results.json").read_text())
    ddp_results = json.loads((run_dir / "results.json").read_text())
    assert ddp_results["best_epoch"] == single_results["best_epoch"]
    for key, value in single_results["model"].items():
        assert ddp_results["model"][key] == pytest.approx(value, rel=METRIC_REL), key


@pytest.mark.slow
@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_nccl_on_two_gpus_trains_like_one_gpu_with_the_global_batch(tmp_path, data_cache):
    runs = {"one": tmp_path / "one", "two": tmp_path / "two"}
    args = [*COMMON, "trainer.device=cuda", f"paths.data_dir={data_cache}"]
    proc = run_train([*args, "data.batch_size=8", f"hydra.run.dir={runs['one']}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = torchrun([*args, "data.batch_size=4", f"hydra.run.dir={runs['two']}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "device cuda:0" in (runs["two"] / "train.log").read_text()
    single = load_checkpoint(runs["one"] / "checkpoints" / "last.ckpt")
    ddp = load_checkpoint(runs["two"] / "checkpoints" / "last.ckpt")
    # GPU scatter sums are not bit-reproducible (seen on 2 H200s: 1.2e-6 at most).
    for key, tensor in single["model"].items():
        torch.testing.assert_close(ddp["model"][key], tensor, rtol=1e-4, atol=1e-5, msg=key)


# ------------------------------------------------------------------ two nodes, through the SLURM recipe
SBATCH = ROOT / "docs" / "slurm_ddp.sbatch"
JOB_ID = "4242"
# The two SLURM commands the recipe calls, for a 2-node allocation on this machine: srun starts
# its command once per node (on TEST_NODES_UP nodes where the others never come), each a
# process of its own with its own output files (srun's options are recorded, not acted on);
# scontrol expands the node list and records a requeue.
FAKE_SRUN = """#!/bin/bash
printf '%s\\n' "$@" > "$TEST_LOGS/srun.args"
while [[ $1 == -* ]]; do shift; done
pids=()
for ((node = 0; node < ${TEST_NODES_UP:-$SLURM_NNODES}; node++)); do
    SLURM_NODEID=$node SLURM_PROCID=$node "$@" > "$TEST_LOGS/node$node.out" 2> "$TEST_LOGS/node$node.err" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
"""
FAKE_SCONTROL = """#!/bin/bash
case "$1 $2" in
    "show hostnames") tr , '\\n' <<< "$3" ;;
    requeue*) echo "$2" >> "$TEST_LOGS/../requeued" ;;
    *) echo "scontrol stand-in: unexpected: $*" >&2; exit 1 ;;
esac
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fake_slurm(base: Path) -> None:
    """The stand-ins in `base`/bin, where `sbatch` puts them first on PATH."""
    (base / "bin").mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (base / "bin" / name).write_text(text)
        (base / "bin" / name).chmod(0o755)


def sbatch(args: list[str], cwd: Path, logs: Path, env: dict[str, str], timeout: float = 300):
    """`bash docs/slurm_ddp.sbatch ARGS` in `cwd` as SLURM runs a batch script on job JOB_ID's
    first node, with the stand-ins of `fake_slurm(logs.parent)`; each node's output lands in
    `logs`. A launch past `timeout` is killed with every process it started."""
    logs.mkdir(parents=True)
    path = f"{logs.parent / 'bin'}:{Path(sys.executable).parent}:{os.environ['PATH']}"
    full_env = {**os.environ, **env, "PATH": path, "TEST_LOGS": str(logs), "PYTHONUNBUFFERED": "1",
                "OMP_NUM_THREADS": "1", "SLURM_JOB_ID": JOB_ID, "SLURM_JOB_NAME": "meshgnn-ddp", "SLURM_NNODES": "2",
                "SLURM_JOB_NODELIST": "127.0.0.1,127.0.0.1", "SLURM_SUBMIT_DIR": str(cwd), "GPUS_PER_NODE": "1"}
    proc = subprocess.Popen(["bash", str(SBATCH), *args], cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def node_logs(logs: Path, suffix: str) -> str:
    return "".join((logs / f"node{node}.{suffix}").read_text() for node in (0, 1))


@pytest.fixture(scope="module")
def two_node_job(tmp_path_factory):
    """D then E (module docstring), from a fresh dataset cache; returns (job dir, run dir, port, D, E)."""
    base = tmp_path_factory.mktemp("two_nodes")
    fake_slurm(base)
    job = base / "job"
    job.mkdir()
    port = free_port()
    env = {"DATA_DIR": str(base / "data"), "RDZV_PORT": str(port)}
    stopped = sbatch([*COMMON, "data.batch_size=4"], job, base / "logs_d", {**env, "MAX_TIME": "1e-9"})
    assert stopped.returncode == 0, (stopped.stderr[-2000:], node_logs(base / "logs_d", "err")[-3000:])
    resumed = sbatch([*COMMON, "data.batch_size=4"], job, base / "logs_e",
                     {**env, "MAX_TIME": "0", "SLURM_RESTART_COUNT": "1"})
    assert resumed.returncode == 0, (resumed.stderr[-2000:], node_logs(base / "logs_e", "err")[-3000:])
    return job, job / "outputs" / "slurm" / f"meshgnn-ddp-{JOB_ID}", port, stopped, resumed


@pytest.mark.slow
def test_two_torchrun_agents_run_the_slurm_recipe_as_one_job_in_one_run_directory(two_node_job):
    job, run_dir, port, stopped, resumed = two_node_job
    base = job.parent
    # The recipe's command, as srun got it: one c10d rendezvous of 2 agents of 1 process each.
    assert (base / "logs_d" / "srun.args").read_text().splitlines() == [
        "--kill-on-bad-exit=1", "torchrun", "--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}",
        f"--rdzv_id={JOB_ID}", "--rdzv_conf=join_timeout=600", "-m", "meshgnn.train", "resume=auto",
        f"hydra.run.dir={run_dir}", f"paths.data_dir={base / 'data'}", "trainer.max_time=1e-9",
        *COMMON, "data.batch_size=4"]
    # D: the process on each node stopped (exit 3, which torchrun reports); rank 0's alone said
    # so, with the command to run on every node; the script requeued the job once, E did not.
    for node in (0, 1):
        assert re.search(r"exitcode\s*:\s*3", (base / "logs_d" / f"node{node}.err").read_text()), node
    stopped_err = node_logs(base / "logs_d", "err")
    assert stopped_err.count("stopped by max_time during epoch 1") == 1, stopped_err[-3000:]
    assert (f"torchrun --nnodes=2 --nproc_per_node=1 <the same --rdzv_* options, on every node> train.py "
            f"resume={run_dir}\n") in stopped_err
    assert f"requeueing job {JOB_ID}" in stopped.stdout
    assert f"run {run_dir} finished" in resumed.stdout
    assert (base / "requeued").read_text() == f"{JOB_ID}\n"
    # The dataset was generated once (by rank 0, the other rank waited), for both nodes.
    assert node_logs(base / "logs_d", "out").count("generating heat2d: 40/40") == 1
    # One run directory, and nothing of Hydra's or the run's anywhere else.
    assert sorted(p for p in job.rglob("*") if not p.is_relative_to(run_dir)) == [
        job / "outputs", job / "outputs" / "slurm"]
    assert sorted(job.rglob("train.log")) == [run_dir / "train.log"]
    assert sorted(job.rglob(".hydra")) == [run_dir / ".hydra"]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "best.ckpt", "epoch_0001.ckpt", "epoch_0002.ckpt", "last.ckpt"]
    assert [row["epoch"] for row in _metrics(run_dir)] == [1, 2]
    assert len(list((run_dir / ".hydra" / "launches").iterdir())) == 2
    log = (run_dir / "train.log").read_text()
    assert log.count("data parallel: 2 processes, data.batch_size=4 per process (8 graphs per step)") == 2
    assert [launch["lineage"]["kind"] for launch in json.loads((run_dir / "run.json").read_text())["launches"]] == [
        "fresh", "resume"]


@pytest.mark.slow
def test_two_nodes_train_like_one_process_with_the_global_batch(single_run, two_node_job):
    _, run_dir, _, _, _ = two_node_job
    for name in ("epoch_0001.ckpt", "last.ckpt", "best.ckpt"):
        single = load_checkpoint(single_run / "checkpoints" / name)
        nodes = load_checkpoint(run_dir / "checkpoints" / name)
        assert single["global_step"] == nodes["global_step"], name
        for key, tensor in single["model"].items():
            torch.testing.assert_close(nodes["model"][key], tensor, **PARAM_TOL, msg=f"{name} {key}")
    assert len(load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["rng_per_rank"]) == 2
    single_results = json.loads((single_run / "results.json").read_text())
    nodes_results = json.loads((run_dir / "results.json").read_text())
    assert nodes_results["best_epoch"] == single_results["best_epoch"]
    for key, value in single_results["model"].items():
        assert nodes_results["model"][key] == pytest.approx(value, rel=METRIC_REL), key


@pytest.mark.slow
def test_a_node_that_never_comes_ends_the_job_at_the_rendezvous_timeout_without_a_requeue(tmp_path):
    fake_slurm(tmp_path)
    job = tmp_path / "job"
    job.mkdir()
    proc = sbatch([*COMMON], job, tmp_path / "logs", {"TEST_NODES_UP": "1", "RDZV_TIMEOUT": "2",
                                                       "RDZV_PORT": str(free_port())}, timeout=120)
    assert proc.returncode == 1, proc.stderr
    agent_err = (tmp_path / "logs" / "node0.err").read_text()
    assert "torch.distributed.elastic.rendezvous.api.RendezvousTimeoutError" in agent_err, agent_err[-3000:]
    assert proc.stderr.startswith(f"meshgnn: run {job}/outputs/slurm/meshgnn-ddp-{JOB_ID} ended with status 1 and "
                                  "is not requeued (no new last.ckpt"), proc.stderr
    assert not (tmp_path / "requeued").exists()
    assert list(job.iterdir()) == []  # no training process started, so nothing was written


def test_slurm_recipe_is_valid_bash():
    proc = subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------ no launch needed
def test_ranks_agree_on_one_run_directory_and_only_rank_0_keeps_hydra_outputs():
    argv = ["train.py", "trainer=debug", "hydra.run.dir=runs/${now:%H}", "hydra/job_logging=stdout"]
    assert rank_argv(argv, "runs/12", 0) == ["train.py", "trainer=debug", "hydra/job_logging=stdout",
                                             "hydra.run.dir=runs/12"]
    assert rank_argv(argv, "runs/12", 1) == ["train.py", "trainer=debug", "hydra.run.dir=runs/12",
                                             *QUIET_RANK_OVERRIDES]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for path in ("outputs/2026-01-02/03-04-05", "/scratch/my runs/it's,a=b", "C:\\runs\\", "/tmp/~x"):
        assert parser.parse_override(f"hydra.run.dir={hydra_quote(path)}").value() == path


def test_training_shards_are_padded_to_equal_size_and_evaluation_shards_are_not():
    padded = [EpochBatchSampler(5, 2, False, 0, rank, 2, pad=True) for rank in (0, 1)]
    assert [list(s) for s in padded] == [[[0, 2], [4]], [[1, 3], [0]]]  # as DistributedSampler
    shuffled = [EpochBatchSampler(5, 2, True, 0, rank, 2, pad=True) for rank in (0, 1)]
    assert [len(s) for s in shuffled] == [2, 2]
    assert {i for s in shuffled for batch in s for i in batch} == set(range(5))
    plain = [EpochBatchSampler(5, 2, False, 0, rank, 2) for rank in (0, 1)]
    assert [list(s) for s in plain] == [[[0, 2], [4]], [[1, 3]]]


def test_error_accumulators_of_shards_combine_to_the_whole():
    values = torch.tensor([0.1, 0.5, 0.2, 0.9, 0.3])
    whole, parts = ErrorAccumulator(), [ErrorAccumulator(), ErrorAccumulator()]
    whole.add("t", {"rel_l2": values, "max_abs": values * 2})
    parts[0].add("t", {"rel_l2": values[::2], "max_abs": values[::2] * 2})
    parts[1].add("t", {"rel_l2": values[1::2], "max_abs": values[1::2] * 2})
    assert ErrorAccumulator.combine(parts).result(5) == pytest.approx(whole.result(5))


def test_processes_started_in_different_directories_are_refused_naming_both():
    assert different_directories([("node0", "/shared/proj"), ("node1", "/shared/proj")]) is None
    line = different_directories([("node0", "/shared/proj"), ("node0", "/shared/proj"), ("node1", "/home/me")])
    assert line.startswith("error: the torchrun processes started in different directories (rank 0 in "
                           "/shared/proj on node0, rank 2 in /home/me on node1)") and "\n" not in line
