"""Full disks and lost permissions, for real: a small tmpfs that fills up mid-run, a run
directory made read-only under a non-root user. The user sees one line naming the path and
the fix (exit 4), the last good checkpoint stays loadable, and resume= continues once the
cause is gone."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch

from conftest import NOBODY, ROOT, as_nobody, compose_config
from meshgnn.atomic import atomic_write
from meshgnn.errors import StorageError
from meshgnn.experiment import run
from meshgnn.training.checkpoint import load_checkpoint, save_checkpoint
from meshgnn.training.metrics_log import read_metrics

TINY = ["trainer=debug", "data.num_samples=20", "model.hidden_dim=16"]
IN_PROCESS = [*TINY, f"paths.root_dir={ROOT}"]  # no Hydra run to resolve it


@pytest.fixture
def tmpfs(tmp_path):
    """A real tmpfs of `size` mounted on a fresh folder, unmounted afterwards."""
    mounts = []

    def mount(size: str) -> Path:
        point = tmp_path / f"fs{len(mounts)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); needs root")
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", "-l", str(point)], check=False)


def fill(folder: Path) -> Path:
    """Fill the file system of `folder` to the last byte with a real file."""
    filler = folder / "filler.bin"
    with filler.open("wb", buffering=0) as handle:
        chunk = b"\0" * (1 << 16)
        while True:
            try:
                handle.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                if len(chunk) == 1:
                    return filler
                chunk = chunk[: len(chunk) // 2]


def when_file_appears(path: Path, action) -> threading.Thread:
    """Run `action` (a real fault) as soon as `path` exists, from another thread."""
    def watch() -> None:
        deadline = time.monotonic() + 120
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        action()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def one_line(message: str, *needles: str) -> None:
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)


def test_a_checkpoint_that_does_not_fit_is_refused_before_any_file_and_the_old_one_stays(tmpfs):
    disk = tmpfs("1m")
    last = disk / "checkpoints" / "last.ckpt"
    save_checkpoint({"epoch": 1, "model": {"w": torch.zeros(1000)}}, last)
    with pytest.raises(StorageError) as info:
        save_checkpoint({"epoch": 2, "model": {"w": torch.zeros(400_000)}}, last)  # 1.6 MB
    one_line(str(info.value), str(last), "no space left on device", f"MB on {disk} (", "MB free)",
             "free at least 0.")
    assert load_checkpoint(last)["epoch"] == 1
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # no temp file started


def test_a_write_of_unknown_size_that_fills_the_disk_leaves_nothing_half_written(tmpfs):
    disk = tmpfs("256k")
    path = disk / "cache" / "data.pt"
    with pytest.raises(StorageError) as info:
        atomic_write(path, lambda handle: handle.write(b"x" * 1_000_000))
    one_line(str(info.value), str(path), "no space left on device", f"free space on {disk}")
    assert list(path.parent.iterdir()) == []


def test_a_dataset_cache_that_does_not_fit_is_one_line(tmpfs, tmp_path):
    cache = tmpfs("64k")
    cfg = compose_config([*IN_PROCESS, f"paths.data_dir={cache}", f"paths.output_dir={tmp_path / 'run'}"])
    with pytest.raises(StorageError) as info:
        run(cfg)
    one_line(str(info.value), str(cache), "no space left on device", "run the same command again")


def test_disk_full_mid_run_stops_in_one_line_then_resume_continues(tmpfs, data_cache):
    run_dir = tmpfs("8m") / "run"
    args = [*IN_PROCESS, "trainer.epochs=3", f"paths.data_dir={data_cache}", f"paths.output_dir={run_dir}"]
    filler: list[Path] = []
    watcher = when_file_appears(run_dir / "checkpoints" / "last.ckpt", lambda: filler.append(fill(run_dir.parent)))
    with pytest.raises(StorageError) as info:
        run(compose_config(args))
    watcher.join()
    one_line(str(info.value), str(run_dir), "no space left on device", "MB free)",
             f"resume with: python train.py resume={run_dir}")
    saved = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert saved["epoch"] >= 1
    assert [r["epoch"] for r in read_metrics(run_dir)][: saved["epoch"]] == list(range(1, saved["epoch"] + 1))

    filler[0].unlink()  # the cause is gone: the run continues where its checkpoint is
    run(compose_config([*args, f"resume={run_dir}"]))
    assert [r["epoch"] for r in read_metrics(run_dir)] == [1, 2, 3]
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["epoch"] == 3
    assert (run_dir / "results.json").is_file()


@pytest.mark.slow
def test_run_dir_made_read_only_for_a_non_root_user_is_one_line_and_exit_4(data_cache):
    prefix = as_nobody()
    home = Path(tempfile.mkdtemp(prefix="meshgnn-nobody-"))
    try:
        os.chown(home, NOBODY, NOBODY)
        run_dir, data = home / "run", home / "data"
        shutil.copytree(data_cache, data)  # the session's dataset, readable by that user
        for folder, _, files in os.walk(data):
            for name in [folder, *(os.path.join(folder, f) for f in files)]:
                os.chown(name, NOBODY, NOBODY)

        def lock() -> None:
            for folder in (run_dir, run_dir / "checkpoints"):
                os.chmod(folder, 0o555)

        watcher = when_file_appears(run_dir / "checkpoints" / "last.ckpt", lock)
        done = subprocess.run(
            [*prefix,
             str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "train.py"), *TINY, "trainer.epochs=3",
             f"paths.data_dir={data}", f"paths.output_dir={run_dir}"],
            cwd=home, capture_output=True, text=True, timeout=300,
            env={**os.environ, "HOME": str(home), "PYTHONUNBUFFERED": "1"})
        watcher.join()
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert done.returncode == 4, done.stderr[-2000:]
        assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
        one_line(errors[0], "permission denied", f"make {run_dir}", "writable",
                 f"resume with: python train.py resume={run_dir}")
        saved = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")

        for folder in (run_dir, run_dir / "checkpoints"):  # the cause is gone
            os.chmod(folder, 0o755)
        run(compose_config([*IN_PROCESS, "trainer.epochs=3", f"paths.data_dir={data}",
                            f"paths.output_dir={run_dir}", f"resume={run_dir}"]))
        assert [r["epoch"] for r in read_metrics(run_dir)] == [1, 2, 3]
        assert saved["epoch"] < 3
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_a_read_only_mount_is_named_as_such(tmpfs):
    disk = tmpfs("1m")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    with pytest.raises(StorageError) as info:
        atomic_write(disk / "run.json", lambda handle: handle.write(b"{}"))
    one_line(str(info.value), str(disk / "run.json"), "read-only file system", f"remount {disk} read-write")
