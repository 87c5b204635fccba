"""Sweeps through hydra-submitit-launcher: the SLURM preset composes (no SLURM here), and a real
`hydra/launcher=submitit_local` sweep runs its trials as submitit jobs at once, one of which is
preempted (SIGUSR2, as SLURM signals it) and requeued, and resumes its own trial from its last
checkpoint (meshgnn.sweeps.launchers)."""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from optuna.trial import TrialState

from conftest import CONF, ROOT, run_train
from meshgnn.distributed import launch
from meshgnn.errors import UserError
from meshgnn.prelaunch import check_launch
from meshgnn.sweeps.launchers import SUBMITIT_LOCAL, SUBMITIT_SLURM, requeue_overrides, trials_in_flight
from meshgnn.sweeps.slots import parallel_slots, threads_for

SLURM_SWEEP = ["-m", "hparams_search=optuna", "hydra/launcher=slurm", "hydra.launcher.partition=gpu"]


def test_only_submitit_trials_of_unstaged_runs_get_resume_auto_and_a_command_line_resume_wins():
    def sweep(*overrides: str, launcher: str = "submitit_local"):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose("config", overrides=["hparams_search=optuna", f"hydra/launcher={launcher}", *overrides],
                           return_hydra_config=True)

    assert requeue_overrides(sweep("debug=default")) == ["resume=auto"]
    assert requeue_overrides(sweep(launcher="slurm")) == ["resume=auto"]
    assert requeue_overrides(sweep(launcher="joblib")) == []
    assert requeue_overrides(sweep("experiment=two_stage")) == []  # re-run in place, stages resume themselves
    assert requeue_overrides(sweep("resume=outputs/run")) == []


def test_slurm_trials_keep_the_gpus_slurm_gives_them_and_local_jobs_share_slots():
    assert parallel_slots(SUBMITIT_SLURM, sweeper_jobs=8, launcher_jobs=None, cores=2) == 1  # no slots
    assert trials_in_flight(SUBMITIT_SLURM, sweeper_jobs=8, slots=1) == 8  # yet n_jobs trials in flight
    assert parallel_slots(SUBMITIT_LOCAL, sweeper_jobs=3, launcher_jobs=None, cores=2) == 3  # all at once
    assert trials_in_flight(SUBMITIT_LOCAL, sweeper_jobs=3, slots=3) == 3


@pytest.mark.parametrize("argv,needle", [
    (["hydra/launcher=slurm", "hydra.launcher.partiton=gpu"],
     "hydra.launcher has no key 'partiton'; did you mean hydra.launcher.partition? e.g. hydra.launcher.partition=gpu "
     "(`python train.py --cfg hydra` prints every key)"),
    (["hydra/launcher=slurm", "hydra.launcher.array_parallelism=0"], "hydra.launcher.array_parallelism=0 must be >= 1"),
    (["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=0"], "hydra.launcher.timeout_min=0 must be >= 1"),
    (["hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2"],
     "hydra.launcher.tasks_per_node=2 must be in [1, 1] (one process per trial; more GPUs: gpus_per_node)"),
])
def test_launcher_keys_a_sweep_cannot_use_are_refused_by_the_launch_checks(argv, needle):
    with pytest.raises(UserError) as caught:
        check_launch(get_args_parser().parse_args(["-m", "hparams_search=optuna", *argv]), CONF, "train")
    assert needle in str(caught.value) and "\n" not in str(caught.value), caught.value


def test_printing_a_sweeps_config_with_m_is_one_line_saying_to_drop_m():
    with pytest.raises(UserError, match=r"^-m cannot go with --cfg/--info .*python train.py hparams_search=optuna "
                                        r"--cfg hydra$"):
        launch(["train.py", *SLURM_SWEEP, "--cfg", "hydra"], CONF)


@pytest.mark.slow
def test_slurm_preset_composes_and_without_slurm_the_sweep_is_refused_before_it_starts(tmp_path):
    # `-m` and --cfg cannot go together (Hydra); hparams_search=optuna makes it a sweep anyway.
    shown = run_train([*SLURM_SWEEP[1:], "--cfg", "hydra"], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert "_target_: hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher" in shown.stdout
    assert "partition: gpu" in shown.stdout and "gpus_per_node: 1" in shown.stdout
    assert "submitit_folder: ${hydra.sweep.dir}/.submitit/%j" in shown.stdout
    proc = run_train(SLURM_SWEEP, cwd=tmp_path, env={"PATH": os.path.dirname(sys.executable)})  # no srun
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        "error: hydra/launcher=slurm submits trials to SLURM, but this machine has no SLURM (no srun on PATH); "
        "run the sweep on the cluster's login node, or try it here with hydra/launcher=submitit_local"]
    assert list(tmp_path.iterdir()) == []  # no study, no sweep directory


