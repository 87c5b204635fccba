"""`meshgnn ckpt`: set-lr's printed command continues the run in place at the new rate, and
inspect diffs a resumed debug run against the run's own group choices (end to end)."""

import json
import shlex
import shutil

import pytest

from conftest import CONF, run_train
from meshgnn.ckpt_tools import composed_like, config_differences, continue_command, set_lr
from meshgnn.cli import main as meshgnn
from meshgnn.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

NEW_LR = 2e-4


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def adjusted_run(tmp_path_factory, data_cache):
    """A 2-epoch debug run at a constant rate, set-lr on its last.ckpt, then the command set-lr
    printed, run as a user would from the same folder: (run dir, printed line, that launch)."""
    cwd = tmp_path_factory.mktemp("set_lr")
    run_dir = cwd / "outputs" / "run"
    proc = run_train(["trainer=debug", "data.num_samples=20", "optim.schedule=constant",
                      f"hydra.run.dir={run_dir}", f"paths.data_dir={data_cache}"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = _set_lr_cli(run_dir / "checkpoints" / "last.ckpt")
    command = shlex.split(printed[printed.index("python train.py "):])
    resumed = run_train(command[2:] + [f"paths.data_dir={data_cache}"], cwd=cwd)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return run_dir, printed, resumed


def _set_lr_cli(checkpoint):
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        meshgnn(["ckpt", "set-lr", str(checkpoint), str(NEW_LR)])
    return out.getvalue().strip()


def test_set_lr_then_the_printed_command_continues_the_run_in_place(adjusted_run):
    run_dir, printed, _ = adjusted_run
    assert f"python train.py resume={run_dir} trainer.epochs=4" in printed  # finished: more epochs
    rows = metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]  # the same directory, the next epoch on
    assert [r["lr"] for r in rows] == pytest.approx([1e-3, 1e-3, NEW_LR, NEW_LR])
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["run"]  # no branch directory
    launches = json.loads((run_dir / "run.json").read_text())["launches"]
    assert [l["lineage"]["kind"] for l in launches] == ["fresh", "resume"]
    last = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 4 and last["optimizer"]["param_groups"][0]["lr"] == pytest.approx(NEW_LR)


def test_once_the_run_moved_on_resume_takes_last_ckpt_again(adjusted_run):
    """last_lr_adjusted.ckpt stays beside the run, at epoch 2: resuming now continues from epoch 4."""
    from meshgnn.resume import run_checkpoint

    run_dir = adjusted_run[0]
    assert (run_dir / "checkpoints" / "last_lr_adjusted.ckpt").is_file()
    assert run_checkpoint(run_dir) == run_dir / "checkpoints" / "last.ckpt"


def test_set_lr_on_an_older_checkpoint_says_it_branches(adjusted_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(adjusted_run[0], run_dir)
    source = run_dir / "checkpoints" / "epoch_0001.ckpt"
    line = continue_command(set_lr(source, NEW_LR), source)
    assert "new run directory" in line and line.endswith(f"python train.py resume={run_dir / 'checkpoints' / 'epoch_0001_lr_adjusted.ckpt'}")


def test_inspect_of_a_resumed_debug_run_diffs_against_its_own_choices(adjusted_run, capsys):
    run_dir = adjusted_run[0]
    meshgnn(["ckpt", "inspect", str(run_dir / "checkpoints" / "last.ckpt")])
    out = capsys.readouterr().out
    diff = out[out.index("config diff"):]
    # what debug sets (a narrow model, tiny data) is no difference: only this run's own overrides
    assert "model.hidden_dim" not in diff and "data.mesh_size" not in diff and "trainer.log_every_steps" not in diff
    assert "${" not in diff  # conf/'s interpolations (debug's max_epochs_per_stage) compared by value
    assert "optim.lr: 0.0002" in diff and "optim.schedule: constant" in diff and "trainer.epochs: 4" in diff


def test_inspect_composes_without_choices_that_no_longer_exist(adjusted_run):
    payload = load_checkpoint(adjusted_run[0] / "checkpoints" / "last.ckpt")
    choices = payload["hydra_choices"]
    debug = "debug" if choices.get("debug") is not None else "trainer"
    payload["hydra_choices"] = {**choices, debug: "retired"}  # trainer=debug, or debug=default
    composed, used, skipped = composed_like(payload, CONF)
    assert skipped == [f"{debug}=retired"] and not any(c.startswith(f"{debug}=") for c in used)
    rows = config_differences(payload["config_yaml"], composed)
    assert any(row.startswith("  model.hidden_dim: 16 ") for row in rows)  # debug's narrow model now differs
