"""Several `train.py -m` workers on one SQLite study (real processes), and how studies are named.

A killed worker's trial going stale is tested end to end by test_sweeper.py's relaunch-after-kill
test (one kill test for the suite's time budget); what stale trials count, here on a real SQLite
study whose dead trial is made by hand."""

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
from meshgnn.sweeps.workers import (STALE, beyond_budget, counts, derived_study_name, duplicate_grid_point, fail_stale,
                                    keep_rerun_grid_point, open_storage, take_rerun)

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


def a_dead_workers_trial(study, params):
    """A RUNNING trial with `params` whose last heartbeat is an hour old (its worker was killed)."""
    trial = study.ask()
    for name, distribution in params.items():
        trial._suggest(name, distribution)
    study._storage.record_heartbeat(trial._trial_id)
    engine = study._storage._backend.engine
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-1 hour') "
                                   f"WHERE trial_id = {trial._trial_id}")
    return trial


def test_a_stale_trial_is_not_counted_and_its_point_runs_again_once(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(storage=storage)
    space = {"model.hidden_dim": CategoricalDistribution((8, 16)), "optim.lr": UniformDistribution(1e-4, 1e-3)}
    failed = study.ask()  # a trial that fails by itself (exception, NaN) still counts
    study.tell(failed, state=TrialState.FAIL)
    dead = a_dead_workers_trial(study, space)
    assert counts(study) == (1, 1)
    fail_stale(study)
    fail_stale(study)  # a second look (another worker's) neither fails it again nor queues it twice
    trials = study.trials
    assert trials[1].state == TrialState.FAIL and trials[1].user_attrs["failure"] == STALE
    # the stale trial does not use up the budget; its seat is its queued rerun's
    assert counts(study) == (1, 1)
    (rerun,) = trials[2:]
    assert (rerun.state, rerun.system_attrs["rerun_of"], rerun.params) == (TrialState.WAITING, dead.number, dead.params)
    again = take_rerun(study)  # a worker takes it, once
    assert again.number == rerun.number and {n: again._suggest(n, d) for n, d in space.items()} == dead.params
    assert take_rerun(study) is None and counts(study) == (1, 1)
    study.tell(again, 1.0)
    assert counts(study) == (2, 0)


def test_a_stale_grid_point_runs_again_exactly_once(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_interval=1, grace_period=2)
    grid = {"model.hidden_dim": [8, 16, 32]}
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.GridSampler(grid))
    space = {"model.hidden_dim": CategoricalDistribution((8, 16, 32))}
    dead = a_dead_workers_trial(study, space)
    fail_stale(study)
    run = []
    while counts(study)[0] < 3:  # the sweeper's loop: ask until the grid's 3 points are counted
        trial = take_rerun(study) or study.ask()
        keep_rerun_grid_point(study, trial)
        assert duplicate_grid_point(study, trial) is None
        trial._suggest("model.hidden_dim", space["model.hidden_dim"])
        run.append((trial.number, trial.params["model.hidden_dim"]))
        try:
            study.tell(trial, 1.0)
        except RuntimeError:  # the grid sampler's Study.stop outside optimize, once the grid is done
            pass
    assert run[0] == (dead.number + 1, dead.params["model.hidden_dim"])  # the dead trial's point first
    assert len(study.trials) == 4  # the dead trial and one trial per point: none asked beyond the grid
    assert sorted(value for _, value in run) == [8, 16, 32]  # then the others: every point once


def test_two_workers_that_ask_the_last_trial_at_once_run_one(tmp_path):
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", 1, 2))
    study.tell(study.ask(), 1.0)
    first, second = study.ask(), study.ask()  # both saw one of n_trials=2 free
    assert not beyond_budget(study, first, n_trials=2) and beyond_budget(study, second, n_trials=2)
    # the same when the last seat is a stale trial's rerun: one worker takes it, the other's new trial is too many
    study.tell(first, 1.0)
    second.set_user_attr("beyond_budget", True)  # as the sweeper records it: FAIL, not counted
    study.tell(second, state=TrialState.FAIL)
    dead = a_dead_workers_trial(study, {})
    fail_stale(study)
    rerun, new = take_rerun(study), study.ask()
    assert rerun.system_attrs["rerun_of"] == dead.number
    assert not beyond_budget(study, rerun, n_trials=3) and beyond_budget(study, new, n_trials=3)


def test_a_trial_another_worker_closed_while_it_ran_stops_and_keeps_that_record(tmp_path, caplog):
    # This worker was suspended past the grace period: another one recorded its trial FAIL
    # "stale". Its next epoch report stops the trial, and its result does not crash the worker.
    from hydra.core.utils import JobReturn, JobStatus

    from meshgnn.sweeps.pruning import PruningReporter
    from meshgnn.sweeps.sweeper import PruningOptunaSweeper

    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", 1, 2))
    trial = study.ask()
    study._storage.set_trial_user_attr(trial._trial_id, "failure", STALE)
    study._storage.set_trial_state(trial._trial_id, TrialState.FAIL)
    with pytest.raises(optuna.TrialPruned, match="closed by another worker"):
        PruningReporter(trial, "val/loss/total", last_epoch=5)(1, {"val/loss/total": 0.5})
    done = JobReturn()
    done.status, done.return_value = JobStatus.COMPLETED, 0.25
    PruningOptunaSweeper._record(study, trial, done)
    (frozen,) = study.get_trials()
    assert frozen.state == TrialState.FAIL and frozen.user_attrs["failure"] == STALE
    assert "closed by another worker" in caplog.text and "dropped" in caplog.text


def _open_at_once(url, barrier, results):
    barrier.wait()
    try:
        open_storage(url, heartbeat_interval=1, grace_period=3)
        results.put("ok")
    except Exception as exc:  # what a worker's first launch would have died of
        results.put(f"{type(exc).__name__}: {exc}".splitlines()[0])


def test_workers_opening_a_new_sqlite_database_at_once_all_get_it(tmp_path):
    # Without the schema lock 8 of 20 such openings failed ("table ... already exists").
    import multiprocessing

    context = multiprocessing.get_context("fork")
    url, barrier, results = f"sqlite:///{tmp_path / 'optuna.db'}", context.Barrier(4), context.Queue()
    workers = [context.Process(target=_open_at_once, args=(url, barrier, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join()
    assert outcomes == ["ok"] * 4


@pytest.mark.parametrize("url, reason", [("postgresql://meshgnn:s3cret@127.0.0.1:1/optuna", "Connection refused"),
                                         ("sqlite:///{tmp}", "unable to open database file")])
def test_a_storage_that_cannot_be_opened_is_one_line_without_its_password(tmp_path, url, reason):
    if url.startswith("postgresql"):
        pytest.importorskip("psycopg2")
    with pytest.raises(UserError, match=f"cannot open the database \\(.*{reason}") as refused:
        open_storage(url.format(tmp=tmp_path), heartbeat_interval=1, grace_period=2)  # port 1: no server; a folder
    assert "s3cret" not in str(refused.value) and "\n" not in str(refused.value)
