"""Parallel trials (hydra/launcher=joblib): slots, their GPU and thread shares (meshgnn.sweeps.slots)."""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from conftest import ROOT, run_train
from meshgnn.sweeps import slots
from meshgnn.sweeps.slots import parallel_slots, threads_for, visible_device_for

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def test_each_slot_sees_one_gpu_of_the_sweeps():
    assert [visible_device_for(i, ["0", "1", "2", "3"]) for i in range(4)] == ["0", "1", "2", "3"]
    # the sweep's own CUDA_VISIBLE_DEVICES ids, not positions
    assert [visible_device_for(i, ["3", "5"]) for i in range(2)] == ["3", "5"]
    # fewer GPUs than slots: shared round robin; no GPU: nothing to set
    assert [visible_device_for(i, ["0", "1"]) for i in range(4)] == ["0", "1", "0", "1"]
    assert visible_device_for(0, []) is None


def test_trials_split_the_cores_and_only_a_parallel_launcher_makes_slots():
    assert threads_for(2, cores=2) == 1 and threads_for(4, cores=2) == 1 and threads_for(4, cores=16) == 4
    assert parallel_slots(BASIC, sweeper_jobs=4, launcher_jobs=None, cores=16) == 1  # one trial at a time
    assert parallel_slots(JOBLIB, sweeper_jobs=4, launcher_jobs=-1, cores=16) == 4
    assert parallel_slots(JOBLIB, sweeper_jobs=4, launcher_jobs=2, cores=16) == 2
    assert parallel_slots(JOBLIB, sweeper_jobs=8, launcher_jobs=-1, cores=2) == 2


def test_joblibs_pool_holds_as_many_workers_as_trials_run_at_once_unless_set():
    pool = OmegaConf.create({"_target_": JOBLIB, "n_jobs": -1})
    slots.size_worker_pool(pool, sweeper_jobs=2, cores=16)
    assert pool.n_jobs == 2
    slots.size_worker_pool(pool, sweeper_jobs=8, cores=4)  # set now (2): kept, as a user's own value is
    assert pool.n_jobs == 2
    unset = OmegaConf.create({"_target_": JOBLIB, "n_jobs": -1})
    slots.size_worker_pool(unset, sweeper_jobs=8, cores=4)
    assert unset.n_jobs == 4
    basic = OmegaConf.create({"_target_": BASIC})
    slots.size_worker_pool(basic, sweeper_jobs=4, cores=16)
    assert "n_jobs" not in basic


def test_held_slots_are_distinct_and_a_gpu_bound_worker_keeps_its_slot(tmp_path, monkeypatch):
    first, lock0 = slots._take_lock(tmp_path, 3)
    second, lock1 = slots._take_lock(tmp_path, 3)
    assert (first, second) == (0, 1)
    lock0.close()  # slot 0 is free again; a worker whose CUDA was set up for slot 2 takes 2, not 0
    monkeypatch.setattr(slots, "_cuda_slot", 2)
    bound, lock2 = slots._take_lock(tmp_path, 3)
    assert bound == 2
    lock1.close()
    lock2.close()


# A parallel sweep through joblib, shared by the tests that read it: 3 trials on 2 lanes, whose
# parameters (seeded TPE startup draws, asked in trial order) make trial 1 slow (12 epochs)
# and trials 0 and 2 fast (1 epoch). Two made-up GPU ids: each trial must see only its own
# (no driver has them here: CPU training).
ASYNC = ["-m", "hparams_search=optuna", "hydra/launcher=joblib", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=3",
         "trainer=debug", "data.num_samples=20", "hydra.sweeper.sampler.seed=6", "model.hidden_dim=choice(8,16)",
         "trainer.epochs=choice(1,12)", "hydra.sweeper.pruner.name=none"]


def load_the_study(cwd):
    storage = f"sqlite:///{cwd / 'multirun' / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)  # whatever the sweep named its study
    return optuna.load_study(study_name=summary.study_name, storage=storage)


