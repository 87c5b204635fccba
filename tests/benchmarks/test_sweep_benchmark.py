"""benchmarks/sweep.py: its budget arithmetic, and a --quick run through real train.py sweeps."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

from sweep import epochs_to_reach, within_budget  # noqa: E402


def trial(state, value, epochs):
    return {"state": state, "value": value, "epochs": epochs}


TRIALS = [trial("COMPLETE", 0.30, 8), trial("PRUNED", None, 3), trial("COMPLETE", 0.20, 8),
          trial("FAIL", None, 1), trial("COMPLETE", 0.10, 8)]


def test_the_budget_counts_the_epochs_trials_ran_in_order_and_no_overrunning_trial():
    # pruned and failed trials cost their own epochs; the last trial (8 more) would overrun 20
    assert within_budget(TRIALS, budget=20) == {"best": 0.20, "epochs": 20, "trials": 4}
    assert within_budget(TRIALS, budget=10) == {"best": 0.30, "epochs": 8, "trials": 1}
    assert within_budget(TRIALS, budget=7) == {"best": None, "epochs": 0, "trials": 0}


def test_epochs_to_reach_a_target_stop_at_the_first_completed_trial_that_reaches_it():
    assert epochs_to_reach(TRIALS, 0.25) == 19
    assert epochs_to_reach(TRIALS, 0.05) is None


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    work = tmp_path_factory.mktemp("sweep_benchmark")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sweep.py"), "--quick", "--work", str(work),
                           "--out", str(work / "sweep.json")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout, json.loads((work / "sweep.json").read_text())


@pytest.mark.slow
def test_quick_run_compares_grid_and_tpe_by_the_epochs_their_trials_ran(quick):
    stdout, results = quick
    search = results["search"]
    assert search["grid_points"] == 2 and [t["state"] for t in search["grid_trials"]] == ["COMPLETE"] * 2
    assert search["grid_epochs"] == 4  # 2 trials x 2 epochs, read from the study
    (seed,) = search["seeds"]
    assert len(seed["trials"]) == 2 and seed["all_trials_epochs"] == sum(t["epochs"] for t in seed["trials"])
    assert seed["at_budget"]["epochs"] <= search["budget_epochs"]
    assert "grid (2 points)" in stdout and "TPE+median seed 0" in stdout


@pytest.mark.slow
def test_quick_run_times_the_same_sweep_at_each_parallel_level(quick):
    stdout, results = quick
    levels = results["parallel"]["levels"]
    assert [lv["n_jobs"] for lv in levels] == [1, 2] and all(lv["trials"] == 2 for lv in levels)
    assert levels[0]["speedup"] == 1.0 and levels[1]["wall_s"] > 0
    assert "2 trials, n_jobs=2" in stdout
