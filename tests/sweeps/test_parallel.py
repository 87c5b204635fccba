"""Parallel trials (hydra/launcher=joblib): slots, their GPU and thread shares (meshgnn.sweeps.slots)."""

import json
import os

import optuna
import pytest
from optuna.trial import TrialState

from conftest import run_train
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


@pytest.mark.slow
def test_joblib_sweep_runs_trials_at_once_each_with_its_slot(tmp_path, data_cache):
    # Two made-up GPU ids: each trial must see only its own (here no driver has them: CPU training).
    proc = run_train(["-m", "hparams_search=optuna", "hydra/launcher=joblib", "hydra.sweeper.n_jobs=2",
                      "hydra.sweeper.n_trials=2", "trainer=debug", "data.num_samples=20",
                      "hydra.sweeper.sampler.seed=0", "model.hidden_dim=choice(8,16)",
                      f"paths.data_dir={data_cache}"], cwd=tmp_path, env={"CUDA_VISIBLE_DEVICES": "3,5"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    storage = f"sqlite:///{tmp_path / 'multirun' / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)  # whatever the sweep named its study
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    run_dirs = [t.user_attrs["run_dir"] for t in study.trials]
    assert len(set(run_dirs)) == 2
    records = [json.loads((tmp_path / d / "slot.json").read_text()) for d in run_dirs]
    # distinct slots: the second trial started while the first held slot 0 (sequential trials share slot 0)
    assert sorted(r["index"] for r in records) == [0, 1] and len({r["pid"] for r in records}) == 2
    assert {r["index"]: r["cuda_visible_devices"] for r in records} == {0: "3", 1: "5"}
    a, b = records
    assert a["started"] < b["ended"] and b["started"] < a["ended"]  # they ran at the same time
    threads = threads_for(2, len(os.sched_getaffinity(0)))  # 1 on a 2-core machine
    assert all(r["threads"] == r["torch_threads"] == threads for r in records)