def test_slurm_preset_becomes_the_sbatch_options_of_each_trial_job(tmp_path, monkeypatch):
    """The job script submitit writes from the composed preset, mapped as hydra-submitit-launcher's
    launch() maps it (submitit wants an srun on PATH: a stand-in; nothing is submitted)."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    (tmp_path / "srun").write_text("#!/bin/sh\n")
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    cfg = check_launch(get_args_parser().parse_args([*SLURM_SWEEP, "hydra.launcher.account=lab"]), CONF, "train")
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    executor = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="slurm",
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()
                                  if k not in ("_target_", "submitit_folder", "name")})
    script = executor._executor._make_submission_file_text("python -m submitit.core._submit x", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32GB", "#SBATCH --time=240", "#SBATCH --signal=USR2@120",
                 "#SBATCH --ntasks-per-node=1", "export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK"):
        assert line in script.splitlines(), script


def _wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended (exit {proc.returncode}) before {what}:\n{proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} within {timeout} s")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def preempted_sweep(tmp_path_factory, data_cache):
    """One 2-trial sweep through submitit's local executor (2 jobs at once, 2 made-up GPUs for
    the slots to share out). Once trial 0 has saved an epoch, its job gets SIGUSR2 (what SLURM
    sends before preemption or the time limit): submitit pickles the call again and requeues it.
    6 epochs: the signal must find trial 0 still training (it lands within a poll of 20 ms)."""
    cwd = tmp_path_factory.mktemp("submitit_sweep")
    sweep = cwd / "sweep"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), "-m", "hparams_search=optuna", "hydra/launcher=submitit_local",
         "hydra.launcher.gpus_per_node=2", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=2",
         "hydra.sweeper.sampler.seed=0", "trainer=debug", "trainer.epochs=6", "data.num_samples=20",
         "model.hidden_dim=8", f"paths.data_dir={data_cache}", f"hydra.sweep.dir={sweep}"],
        cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    trial0 = sweep / "0"
    _wait_for(lambda: (trial0 / "checkpoints" / "last.ckpt").is_file() and (trial0 / "slot.json").is_file(),
              proc, "trial 0 saved an epoch")
    first_run = json.loads((trial0 / "slot.json").read_text())
    if (trial0 / "results.json").exists():
        pytest.fail("trial 0 finished before it could be preempted; give it more trainer.epochs")
    os.kill(first_run["pid"], signal.SIGUSR2)
    signalled = time.time()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    storage = f"sqlite:///{cwd / 'multirun' / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    return {"cwd": cwd, "sweep": sweep, "study": study, "first_run": first_run, "signalled": signalled,
            "stdout": out, "stderr": err}


@pytest.mark.slow
def test_submitit_local_sweep_runs_one_job_per_trial_in_its_numbered_directory(preempted_sweep):
    sweep, study = preempted_sweep["sweep"], preempted_sweep["study"]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert [t.user_attrs["run_dir"] for t in study.trials] == [str(sweep / "0"), str(sweep / "1")]
    for trial in study.trials:
        run_dir = sweep / str(trial.number)
        assert "epoch 6/6" in (run_dir / "train.log").read_text()
        assert [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [
            1, 2, 3, 4, 5, 6]
        assert trial.value == pytest.approx(json.loads((run_dir / "results.json").read_text())["best/val/loss/total"])
    # submitit's own files (job pickles, each job's stdout/stderr) sit in the sweep directory
    logs = list(preempted_sweep["cwd"].rglob("*_log.err"))
    assert len(logs) == 2 and all(p.parent.parent == sweep / ".submitit" for p in logs)


@pytest.mark.slow
def test_submitit_local_trials_run_at_once_each_on_its_own_slot_gpu_and_cores(preempted_sweep):
    sweep = preempted_sweep["sweep"]
    first, second = preempted_sweep["first_run"], json.loads((sweep / "1" / "slot.json").read_text())
    assert {first["index"]: first["cuda_visible_devices"], second["index"]: second["cuda_visible_devices"]} == {
        0: "0", 1: "1"}
    # trial 0 was still running when it was signalled: trial 1 had started and had not ended before it did
    assert second["started"] < preempted_sweep["signalled"] and first["started"] < second["ended"]
    threads = threads_for(2, len(os.sched_getaffinity(0)))
    assert first["threads"] == second["threads"] == second["torch_threads"] == threads


@pytest.mark.slow
def test_a_preempted_trial_is_requeued_and_resumes_from_its_last_checkpoint(preempted_sweep):
    trial0, study = preempted_sweep["sweep"] / "0", preempted_sweep["study"]
    log = (trial0 / "train.log").read_text()
    assert log.count("fresh start") == 1
    resumed = [line for line in log.splitlines() if f"resume from {trial0}/checkpoints/last.ckpt (epoch " in line]
    assert len(resumed) == 1 and "(epoch 0)" not in resumed[0], log[-3000:]
    assert len(json.loads((trial0 / "run.json").read_text())["launches"]) == 2
    rerun = json.loads((trial0 / "slot.json").read_text())
    assert rerun["pid"] != preempted_sweep["first_run"]["pid"]  # a new process, the same trial directory
    # submitit's log of trial 0's job (stdout and stderr, appended to by the re-run): signalled, requeued
    job_logs = {p.parent: "".join(f.read_text() for f in p.parent.glob("*_log.*"))
                for p in (preempted_sweep["sweep"] / ".submitit").rglob("*_log.out")}
    (requeued,) = [text for text in job_logs.values() if "Requeued job" in text]
    assert "this job is preempted" in requeued and requeued.count("Starting with JobEnvironment") == 2
    # one trial, told once: no second trial for the re-run, the study still has exactly n_trials
    assert len(study.trials) == 2 and study.trials[0].state == TrialState.COMPLETE