@pytest.fixture(scope="module")
def async_sweep(tmp_path_factory, data_cache):
    cwd = tmp_path_factory.mktemp("async_sweep")
    proc = run_train([*ASYNC, f"paths.data_dir={data_cache}"], cwd=cwd, env={"CUDA_VISIBLE_DEVICES": "3,5"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = load_the_study(cwd).trials
    records = [json.loads((cwd / t.user_attrs["run_dir"] / "slot.json").read_text()) for t in trials]
    return proc, trials, records


@pytest.mark.slow
def test_joblib_sweep_starts_the_next_trial_when_one_ends_not_when_the_batch_does(async_sweep):
    proc, trials, records = async_sweep
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert [t.params["trainer.epochs"] for t in trials] == [1, 12, 1]  # what seed 6 draws; the test needs it
    fast, slow, third = records
    # trial 2 started as soon as trial 0 ended, while trial 1 ran on (a batch of 2 would wait for it)
    assert fast["ended"] <= third["started"] < slow["ended"]
    # one directory per trial, named by its number
    assert [t.user_attrs["run_dir"].rsplit("/", 1)[1] for t in trials] == ["0", "1", "2"]
    assert len({t.user_attrs["run_dir"] for t in trials}) == 3
    # every lane's lines reach the console once: one progress line per trial, one summary
    console = proc.stdout + proc.stderr
    assert [console.count(f"sweep progress: {n}/3 trials done") for n in (1, 2, 3)] == [1, 1, 1], console[-3000:]
    assert console.count("sweep finished: 3 complete, 0 pruned, 0 failed") == 1
    assert console.count("Launching jobs, sweep output dir") == 3  # one one-job launch per trial


@pytest.mark.slow
def test_parallel_trials_hold_distinct_slots_each_with_its_gpu_and_threads(async_sweep):
    _, _, records = async_sweep
    fast, slow, third = records
    # trials running at the same time hold distinct slots, in distinct worker processes
    assert fast["index"] != slow["index"] and third["index"] != slow["index"]
    assert fast["pid"] != slow["pid"] and third["pid"] != slow["pid"]
    # joblib's pool has 2 workers, not one per core (size_worker_pool): trial 2 ran in trial 0's warm one
    assert third["pid"] == fast["pid"]
    assert {r["index"]: r["cuda_visible_devices"] for r in records} == {0: "3", 1: "5"}
    threads = threads_for(2, len(os.sched_getaffinity(0)))  # 1 on a 2-core machine
    assert all(r["threads"] == r["torch_threads"] == threads for r in records)


def ctrl_c_once_training(args, cwd, sweep, trials):
    """`train.py ARGS` sent Ctrl-C once `trials` trials of `sweep` train: SIGINT to its process
    group, as a terminal does (the sweep and its trials' processes). Its console; it must end
    with exit code 130 and no traceback."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 240
    while len(list(sweep.glob("*/metrics.jsonl"))) < trials and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    console, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in console, console[-3000:]
    return console


@pytest.mark.slow
def test_ctrl_c_on_a_parallel_sweep_fails_its_running_trials_in_one_line(tmp_path, data_cache):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    # another worker's running trial (alive: a fresh heartbeat, a long grace period) is left alone
    other = optuna.create_study(study_name="shared", storage=optuna.storages.RDBStorage(
        storage, heartbeat_interval=1, grace_period=600)).ask()
    sweep = tmp_path / "sweep"
    console = ctrl_c_once_training([*ASYNC[:4], "hydra.sweeper.n_trials=5", "trainer=debug", "data.num_samples=20",
                                    "model.hidden_dim=choice(8,16)", "trainer.epochs=1000",
                                    "hydra.sweeper.pruner.name=none", f"paths.data_dir={data_cache}",
                                    f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=shared",
                                    "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=600",
                                    f"hydra.sweep.dir={sweep}"], tmp_path, sweep, trials=2)
    # the sweep's own last line (its trials' workers may still print their stop notes after it)
    sweep_lines = [line for line in console.splitlines() if "[HYDRA]" in line]
    assert sweep_lines[-1].endswith(
        'sweep interrupted: 2 trials left FAIL "interrupted" (not counted, they are run again); '
        "relaunch the same command to continue"), console[-3000:]
    # a stopped trial points to the sweep's command, not to resuming its own directory
    assert "train.py resume=" not in console and "the sweep's own command again" in console, console[-3000:]
    trials = optuna.load_study(study_name="shared", storage=storage).trials
    assert trials[0].number == other.number and trials[0].state == TrialState.RUNNING
    mine = [t for t in trials[1:] if "rerun_of" not in t.system_attrs]
    assert [(t.state, t.user_attrs["failure"].split(":")[0]) for t in mine] == [(TrialState.FAIL, "interrupted")] * 2
    # each point is queued to run again when the sweep is relaunched
    reruns = [t for t in trials if "rerun_of" in t.system_attrs]
    assert [(t.state, t.system_attrs["rerun_of"], t.params) for t in reruns] == \
        [(TrialState.WAITING, t.number, t.params) for t in mine]
