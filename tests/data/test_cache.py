"""Dataset caches verify themselves: real bit flips, truncations and foreign files are noticed,
named in one warning line and rebuilt; concurrent builders build once; SIGTERM while
generating caches nothing and exits 3."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, compose_config
from meshgnn.data.cache import MANIFEST, cached, save_entry, write_manifest
from meshgnn.data.dataset import load_datasets
from meshgnn.data.features import SPLITS, ModelInputs

TINY = ["data=heat2d", "data.num_samples=6", "data.mesh_size=0.3", "data.max_holes=1", "data.generate_workers=1"]
INPUTS = ModelInputs(broadcast_globals=False, residual=False, hierarchy=None)


def flip_middle_byte(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))


def truncate_half(path: Path) -> None:
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


def assert_same_splits(a, b) -> None:
    for split in SPLITS:
        assert len(a.splits[split]) == len(b.splits[split])
        for ga, gb in zip(a.splits[split], b.splits[split]):
            for key in ("x", "edge_index", "edge_attr", "y"):
                torch.testing.assert_close(ga[key], gb[key], msg=key)


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A fresh build, to compare every rebuilt cache with."""
    return load_datasets(compose_config(TINY).data, tmp_path_factory.mktemp("fresh"), INPUTS)


def _foreign_torch_file(path: Path) -> None:
    torch.save({"weights": torch.ones(3)}, path)


def _valid_checksum_without_slices(path: Path) -> None:
    """A file whose manifest record matches but whose structure is not a collated store."""
    raw = torch.load(path, weights_only=True)
    record = save_entry({"store": raw["store"]}, path)
    manifest = json.loads((path.parent / MANIFEST).read_text())
    write_manifest(path.parent, {"keys": manifest["keys"], "files": {"data.pt": record}})


DAMAGE = {
    "bit flip": ("data.pt", flip_middle_byte, "checksum mismatch"),
    "truncation": ("data.pt", truncate_half, "truncated"),
    "foreign torch file": ("data.pt", _foreign_torch_file, "data.pt: "),
    "no slices": ("data.pt", _valid_checksum_without_slices, "wrong structure: expected a dict with 'store' and 'slices'"),
    "manifest bit flip": (MANIFEST, flip_middle_byte, MANIFEST),
    "manifest truncation": (MANIFEST, truncate_half, "unreadable"),
    "legacy cache without manifest": (MANIFEST, lambda p: p.unlink(), "not listed in manifest.json"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_dataset_cache_is_named_once_and_rebuilt(tmp_path, fresh, caplog, damage):
    name, hurt, reason = DAMAGE[damage]
    cfg = compose_config(TINY).data
    first = load_datasets(cfg, tmp_path, INPUTS)
    hurt(first.cache_dir / name)
    (first.cache_dir / ".data.pt.killed.tmp").write_bytes(b"half")  # a builder killed mid-write
    with caplog.at_level(logging.WARNING):
        rebuilt = load_datasets(cfg, tmp_path, INPUTS)
    (line,) = warnings_of(caplog)
    assert str(first.cache_dir) in line and reason in line and "rebuilding it from the heat2d generator" in line
    assert_same_splits(rebuilt, fresh)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = load_datasets(cfg, tmp_path, INPUTS)  # the rebuilt entry verifies: no warning
    assert not warnings_of(caplog)
    assert_same_splits(again, fresh)
    assert not list(first.cache_dir.glob(".*.tmp"))


def _slow_build(log_file: str) -> dict:
    with open(log_file, "a") as handle:
        handle.write(f"{os.getpid()}\n")
    time.sleep(1.5)  # long enough that the other process arrives while this one builds
    return {"store": {"pos": torch.arange(12.0).view(6, 2)}, "slices": {"pos": torch.tensor([0, 3, 6])}}


def _build_in_process(cache_dir: str, log_file: str, out) -> None:
    data, _ = cached(Path(cache_dir), "shared", {"k": 1}, lambda: _slow_build(log_file), lambda raw: None, "test")
    out.put(data["store"]["pos"].tolist())


def test_concurrent_processes_build_the_same_cache_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")  # a fork of a process that ran torch may hang in OpenMP
    out, log_file = ctx.Queue(), tmp_path / "builds.log"
    procs = [ctx.Process(target=_build_in_process, args=(str(tmp_path / "cache"), str(log_file), out))
             for _ in range(2)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    assert results[0] == results[1] == torch.arange(12.0).view(6, 2).tolist()
    assert len(log_file.read_text().split()) == 1  # the second waited and loaded the first's entry
    (folder,) = (tmp_path / "cache").iterdir()
    assert not list(folder.glob(".*.tmp"))


@pytest.mark.slow
def test_sigterm_while_generating_caches_nothing_and_exits_3(tmp_path):
    data_dir, log_file = tmp_path / "data", tmp_path / "stdout.log"
    args = [sys.executable, str(ROOT / "train.py"), "trainer=debug", "data.num_samples=1000",
            "data.generate_workers=2", f"paths.data_dir={data_dir}", f"hydra.run.dir={tmp_path / 'run'}"]
    with open(log_file, "w") as stdout:  # the job log goes to stdout: a file, so no pipe fills up
        proc = subprocess.Popen(args, cwd=tmp_path, stdout=stdout, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 60
    while "generating heat2d: " not in log_file.read_text():  # a progress line every 10 %
        assert proc.poll() is None and time.monotonic() < deadline, log_file.read_text()[-3000:]
        time.sleep(0.05)
    workers = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    assert len(workers) == 2
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 3, stderr[-3000:]
    assert "Traceback" not in stderr
    (message,) = [line for line in stderr.splitlines() if line.startswith("stopped by")]
    assert "stopped by SIGTERM while generating the heat2d dataset (" in message
    assert "/1000 samples); nothing was cached. Run the same command again to generate it" in message
    assert not list(data_dir.rglob("*.pt")) and not list(data_dir.rglob("*.tmp"))
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the stop"
