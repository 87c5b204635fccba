"""`meshgnn sweep report` on real SQLite Optuna studies: ranking, files, plots, winner, errors."""

import csv
import json
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from meshgnn.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OBJECTIVE = "val/loss/total"

# The sweeper-like helpers below use enqueue_trial, experimental in Optuna 2.10.
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
optuna.logging.set_verbosity(optuna.logging.WARNING)


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`meshgnn ARGS` in a subprocess, as a user would type it."""
    return subprocess.run([sys.executable, "-m", "meshgnn.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def storage_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'multirun' / 'optuna.db'}"


def new_study(tmp_path: Path, direction: str = "minimize") -> optuna.Study:
    (tmp_path / "multirun").mkdir(exist_ok=True)
    return optuna.create_study(storage=storage_url(tmp_path), study_name="meshgnn_sweep", direction=direction)


def write_sweep_json(tmp_path: Path, sweep_dir: Path, direction: str = "minimize") -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / "sweep.json").write_text(json.dumps({
        "storage": storage_url(tmp_path), "study_name": "meshgnn_sweep", "objective": OBJECTIVE,
        "direction": direction}))


def ask(study: optuna.Study, run_dir: Path, hidden_dim: int, lr: float, activation: str,
        **user_attrs) -> optuna.Trial:
    """A trial with these exact params, as the sweeper would start it."""
    study.enqueue_trial({"model.hidden_dim": hidden_dim, "optim.lr": lr, "model.activation": activation})
    trial = study.ask()
    trial.suggest_int("model.hidden_dim", 32, 512)
    trial.suggest_float("optim.lr", 1e-4, 1e-1, log=True)
    trial.suggest_categorical("model.activation", ["relu", "gelu"])
    for key, value in {"run_dir": str(run_dir), **user_attrs}.items():
        trial.set_user_attr(key, value)
    return trial


def make_run_dir(run_dir: Path, overrides: list[str] | None = None, epochs: int = 0) -> Path:
    """A training run directory with the files the report reads."""
    run_dir.mkdir(parents=True)
    if overrides is not None:
        (run_dir / ".hydra").mkdir()
        (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    lines = [json.dumps({"epoch": e, OBJECTIVE: 1.0 / (e + 1)}) for e in range(epochs)]
    (run_dir / "metrics.jsonl").write_text("".join(f"{line}\n" for line in lines))
    return run_dir


BEST_OVERRIDES = ["trainer=debug", "hparams_search=optuna", "hydra.sweeper.n_trials=6",
                  "model.hidden_dim=256", "optim.lr=0.00041", "model.activation=gelu", "+tags=[a,b]"]


@pytest.fixture(scope="module")
def minimize_sweep(tmp_path_factory):
    """Six trials over two launches of one study; the report is run on the second launch's folder."""
    tmp_path = tmp_path_factory.mktemp("minimize")
    study = new_study(tmp_path)
    first, second = tmp_path / "multirun/2024-05-01/10-00-00", tmp_path / "multirun/2024-05-01/11-00-00"

    trial = ask(study, make_run_dir(first / "0", epochs=3), 64, 0.001, "relu")
    study.tell(trial, 0.5)
    best_dir = make_run_dir(first / "1", BEST_OVERRIDES, epochs=2)
    trial = ask(study, best_dir, 256, 0.00041, "gelu", epochs_run=4)
    study.tell(trial, 0.2)
    trial = ask(study, make_run_dir(first / "2", epochs=2), 32, 0.01, "relu")
    trial.report(0.9, 0)
    trial.report(0.7, 1)
    study.tell(trial, state=TrialState.PRUNED)
    failed_dir = make_run_dir(second / "3")
    trial = ask(study, failed_dir, 512, 0.05, "gelu", failure="loss became NaN at epoch 2")
    study.tell(trial, state=TrialState.FAIL)
    trial = ask(study, second / "4", 128, 0.002, "relu")  # its run directory was never created
    study.tell(trial, 0.3)
    ask(study, second / "5", 96, 0.003, "gelu")  # still running
    write_sweep_json(tmp_path, second)

    result = run_cli(["sweep", "report", str(second)], cwd=tmp_path)
    return {"result": result, "sweep_dir": second, "failed_dir": failed_dir}


