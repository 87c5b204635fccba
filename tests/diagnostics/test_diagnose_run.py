"""A real run provoked into trouble, watched on a terminal: bar on the terminal, clean log,
and the diagnosis names the problem and the override to try; `meshgnn plot` draws the run."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import time

import pytest

from conftest import ROOT
from meshgnn.cli import main as meshgnn

pytestmark = pytest.mark.slow


def run_on_terminal(args: list[str], cwd, timeout: float = 300) -> tuple[int, str]:
    """`python train.py ARGS` with stdout/stderr on a pseudo-terminal; (exit code, what it showed)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # rows, columns
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, stdin=follower,
                            stdout=follower, stderr=follower, env=dict(os.environ))
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return proc.wait(timeout=30), b"".join(chunks).decode(errors="replace")


def test_too_high_learning_rate_is_diagnosed_as_oscillating(tmp_path, data_cache, capsys):
    run_dir = tmp_path / "run"
    code, shown = run_on_terminal(["trainer=debug", "optim.lr=0.3", "optim.warmup_epochs=0",
                                   f"hydra.run.dir={run_dir}", f"paths.data_dir={data_cache}"], tmp_path)
    assert code == 0, shown[-3000:]
    assert "epoch 1/2:" in shown and "graphs_s=" in shown  # the epoch's progress bar
    log = (run_dir / "train.log").read_text()
    assert not [c for c in log if ord(c) < 32 and c not in "\n\t"]
    assert "PROBLEM oscillating" in log

    meshgnn(["diagnose", str(run_dir)])
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if line.startswith("PROBLEM oscillating"))
    assert "optim.lr=0.06" in line  # a fifth of the rate it ran with

    meshgnn(["plot", str(run_dir), "--out", str(tmp_path / "plots")])
    written = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert written == ["loss_terms.png", "loss_total.png", "optimisation.png", "targets.png"]
    assert all((tmp_path / "plots" / name).stat().st_size > 10_000 for name in written)
