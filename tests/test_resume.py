"""Never lose a run: exact resume, branches, LR changes, warm starts, stages, kills (end to end)."""

import json
import random
import signal
import subprocess
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import ROOT, compose_config, epochs_logged, run_train, start_train
from meshgnn.errors import UserError
from meshgnn.resume import check_start_paths, start_point
from meshgnn.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

DEBUG = ["trainer=debug", "trainer.deterministic=true", "data.num_samples=20"]  # 4 steps an epoch


def metrics_without_timing(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("epoch_time_s")
    return rows


def interrupt_after(args, cwd, run_dir, epochs, sig=signal.SIGTERM):
    """Start a run, send `sig` once `epochs` epochs are logged; return the finished process."""
    proc = start_train(args, cwd)
    deadline = time.time() + 120
    while epochs_logged(run_dir) < epochs and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


STRAIGHT = DEBUG + ["trainer.epochs=6"]


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory, data_cache):
    """A finished 6-epoch debug run (checkpoints at every epoch): the straight run an interrupted
    one must match, and the run to branch from and warm-start (one train.py start-up for both)."""
    root = tmp_path_factory.mktemp("stage1")
    run_dir = root / "run"
    proc = run_train(STRAIGHT + [f"hydra.run.dir={run_dir}", f"paths.data_dir={data_cache}"], cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir


def test_interrupt_and_resume_is_bit_identical_to_a_straight_run(tmp_path, data_cache, stage1_run):
    common = STRAIGHT + [f"paths.data_dir={data_cache}"]
    straight = stage1_run
    resumed = tmp_path / "resumed"
    code, _, err = interrupt_after(common + [f"hydra.run.dir={resumed}"], tmp_path, resumed, epochs=3)
    assert code == 3, err[-2000:]
    assert f"python train.py resume={resumed}" in err
    assert epochs_logged(resumed) < 6
    proc = run_train([f"resume={resumed}", f"paths.data_dir={data_cache}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]

    a = load_checkpoint(straight / "checkpoints" / "last.ckpt")
    b = load_checkpoint(resumed / "checkpoints" / "last.ckpt")
    assert a["epoch"] == b["epoch"] == 6 and a["global_step"] == b["global_step"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert metrics_without_timing(straight) == metrics_without_timing(resumed)
    assert json.loads((straight / "results.json").read_text()) == json.loads((resumed / "results.json").read_text())

    events = EventAccumulator(str(resumed / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("val/loss/total")] == [1, 2, 3, 4, 5, 6]
    launches = sorted(p.name for p in (resumed / ".hydra" / "launches").iterdir())
    assert launches == ["01", "02"]
    assert "trainer.epochs=6" in (resumed / ".hydra" / "launches" / "01" / "overrides.yaml").read_text()
    run = json.loads((resumed / "run.json").read_text())
    assert [l["lineage"]["kind"] for l in run["launches"]] == ["fresh", "resume"]


def test_resume_from_an_epoch_checkpoint_branches_into_a_new_run(tmp_path, stage1_run):
    before = sorted(p.name for p in (stage1_run / "checkpoints").iterdir())
    branch = tmp_path / "branch"
    proc = run_train([f"resume={stage1_run / 'checkpoints' / 'epoch_0002.ckpt'}", "trainer.epochs=5",
                      f"hydra.run.dir={branch}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in (stage1_run / "checkpoints").iterdir()) == before  # parent untouched
    assert [json.loads(l)["epoch"] for l in (branch / "metrics.jsonl").read_text().splitlines()] == [3, 4, 5]
    run = json.loads((branch / "run.json").read_text())
    assert run["resumed_from"].endswith("epoch_0002.ckpt") and run["parent_run"] == str(stage1_run.resolve())
    assert load_checkpoint(branch / "checkpoints" / "last.ckpt")["lineage"]["start_epoch"] == 2


def test_learning_rate_override_on_resume(tmp_path, stage1_run):
    branch = tmp_path / "lr"
    proc = run_train([f"resume={stage1_run / 'checkpoints' / 'epoch_0003.ckpt'}", "optim.lr=1e-4",
                      "optim.warmup_epochs=0", "optim.schedule=constant", "trainer.epochs=5",
                      f"hydra.run.dir={branch}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = load_checkpoint(branch / "checkpoints" / "last.ckpt")
    assert all(g["lr"] == pytest.approx(1e-4) for g in ckpt["optimizer"]["param_groups"])
    events = EventAccumulator(str(branch / "tb"))
    events.Reload()
    assert [round(e.value, 10) for e in events.Scalars("lr")] == [1e-4, 1e-4]
    launch = json.loads((branch / "run.json").read_text())["launches"][-1]
    assert launch["lineage"]["changed"]["optim.lr"] == {"from": 1e-3, "to": 1e-4}


def test_lr_restarts_at_the_new_rate_on_the_first_resumed_step(tmp_path, stage1_run):
    branch = tmp_path / "lr_first_step"
    proc = run_train([f"resume={stage1_run / 'checkpoints' / 'epoch_0003.ckpt'}", "optim.lr=2e-4",
                      "optim.warmup_epochs=0", "trainer.epochs=4", "trainer.max_time=0.001",
                      f"hydra.run.dir={branch}"], cwd=tmp_path)
    assert proc.returncode == 3  # stopped by max_time after exactly one step
    ckpt = load_checkpoint(branch / "checkpoints" / "last.ckpt")
    assert ckpt["epoch_progress"]["batches_done"] == 1
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2e-4)


def test_shape_changes_on_resume_are_refused(tmp_path, stage1_run):
    proc = run_train([f"resume={stage1_run}", "model.hidden_dim=32", "data.mesh_size=0.2"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "model.hidden_dim" in proc.stderr and "data.mesh_size" in proc.stderr and "init_from" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_stage2_warm_start_continues_the_epoch_counter(tmp_path, stage1_run, data_cache):
    stage2 = tmp_path / "stage2"
    proc = run_train(DEBUG + ["experiment=stage2", f"init_from={stage1_run}", "trainer.epochs=8",
                              f"hydra.run.dir={stage2}", f"paths.data_dir={data_cache}"],
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [json.loads(l)["epoch"] for l in (stage2 / "metrics.jsonl").read_text().splitlines()] == [7, 8]
    s1 = load_checkpoint(stage1_run / "checkpoints" / "last.ckpt")
    s2 = load_checkpoint(stage2 / "checkpoints" / "last.ckpt")
    assert "gradient_consistency_weight: 0.0" in s1["config_yaml"]
    assert "gradient_consistency_weight: 0.25" in s2["config_yaml"]
    assert "lr: 0.0001" in s2["config_yaml"]
    run = json.loads((stage2 / "run.json").read_text())
    assert run["init_from"].endswith("best.ckpt") and run["parent_run"] == str(stage1_run.resolve())
    # the normaliser is stage 1's, not refit
    assert (stage2 / "normalization.json").read_text() == (stage1_run / "normalization.json").read_text()


def test_bad_resume_and_init_paths_are_one_line(tmp_path, stage1_run):
    """One case through train.py (exit code 2, one line, no traceback); the others where
    train.py gets them from (each subprocess costs ~8 s of imports on 2 cores)."""
    proc = run_train(DEBUG + [f"resume={tmp_path / 'nope'}", f"hydra.run.dir={tmp_path / 'x'}"], cwd=tmp_path,
                     timeout=120)
    assert proc.returncode == 2 and "no such run directory" in proc.stderr, proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    for args, needle in ([f"init_from={empty}", "trainer.epochs=3"], "empty"), \
                        ([f"init_from={stage1_run}", "trainer.epochs=3"], "nothing left to train"):
        with pytest.raises(UserError, match=needle):
            start_point(compose_config(DEBUG + args), args, tmp_path / "x")


def test_resume_of_a_plain_run_without_a_checkpoint_is_refused_before_launch(tmp_path):
    """Every run keeps its first launch's snapshot (.hydra/launches/01): only a staged run's
    config (with stages) makes a directory without checkpoints/ resumable."""
    run = tmp_path / "crashed_before_epoch_1"
    (run / ".hydra" / "launches" / "01").mkdir(parents=True)
    (run / ".hydra" / "launches" / "01" / "config.yaml").write_text("stages: {}\n")
    with pytest.raises(UserError, match="no checkpoints/last.ckpt"):
        check_start_paths(str(run), None)


def test_two_stage_pipeline_set_lr_and_resume_in_the_middle_of_stage2(tmp_path, data_cache):
    """Stage 2 interrupted, its rate changed by `meshgnn ckpt set-lr`, then the command set-lr
    printed: the staged run continues stage 2 in place at the new rate."""
    run_dir = tmp_path / "two"
    args = DEBUG + ["experiment=two_stage", "stages.stage1.trainer.epochs=2", "stages.stage2.trainer.epochs=6",
                    "max_epochs_per_stage=0", "optim.schedule=constant",  # debug's cap off; exact rates
                    f"hydra.run.dir={run_dir}", f"paths.data_dir={data_cache}"]
    code, _, err = interrupt_after(args, tmp_path, run_dir / "stage2", epochs=1)
    assert code == 3, err[-2000:]
    assert f"python train.py resume={run_dir}" in err
    assert (run_dir / "stage1" / "results.json").is_file()
    assert not (run_dir / "stage2" / "results.json").exists()

    adjusted = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "meshgnn.cli", "ckpt", "set-lr",
                               str(run_dir / "stage2" / "checkpoints" / "last.ckpt"), "3e-4"],
                              capture_output=True, text=True)
    assert adjusted.returncode == 0, adjusted.stderr
    assert adjusted.stdout.strip().endswith(f"with: python train.py resume={run_dir}")  # the staged run's dir
    done = load_checkpoint(run_dir / "stage2" / "checkpoints" / "last.ckpt")["epoch"]  # a part-done epoch logs its last step's rate

    proc = run_train([f"resume={run_dir}", f"paths.data_dir={data_cache}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    s1 = load_checkpoint(run_dir / "stage1" / "checkpoints" / "last.ckpt")
    s2 = load_checkpoint(run_dir / "stage2" / "checkpoints" / "last.ckpt")
    assert "gradient_consistency_weight: 0.0\n" in s1["config_yaml"]
    assert "gradient_consistency_weight: 0.25" in s2["config_yaml"]
    assert s1["epoch"] == 2 and s2["epoch"] == 6
    rows = [json.loads(l) for l in (run_dir / "stage2" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [3, 4, 5, 6]
    # stage 2's own rate (1e-4) until the interruption, set-lr's from the resumed epoch on
    assert [r["lr"] for r in rows] == pytest.approx([1e-4] * (done - 2) + [3e-4] * (6 - done))
    assert (run_dir / "stage2" / "results.json").is_file()
    assert s2["lineage"]["checkpoint"].endswith("last_lr_adjusted.ckpt") and s2["lineage"]["kind"] == "resume"


def test_resume_auto_starts_fresh_then_resumes(tmp_path, data_cache):
    run_dir = tmp_path / "auto"
    args = DEBUG + ["resume=auto", "trainer.epochs=3", f"hydra.run.dir={run_dir}", f"paths.data_dir={data_cache}"]
    first = run_train(args[:-2] + ["trainer.epochs=2"] + args[-2:], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    second = run_train(args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resume from" in second.stdout + second.stderr
    assert [json.loads(l)["epoch"] for l in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_kill_9_at_random_moments_never_corrupts_and_loses_at_most_an_epoch(tmp_path, data_cache):
    run_dir = tmp_path / "killed"
    args = DEBUG + ["resume=auto", "trainer.epochs=12", f"hydra.run.dir={run_dir}", f"paths.data_dir={data_cache}"]
    rng = random.Random(0)
    for _ in range(3):
        proc = start_train(args, tmp_path)
        time.sleep(rng.uniform(4.0, 7.0))  # interpreter start-up is ~4 s; kills land in training or saving
        proc.kill()
        proc.communicate()
        last = run_dir / "checkpoints" / "last.ckpt"
        if last.exists():
            ckpt = load_checkpoint(last)  # never corrupt
            assert ckpt["epoch"] >= epochs_logged(run_dir) - 1  # at most one epoch lost
    proc = run_train(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [json.loads(l)["epoch"] for l in (run_dir / "metrics.jsonl").read_text().splitlines()] == list(range(1, 13))
    assert not list(run_dir.glob("checkpoints/.*.tmp"))


def test_ckpt_cli_inspect_and_set_lr(tmp_path, stage1_run):
    meshgnn = [str(ROOT / ".venv" / "bin" / "python"), "-m", "meshgnn.cli"]
    ckpt = stage1_run / "checkpoints" / "epoch_0002.ckpt"
    out = subprocess.run(meshgnn + ["ckpt", "inspect", str(ckpt)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "epoch          2 completed" in out.stdout and "checksum OK" in out.stdout
    # composed with the run's own group choices (trainer=debug): only its command-line overrides differ
    assert "trainer.epochs: 6 (conf/: 2)" in out.stdout and "data.num_samples: 20 (conf/: 40)" in out.stdout
    assert "3 difference(s)" in out.stdout  # with trainer.deterministic=true
    adjusted = subprocess.run(meshgnn + ["ckpt", "set-lr", str(ckpt), "1e-4"], capture_output=True, text=True)
    assert adjusted.returncode == 0, adjusted.stderr
    new = load_checkpoint(stage1_run / "checkpoints" / "epoch_0002_lr_adjusted.ckpt")
    assert new["optimizer"]["param_groups"][0]["lr"] == 1e-4 and "lr: 0.0001" in new["config_yaml"]
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(ckpt.read_bytes()[:5000])
    out = subprocess.run(meshgnn + ["ckpt", "inspect", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and str(bad) in out.stderr
