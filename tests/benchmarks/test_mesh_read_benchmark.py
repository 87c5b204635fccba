"""benchmarks/mesh_read.py end to end on one small mesh: the table and its row."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mesh_read_benchmark_tiny(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "mesh_read.py"), "--sizes", "300",
                           "--repeats", "1", "--folder", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "| nodes | cells | meshio.read ms | check_geometry ms | read_file ms | beyond meshio ms |" in proc.stdout
    (row,) = [line for line in proc.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 6 and 100 < int(cells[0].replace(",", "")) < 1000
    assert all(float(c) >= 0 for c in cells[2:5])
    assert list(tmp_path.glob("heat2d_300.vtu"))
