"""Sweeps end to end: `train.py -m hparams_search=...` with a real SQLite Optuna study."""

import json
import time

import optuna
import pytest
import yaml
from hydra import compose, initialize_config_dir
from optuna.trial import TrialState

from conftest import CONF, run_train, start_train

pytestmark = pytest.mark.slow

# Small widths: the default search space (hidden 256/512) is sized for real hardware.
TINY = ["trainer=debug", "data.num_samples=20", "hydra.sweeper.sampler.seed=0", "model.hidden_dim=choice(8,16)"]


def study(tmp_path):
    """The one study of the sweeps under tmp_path (named by each sweep's sweep.json)."""
    (name,) = {json.loads(p.read_text())["study_name"] for p in (tmp_path / "multirun").glob("**/sweep.json")}
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'multirun' / 'optuna.db'}")


@pytest.fixture(scope="module")
def relaunched(tmp_path_factory, data_cache):
    """A 4-trial sweep killed (kill -9) during its trial 1, then relaunched with the same command
    to the end: (cwd, sweep dir, the relaunch's process, trial 0's results.json before it)."""
    cwd = tmp_path_factory.mktemp("relaunched")
    sweep = cwd / "multirun" / "fixed"
    args = ["-m", "hparams_search=optuna", *TINY, f"paths.data_dir={data_cache}", "hydra.sweeper.n_trials=4",
            "trainer.epochs=3", "hydra.sweeper.pruner.name=none", "hydra.sweeper.heartbeat_interval=1",
            "hydra.sweeper.grace_period=2", f"hydra.sweep.dir={sweep}"]
    proc = start_train(args, cwd)
    deadline = time.time() + 120
    while not (sweep / "1" / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.communicate()
    first = (sweep / "0" / "results.json").read_text()
    proc = run_train(args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd, sweep, proc, first


def test_optuna_sweep_records_trials_in_sqlite(relaunched, data_cache, capsys, monkeypatch):
    cwd, sweep, proc, _ = relaunched
    console = proc.stdout + proc.stderr  # the storage's setup is quiet, the sweep's own progress is not
    assert "alembic" not in console and "sweep progress: 4/4 trials done" in console, console[:2000]
    trials = [t for t in study(cwd).trials if t.state == TrialState.COMPLETE]
    assert len(trials) == 4
    assert {t.params["model.hidden_dim"] for t in trials} <= {8, 16}
    assert all(3e-4 <= t.params["optim.lr"] <= 1e-3 for t in trials)
    for trial in trials:
        run_dir = sweep / str(trial.number)
        assert trial.user_attrs["run_dir"] == str(run_dir)
        assert (run_dir / "results.json").is_file() and (run_dir / "checkpoints" / "best.ckpt").is_file()
        # the value returned by train.py is the best val/loss/total of the trial
        epochs = [yaml.safe_load(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert trial.value == pytest.approx(min(e["val/loss/total"] for e in epochs))
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(min(t.value for t in trials))
    assert results["trials"] == {"COMPLETE": 4, "PRUNED": 0, "FAIL": 1}  # the FAIL: the killed trial

    # the two best trials (whatever their widths) make an ensemble, tested on the same split
    from meshgnn.cli import main as meshgnn

    monkeypatch.chdir(cwd)
    meshgnn(["ensemble", "--sweep", str(sweep), "--top-k", "2", "--data-dir", str(data_cache)])
    printed = capsys.readouterr().out
    best = sorted(trials, key=lambda t: t.value)[:2]
    assert f"ensemble of 2: {', '.join(f'{sweep.relative_to(cwd)}/{t.number}/checkpoints/best.ckpt' for t in best)}" in printed
    assert printed.splitlines()[-1].startswith("ensemble ")  # its row closes the test table


def test_relaunch_after_a_kill_continues_to_n_trials_in_total(relaunched):
    cwd, sweep, _, first = relaunched
    trials = study(cwd).trials
    # the killed launch's trial went stale (no heartbeat for the grace period): FAIL, and not
    # counted: its point ran again (trial 2), so the study has 4 trials that ran to their end
    assert trials[1].state == TrialState.FAIL and trials[1].user_attrs["failure"].startswith("stale")
    assert (trials[2].system_attrs["rerun_of"], trials[2].params) == (1, trials[1].params)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL] + [TrialState.COMPLETE] * 3
    assert (sweep / "0" / "results.json").read_text() == first  # not overwritten
    assert all((sweep / str(n) / "results.json").is_file() for n in (0, 2, 3, 4))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, data_cache):
    """One sweep whose seeded parameters make trials of every kind: a typo in `objective`
    (refused inside the trial), a diverging lr (NaN), a good lr (COMPLETE) and a tiny lr that
    the median pruner stops (PRUNED): (cwd, the sweep's process)."""
    cwd = tmp_path_factory.mktemp("mixed")
    proc = run_train(["-m", "hparams_search=optuna", *TINY, f"paths.data_dir={data_cache}",
                      "hydra.sweeper.sampler.seed=32", "hydra.sweeper.n_trials=6", "trainer.epochs=4",
                      "objective=choice(val/loss/total,val/temprature/rel_l2)", "optim.lr=choice(1e-6,3e-3,1e9)",
                      "trainer.grad_clip=0", "optim.warmup_epochs=0", "hydra.sweeper.pruner.n_startup_trials=1",
                      "hydra.sweeper.pruner.n_warmup_steps=0"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd, proc


def test_failing_trials_are_recorded_and_the_sweep_goes_on(mixed):
    cwd, proc = mixed
    trials = study(cwd).trials
    assert len(trials) == 6  # failed trials count: they failed by themselves
    for trial in trials:
        # A value every launch check passes, refused inside the trial (the data names the metrics);
        # a bad value the launch can see, e.g. model.aggregation=choice(sum,median), refuses the sweep.
        if trial.params["objective"] == "val/temprature/rel_l2":
            assert trial.state == TrialState.FAIL and "objective=" in trial.user_attrs["failure"]
        elif trial.params["optim.lr"] > 1:
            assert trial.state == TrialState.FAIL and "nan" in trial.user_attrs["failure"]
        else:
            assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert {t.params["objective"] for t in failed} == {"val/loss/total", "val/temprature/rel_l2"}, \
        "the seeded sampler must propose both kinds of bad combination"
    log = proc.stdout + proc.stderr
    for trial in failed:
        assert f"failed trial {trial.number}:" in log and f"{trial.user_attrs['run_dir']}/train.log" in log


def test_median_pruner_stops_lagging_trials(mixed):
    cwd, _ = mixed
    trials = study(cwd).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert complete and pruned
    for trial in complete:  # every epoch was reported to the study
        assert list(trial.intermediate_values) == [1, 2, 3, 4]
    for trial in pruned:
        last = trial.user_attrs["epochs_run"]
        assert last < 4 and list(trial.intermediate_values) == list(range(1, last + 1))
        # stopped because it lagged: worse than the median of earlier completed trials at that epoch
        earlier = sorted(t.intermediate_values[last] for t in complete if t.number < trial.number)
        median = (earlier[(len(earlier) - 1) // 2] + earlier[len(earlier) // 2]) / 2
        assert trial.intermediate_values[last] > median


def test_grid_reproduces_the_old_36_point_grid(tmp_path, data_cache):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hparams_search=grid"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert cfg.hydra.sweeper.sampler._target_ == "optuna.samplers.GridSampler"
    assert dict(params) == {"model.hidden_dim": "choice(256, 512)", "data.fourier_features": "choice(16, 32)",
                            "optim.lr": "choice(3e-4, 5e-4, 1e-3)",
                            "loss.smoothness_weight": "choice(0.05, 0.10, 0.15)"}
    proc = run_train(["-m", "hparams_search=grid", "trainer=debug", "trainer.epochs=1", "data.num_samples=20",
                      f"paths.data_dir={data_cache}",
                      "model.hidden_dim=choice(8,16)", "data.fourier_features=choice(4)", "optim.lr=choice(1e-3)",
                      "loss.smoothness_weight=choice(0.05,0.1)"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = study(tmp_path).trials
    assert sorted((t.params["model.hidden_dim"], t.params["loss.smoothness_weight"]) for t in trials) == \
        [(8, 0.05), (8, 0.1), (16, 0.05), (16, 0.1)]
