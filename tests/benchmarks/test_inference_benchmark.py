"""benchmarks/inference.py end to end in its tiny mode: a quick-trained heat2d model, one small
mesh, a two-mesh folder through predict_files, the tables, the goals and the JSON."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_inference_benchmark_tiny(tmp_path):
    out = tmp_path / "inference.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "inference.py"), "--train-quick", "--sources", "heat2d", "--sizes", "300",
         "--repeats", "1", "--folder-count", "2", "--folder-nodes", "2000", "--devices", "cpu", "--json", str(out),
         "--", "model.hidden_dim=8", "model.num_levels=2"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    report = json.loads(out.read_text())
    (row,) = report["latency"]
    assert row["source"] == "heat2d" and row["device"] == "cpu" and row["solver_s"] > 0
    assert abs(row["total_ms"] - row["read_ms"] - row["prepare_ms"] - row["forward_ms"]) < 1e-6
    (folder,) = report["folder"]
    assert folder["meshes"] == 2 and folder["mean_nodes"] > 1_000 and folder["meshes_per_s"] > 0
    goals = {g["goal"]: g for g in report["goals"]}
    assert goals["heat2d 100k file-to-fields, GPU (ms)"]["met"] is None  # no GPU, no 100k mesh here
    assert "| heat2d | cpu |" in proc.stdout and "| goal | measured | target | status |" in proc.stdout
