"""benchmarks/throughput.py end to end on the CPU, one small batch: the trainer's step eager
and padded (what CUDA graphs replay, run eagerly without CUDA), the table and the targets."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_throughput_benchmark_tiny_on_the_cpu():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "model.hidden_dim=16",
                           "--device", "cpu", "--nodes", "1500", "--samples", "1", "--sample-nodes", "1500", "--steps", "1", "--warmup", "1",
                           "--models", "multiscale_gnn", "--cells", "fp32:graphs", "bf16:graphs"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rows = [line.split("|")[1:-1] for line in proc.stdout.splitlines() if line.startswith("| multiscale_gnn |")]
    cells = {(r[3].strip(), r[4].strip()): r for r in rows if len(r) == 13}
    # the eager fp32 reference is always run, first
    assert list(cells) == [("fp32", "eager"), ("fp32", "graphs"), ("bf16", "graphs")], proc.stdout
    for row in cells.values():
        assert float(row[5]) > 0 and row[11].strip().endswith("x")
    (target,) = [r for r in rows if len(r) == 7]  # the targets table: bf16 graphs against eager fp32
    assert target[2].strip() == "bf16 graphs" and ">= 5x" in target[4] and ">= 0.15" in target[6]


def test_a_cell_the_benchmark_cannot_run_is_refused():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--cells", "fp16:graphs"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and "fp16's loss scaler cannot run in a CUDA graph" in proc.stderr