def table_trials(stdout: str) -> list[int]:
    """The trial column of the printed table, top to bottom."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:3] == ["rank", "trial", "state"])
    rows = []
    for line in lines[start + 1:]:
        if not line.strip() or line.startswith("("):
            break
        rows.append(int(line.split()[1]))
    return rows


def test_table_ranks_complete_then_pruned_then_the_rest(minimize_sweep):
    result = minimize_sweep["result"]
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert table_trials(result.stdout) == [1, 4, 0, 2, 3, 5]
    assert "6 trials (3 COMPLETE, 1 PRUNED, 1 FAIL, 1 RUNNING)" in result.stdout
    assert "(0.7)" in result.stdout


def test_csv_and_json_hold_the_same_rows(minimize_sweep):
    sweep_dir = minimize_sweep["sweep_dir"]
    with (sweep_dir / "report.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["trial"]) for r in rows] == [1, 4, 0, 2, 3, 5]
    assert [r["rank"] for r in rows] == ["1", "2", "3", "", "", ""]
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3 + ["PRUNED", "FAIL", "RUNNING"]
    assert [r["objective"] for r in rows][:4] == ["0.2", "0.3", "0.5", ""]
    assert [int(r["epochs"]) for r in rows] == [4, 0, 3, 2, 0, 0]
    assert rows[0]["optim.lr"] == "0.00041" and rows[0]["model.activation"] == "gelu"
    assert rows[4]["failure"] == "loss became NaN at epoch 2"

    report = json.loads((sweep_dir / "report.json").read_text())
    assert report["study_name"] == "meshgnn_sweep" and report["objective"] == OBJECTIVE
    assert report["direction"] == "minimize"
    assert report["counts"] == {"COMPLETE": 3, "PRUNED": 1, "FAIL": 1, "RUNNING": 1, "WAITING": 0}
    assert report["best_trial"]["trial"] == 1 and report["best_trial"]["objective"] == 0.2
    assert [t["trial"] for t in report["trials"]] == [1, 4, 0, 2, 3, 5]
    pruned = report["trials"][3]
    assert pruned["objective"] is None and pruned["last_intermediate"] == 0.7
    assert report["trials"][0]["params"] == {"model.hidden_dim": 256, "optim.lr": 0.00041,
                                             "model.activation": "gelu"}


def assert_drawn_png(path: Path) -> None:
    """A PNG that decodes to a picture with something drawn on it, not a blank canvas."""
    from matplotlib.image import imread

    assert path.read_bytes().startswith(PNG_SIGNATURE), path
    pixels = imread(path)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100, (path, pixels.shape)
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 20, path


def test_plots_are_drawn_pngs(minimize_sweep):
    names = ["objective_per_trial.png", "objective_vs_model.hidden_dim.png", "objective_vs_optim.lr.png",
             "objective_vs_model.activation.png"]
    for name in names:
        assert_drawn_png(minimize_sweep["sweep_dir"] / name)
    assert "ExperimentalWarning" not in minimize_sweep["result"].stderr


def test_importance_plot_or_one_line_saying_why(minimize_sweep):
    stdout, path = minimize_sweep["result"].stdout, minimize_sweep["sweep_dir"] / "param_importances.png"
    if find_spec("sklearn") is None:
        assert "param_importances.png skipped: needs scikit-learn" in stdout and not path.exists()
    else:
        assert_drawn_png(path)
        assert "param_importances.png" in next(line for line in stdout.splitlines() if line.startswith("wrote "))


def test_winner_is_the_best_trials_own_command(minimize_sweep):
    lines = [line.strip() for line in minimize_sweep["result"].stdout.splitlines()]
    expected = ("python train.py trainer=debug model.hidden_dim=256 optim.lr=0.00041 "
                "model.activation=gelu '+tags=[a,b]'")
    assert expected in lines


def test_failed_trials_are_listed_with_reason_and_log(minimize_sweep):
    stdout = minimize_sweep["result"].stdout
    assert "trial 3: loss became NaN at epoch 2" in stdout
    assert f"log: {minimize_sweep['failed_dir'] / 'train.log'}" in stdout


def test_maximize_ranks_highest_first_and_rebuilds_the_command_from_params(tmp_path, capsys, monkeypatch):
    study = new_study(tmp_path, "maximize")
    sweep_dir = tmp_path / "multirun/2024-05-02/09-00-00"
    trial = ask(study, make_run_dir(sweep_dir / "0"), 64, 0.001, "relu")
    study.tell(trial, 0.6)
    # No overrides.yaml: the command comes from the sweep's own overrides and the params.
    command = ["trainer=debug", "hparams_search=optuna", "optim.lr=tag(log,interval(1e-4,1e-1))"]
    trial = ask(study, make_run_dir(sweep_dir / "1"), 128, 0.002, "gelu", command_overrides=command)
    study.tell(trial, 0.9)
    trial = ask(study, make_run_dir(sweep_dir / "2"), 32, 0.01, "relu")
    trial.report(0.95, 0)
    study.tell(trial, state=TrialState.PRUNED)
    write_sweep_json(tmp_path, sweep_dir, "maximize")
    monkeypatch.chdir(tmp_path)

    main(["sweep", "report", str(sweep_dir)])

    stdout = capsys.readouterr().out
    assert table_trials(stdout) == [1, 0, 2]
    lines = [line.strip() for line in stdout.splitlines()]
    assert "python train.py trainer=debug model.activation=gelu model.hidden_dim=128 optim.lr=0.002" in lines
    report = json.loads((sweep_dir / "report.json").read_text())
    assert report["direction"] == "maximize" and report["best_trial"]["trial"] == 1


def test_no_completed_trial_still_reports(tmp_path, capsys, monkeypatch):
    study = new_study(tmp_path)
    sweep_dir = tmp_path / "multirun/2024-05-03/09-00-00"
    trial = ask(study, sweep_dir / "0", 64, 0.001, "relu", failure="dataset missing")
    study.tell(trial, state=TrialState.FAIL)
    write_sweep_json(tmp_path, sweep_dir)
    monkeypatch.chdir(tmp_path)

    main(["sweep", "report", str(sweep_dir)])

    stdout = capsys.readouterr().out
    assert "no completed trial yet" in stdout and "trial 0: dataset missing" in stdout
    assert json.loads((sweep_dir / "report.json").read_text())["best_trial"] is None
    assert (sweep_dir / "objective_per_trial.png").read_bytes().startswith(PNG_SIGNATURE)
    assert stdout.splitlines()[-1] == "param_importances.png skipped: needs at least 2 completed trials, the study has 0"


@pytest.mark.parametrize("make_dir, needle", [(False, "does not exist"), (True, "no sweep.json")])
def test_user_errors_from_the_command_line(tmp_path, make_dir, needle):
    sweep_dir = tmp_path / "multirun/2024-05-04/09-00-00"
    if make_dir:
        sweep_dir.mkdir(parents=True)
    result = run_cli(["sweep", "report", str(sweep_dir)], cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert needle in result.stderr and str(sweep_dir) in result.stderr


@pytest.mark.parametrize("case, needle", [("study", "no study named 'other'"),
                                          ("storage", "does not exist"),
                                          ("empty", "has no trials yet")])
def test_user_errors_about_the_study(tmp_path, capsys, case, needle):
    new_study(tmp_path)
    sweep_dir = tmp_path / "multirun/2024-05-05/09-00-00"
    write_sweep_json(tmp_path, sweep_dir)
    extra = {"study": ["--study", "other"], "storage": ["--storage", f"sqlite:///{tmp_path / 'gone.db'}"],
             "empty": []}[case]

    with pytest.raises(SystemExit) as info:
        main(["sweep", "report", str(sweep_dir), *extra])

    assert info.value.code == 2
    stderr = capsys.readouterr().err
    assert len(stderr.splitlines()) == 1 and needle in stderr


def test_the_winner_command_leaves_out_the_resume_auto_a_cluster_launcher_added(tmp_path):
    # Each submitit trial runs with resume=auto (its requeue resumes it); a plain rerun must not.
    from types import SimpleNamespace

    from meshgnn.sweeps.report import winner_command
    from meshgnn.sweeps.study import TrialRow

    run_dir = tmp_path / "0"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("- model.hidden_dim=16\n- debug=default\n- resume=auto\n")

    def best_of(command_overrides):
        row = TrialRow(number=0, state="COMPLETE", value=1.0, last_intermediate=None, epochs=2,
                       params={"model.hidden_dim": 16}, run_dir=run_dir, failure=None,
                       command_overrides=command_overrides)
        return SimpleNamespace(best=row)

    assert winner_command(best_of(["debug=default"])) == "python train.py model.hidden_dim=16 debug=default"
    # the user's own resume=auto on the sweep command stays
    assert winner_command(best_of(["debug=default", "resume=auto"])).endswith("debug=default resume=auto")
