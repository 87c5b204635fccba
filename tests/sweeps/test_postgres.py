"""Sweep workers sharing one study on a real PostgreSQL server: the several-machines case.

The test starts its own server (pg_server.py; it skips, saying why, without Debian's postgresql
binaries or the psycopg2 driver). Each worker has its own sweep directory, as it would on its
own machine; the SQLite counterpart, workers sharing one directory, is test_workers.py's.
How stale trials are told from live ones is checked here on both databases.
"""

import contextlib
import time

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from meshgnn.sweeps.workers import fail_stale, open_storage
from pg_server import PostgresUnavailable, postgres_server
from test_workers import start_worker

pytestmark = pytest.mark.slow

# Heartbeat every second, stale after 3 s without: a killed worker's trial is found quickly.
TINY = ["-m", "hparams_search=optuna", "trainer=debug", "data.num_samples=20", "model.hidden_dim=choice(8,16)",
        "hydra.sweeper.pruner.name=none", "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3",
        "trainer.threads=1"]  # one core each: workers sharing a machine do not oversubscribe it
DONE = (TrialState.COMPLETE, TrialState.PRUNED)


@pytest.fixture(scope="module")
def pg_url():
    """One throwaway server for the module; each test uses its own study in it."""
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(postgres_server())
        except PostgresUnavailable as exc:
            pytest.skip(f"no PostgreSQL server for the several-machines worker tests: {exc}")
        yield url


def start_workers(tmp_path, n, args):
    """`n` workers launched at the same moment (they race to create the study), worker i
    sweeping into tmp_path/w<i>."""
    return [start_worker([*args, f"hydra.sweep.dir={tmp_path / f'w{i}'}"], tmp_path, f"w{i}") for i in range(n)]


def wait_ok(tmp_path, workers):
    for i, worker in workers:
        assert worker.wait(timeout=300) == 0, (tmp_path / f"w{i}.log").read_text()[-3000:]


def trial_dirs(tmp_path, n):
    """The numbers of every worker's trial directories (a number listed twice: two workers
    wrote one trial)."""
    return sorted(int(p.name) for i in range(n) for p in (tmp_path / f"w{i}").iterdir() if p.name.isdigit())


# The database's clock one second on, in each dialect.
ONE_SECOND_ON = {"sqlite": "datetime('now', '+1 second')", "postgresql": "now() + interval '1 second'"}


# Optuna 2.10's RDBStorage._get_stale_trial_ids reads (now - heartbeat).seconds, ~86399 for such a
# heartbeat; workers.stale_trial_ids reads total_seconds.
@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_heartbeat_newer_than_the_checkers_clock_is_not_stale(dialect, tmp_path, request):
    # Another worker's heartbeat lands between the checker's `SELECT now()` and its query of the
    # running trials (every heartbeat interval, per running trial): newer than the checker's now.
    url = request.getfixturevalue("pg_url") if dialect == "postgresql" else f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=open_storage(url, heartbeat_interval=10, grace_period=60))
    trial = study.ask()
    study._storage.record_heartbeat(trial._trial_id)
    sqlalchemy.create_engine(url).execute(f"UPDATE trial_heartbeats SET heartbeat = {ONE_SECOND_ON[dialect]}")
    fail_stale(study)
    assert study.trials[0].state == TrialState.RUNNING  # a heartbeat 0 s old, the grace period 60 s


def test_workers_on_postgres_share_one_study_to_n_trials_in_total(tmp_path, data_cache, pg_url):
    # two workers are the several-machines case already (each process costs ~8 s of imports)
    workers = start_workers(tmp_path, 2, [*TINY, f"paths.data_dir={data_cache}", "hydra.sweeper.n_trials=4",
                                          "trainer.epochs=1", f"hydra.sweeper.storage={pg_url}",
                                          "hydra.sweeper.study_name=shared"])
    wait_ok(tmp_path, enumerate(workers))  # none crashed on the create-study race
    trials = optuna.load_study(study_name="shared", storage=pg_url).trials
    assert len(trials) == 4  # in total across workers, not 4 each
    assert all(t.state in DONE for t in trials), [(t.number, t.state, t.user_attrs.get("failure")) for t in trials]
    assert trial_dirs(tmp_path, 2) == [t.number for t in trials]  # one directory per trial, in one worker's
    assert all(t.user_attrs["run_dir"].startswith(str(tmp_path / "w")) for t in trials)


def test_a_worker_killed_mid_trial_goes_stale_and_the_other_finishes_the_study(tmp_path, data_cache, pg_url):
    workers = start_workers(tmp_path, 2, [*TINY, f"paths.data_dir={data_cache}", "hydra.sweeper.n_trials=3",
                                          "trainer.epochs=2", f"hydra.sweeper.storage={pg_url}",
                                          "hydra.sweeper.study_name=killed"])
    deadline = time.time() + 180
    while not (running := list((tmp_path / "w0").glob("*/metrics.jsonl"))) and time.time() < deadline:
        time.sleep(0.05)
    assert running, (tmp_path / "w0.log").read_text()[-3000:]
    workers[0].kill()  # SIGKILL after its trial's first epoch: no chance to close the trial
    workers[0].wait()
    killed = int(running[0].parent.name)
    assert not (running[0].parent / "results.json").exists()  # it was killed mid-trial
    wait_ok(tmp_path, list(enumerate(workers))[1:])
    trials = optuna.load_study(study_name="killed", storage=pg_url).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [killed], [(t.number, t.state, t.user_attrs) for t in trials]
    assert failed[0].user_attrs["failure"].startswith("stale")
    # the survivor ran on to n_trials finished trials: the stale one is not counted, its point ran
    # again, and no survivor took its seat meanwhile (n_trials in total, not one more)
    done = [t for t in trials if t.state in DONE]
    assert len(done) == 3 and len(trials) == 4
    assert any(t.params == failed[0].params for t in done)
    assert trial_dirs(tmp_path, 2) == [t.number for t in trials]
