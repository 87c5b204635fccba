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


def sweep_dirs(tmp_path):
    return sorted(p for p in (tmp_path / "multirun").glob("*/*") if p.is_dir())


def test_optuna_sweep_records_trials_in_sqlite(tmp_path, data_cache, capsys, monkeypatch):
    proc = run_train(["-m", "hparams_search=optuna", *TINY, f"paths.data_dir={data_cache}",
                      "hydra.sweeper.n_trials=3"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = proc.stdout + proc.stderr  # the storage's setup is quiet, the sweep's own progress is not
    assert "alembic" not in console and "sweep progress: 3/3 trials done" in console, console[:2000]
    trials = study(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert {t.params["model.hidden_dim"] for t in trials} <= {8, 16}
    assert all(3e-4 <= t.params["optim.lr"] <= 1e-3 for t in trials)
    (sweep,) = sweep_dirs(tmp_path)
    for trial in trials:
        run_dir = sweep / str(trial.number)
        assert trial.user_attrs["run_dir"] == str(run_dir)
        assert (run_dir / "results.json").is_file() and (run_dir / "checkpoints" / "best.ckpt").is_file()
        # the value returned by train.py is the best val/loss/total of the trial
        epochs = [yaml.safe_load(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert trial.value == pytest.approx(min(e["val/loss/total"] for e in epochs))
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(min(t.value for t in trials))
    assert results["trials"] == {"COMPLETE": 3, "PRUNED": 0, "FAIL": 0}

    # the two best trials (whatever their widths) make an ensemble, tested on the same split
    from meshgnn.cli import main as meshgnn

    monkeypatch.chdir(tmp_path)
    meshgnn(["ensemble", "--sweep", str(sweep), "--top-k", "2", "--data-dir", str(data_cache)])
    printed = capsys.readouterr().out
    best = sorted(trials, key=lambda t: t.value)[:2]
    assert f"ensemble of 2: {', '.join(f'{sweep.relative_to(tmp_path)}/{t.number}/checkpoints/best.ckpt' for t in best)}" in printed
    assert printed.splitlines()[-1].startswith("ensemble ")  # its row closes the test table


def test_relaunch_after_a_kill_continues_to_n_trials_in_total(tmp_path, data_cache):
    args = ["-m", "hparams_search=optuna", *TINY, f"paths.data_dir={data_cache}", "hydra.sweeper.n_trials=4",
            "trainer.epochs=3", "hydra.sweeper.pruner.name=none", "hydra.sweeper.heartbeat_interval=1",
            "hydra.sweeper.grace_period=2", f"hydra.sweep.dir={tmp_path / 'multirun' / 'fixed'}"]
    proc = start_train(args, tmp_path)
    deadline = time.time() + 120
    while not (tmp_path / "multirun" / "fixed" / "1" / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.communicate()
    first = (tmp_path / "multirun" / "fixed" / "0" / "results.json").read_text()

    proc = run_train(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = study(tmp_path).trials
    assert len(trials) == 4  # in total, not 4 more
    # the killed launch's trial went stale (no heartbeat for the grace period): FAIL, its slot counted
    assert trials[1].state == TrialState.FAIL and trials[1].user_attrs["failure"].startswith("stale")
    assert [t.state for t in trials[2:]] == [TrialState.COMPLETE] * 2
    assert (tmp_path / "multirun" / "fixed" / "0" / "results.json").read_text() == first  # not overwritten
    assert all((tmp_path / "multirun" / "fixed" / str(n) / "results.json").is_file() for n in (0, 2, 3))


def test_failing_trials_are_recorded_and_the_sweep_goes_on(tmp_path, data_cache):
    proc = run_train(["-m", "hparams_search=optuna", *TINY, f"paths.data_dir={data_cache}",
                      "hydra.sweeper.n_trials=4", "objective=choice(val/loss/total,val/temprature/rel_l2)",
                      "optim.lr=choice(1e-3,1e9)", "trainer.grad_clip=0", "hydra.sweeper.pruner.name=none"],
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = study(tmp_path).trials
    assert len(trials) == 4
    for trial in trials:
        # A value every launch check passes, refused inside the trial (the data names the metrics);
        # a bad value the launch can see, e.g. model.aggregation=choice(sum,median), refuses the sweep.
        if trial.params["objective"] == "val/temprature/rel_l2":
            assert trial.state == TrialState.FAIL and "objective=" in trial.user_attrs["failure"]
        elif trial.params["optim.lr"] > 1:
            assert trial.state == TrialState.FAIL and "nan" in trial.user_attrs["failure"]
        else:
            assert trial.state == TrialState.COMPLETE
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed, "the seeded sampler must propose at least one bad combination"
    log = proc.stdout + proc.stderr
    for trial in failed:
        assert f"failed trial {trial.number}:" in log and f"{trial.user_attrs['run_dir']}/train.log" in log


def test_median_pruner_stops_lagging_trials(tmp_path, data_cache):
    proc = run_train(["-m", "hparams_search=optuna", *TINY, f"paths.data_dir={data_cache}",
                      "hydra.sweeper.n_trials=6", "trainer.epochs=4", "optim.lr=choice(1e-6,3e-3)",
                      "optim.warmup_epochs=0", "hydra.sweeper.pruner.n_startup_trials=1",
                      "hydra.sweeper.pruner.n_warmup_steps=0"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = study(tmp_path).trials
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
