"""Several `train.py -m` workers on one SQLite study (real processes), and how studies are named.

A killed worker's trial going stale is tested by test_sweeper.py's relaunch-after-kill test
(one kill test for the suite's time budget)."""

import json
import os
import subprocess
import sys

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, UniformDistribution
from optuna.trial import TrialState

from conftest import ROOT
from meshgnn.errors import UserError
from meshgnn.sweeps.workers import derived_study_name, duplicate_grid_point, open_storage

# A tiny sweep every worker runs with the same command, so they derive the same study name.
WORKER = ["-m", "hparams_search=optuna", "trainer=debug", "data.num_samples=20", "model.hidden_dim=choice(8,16)",
          "hydra.sweeper.pruner.name=none", "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=2"]


def start_worker(args, cwd, name):
    """A worker in the background; its console goes to a file (a pipe nobody reads could block it)."""
    log = open(cwd / f"{name}.log", "w")
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def the_study(cwd):
    (settings,) = {p.read_text() for p in (cwd / "multirun").glob("**/sweep.json")}
    settings = json.loads(settings)
    return optuna.load_study(study_name=settings["study_name"], storage=f"sqlite:///{cwd / 'multirun' / 'optuna.db'}")


@pytest.mark.slow
def test_concurrent_workers_share_one_study_to_n_trials_in_total(tmp_path, data_cache):
    sweep = tmp_path / "multirun" / "shared"
    args = [*WORKER, f"paths.data_dir={data_cache}", "hydra.sweeper.n_trials=4", "trainer.epochs=1",
            f"hydra.sweep.dir={sweep}"]
    workers = [start_worker(args, tmp_path, f"w{i}") for i in range(2)]
    for i, worker in enumerate(workers):
        assert worker.wait(timeout=300) == 0, (tmp_path / f"w{i}.log").read_text()[-3000:]
    trials = the_study(tmp_path).trials
    assert len(trials) == 4  # in total across workers, not 4 each
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    # one directory per trial, named by its number: none shared, none reused
    assert sorted(int(p.name) for p in sweep.iterdir() if p.is_dir()) == [t.number for t in trials]
    assert all((sweep / str(t.number) / "results.json").is_file() for t in trials)
    logs = "".join((tmp_path / f"w{i}.log").read_text() for i in range(2))
    assert "database is locked" not in logs and "interrupted" not in logs


def test_a_new_search_space_gets_its_own_study_name():
    space = {"model.hidden_dim": CategoricalDistribution((8, 16)), "optim.lr": UniformDistribution(1e-4, 1e-3)}
    name = derived_study_name(space, {"trainer": "debug"}, "val/loss/total", "minimize", {"seed": 0})
    assert name == derived_study_name(dict(reversed(space.items())), {"trainer": "debug"}, "val/loss/total",
                                      "minimize", {"seed": 0})  # the same sweep relaunched: the same study
    others = [({**space, "model.hidden_dim": CategoricalDistribution((8, 32))}, {"trainer": "debug"}, "val/loss/total"),
              (space, {"trainer": "default"}, "val/loss/total"), (space, {"trainer": "debug"}, "val/temperature/rel_l2")]
    assert len({name, *(derived_study_name(s, f, o, "minimize", {"seed": 0}) for s, f, o in others)}) == 4


def test_a_grace_period_not_longer_than_the_heartbeat_interval_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"grace_period=2 must be larger than .*heartbeat_interval=2"):
        open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_interval=2, grace_period=2)
    assert open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_interval=1, grace_period=2).grace_period == 2


def test_a_grid_point_two_workers_took_at_once_belongs_to_the_earlier_trial(tmp_path):
    grid = {"model.hidden_dim": [8, 16]}
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}", sampler=optuna.samplers.GridSampler(grid))
    first, second = study.ask(), study.ask()  # two workers' asks: the sampler gave each a point
    assert first.system_attrs["grid_id"] != second.system_attrs["grid_id"]
    assert duplicate_grid_point(study, first) is None and duplicate_grid_point(study, second) is None
    # asked at the same moment, both got one point (what the sampler's random choice allows)
    study._storage.set_trial_system_attr(second._trial_id, "grid_id", first.system_attrs["grid_id"])
    assert duplicate_grid_point(study, second) == first.number
    assert duplicate_grid_point(study, first) is None  # the earlier trial keeps it


@pytest.mark.slow
def test_a_search_space_that_does_not_fit_the_named_study_is_refused_in_one_line(tmp_path, data_cache):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="mine", storage=storage)
    trial = study.ask({"model.hidden_dim": CategoricalDistribution((8, 16))})
    study.tell(trial, 1.0)
    sweep = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", "hparams_search=optuna", "trainer=debug",
                           "model.hidden_dim=choice(8,32)", f"paths.data_dir={data_cache}",
                           f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=mine",
                           f"hydra.sweep.dir={sweep}"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert "model.hidden_dim" in line and "(8, 32)" in line and "(8, 16)" in line and "Traceback" not in proc.stderr
    assert [t.state for t in optuna.load_study(study_name="mine", storage=storage).trials] == [TrialState.COMPLETE]
    assert not sweep.exists()
