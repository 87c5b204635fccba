"""Checkpoint benchmark: save time and size for the default model, load + verify time, and
the wall time from `python train.py resume=<run>` to its first training step.

Prints a table (recorded in the README with the machine). Target: a save costs at most 5% of
an epoch of the default config. Usage: python benchmarks/checkpoints.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from table import print_table  # noqa: E402
from meshgnn.training.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402


def train(args: list[str], cwd: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd,
                          capture_output=True, text=True)
    if proc.returncode not in (0, 3):
        sys.exit(f"train.py {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir, cache = Path(tmp) / "run", Path(tmp) / "cache"
        common = [f"paths.data_dir={cache}"]
        train(common + ["trainer.epochs=1", f"hydra.run.dir={run_dir}"], tmp)
        epoch_time = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])["epoch_time_s"]

        last = run_dir / "checkpoints" / "last.ckpt"
        payload = load_checkpoint(last)
        payload = {k: v for k, v in payload.items() if k not in ("checksum", "format", "format_version")}
        saves, loads = [], []
        for i in range(5):
            t0 = time.perf_counter()
            save_checkpoint(payload, Path(tmp) / f"bench_{i}.ckpt")
            saves.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            load_checkpoint(Path(tmp) / f"bench_{i}.ckpt")
            loads.append(time.perf_counter() - t0)
        save_s, load_s = sorted(saves)[2], sorted(loads)[2]
        size_mb = last.stat().st_size / 1e6
        params = sum(t.numel() for t in payload["model"].values())
        # From the command to the first step: the resume stops after one step (max_time).
        to_first_step = train([f"resume={run_dir}", "trainer.epochs=2", "trainer.max_time=0.001"], tmp)

    rows = [
        ("model parameters (default config)", f"{params:,}", ""),
        ("checkpoint size", f"{size_mb:.2f} MB", "weights, AdamW moments, RNG, config"),
        ("save (checksum + write + fsync + rename)", f"{save_s * 1000:.0f} ms", "median of 5"),
        ("load + verify checksum", f"{load_s * 1000:.0f} ms", "median of 5"),
        ("epoch time, default config", f"{epoch_time:.1f} s", ""),
        ("saves per epoch", "2", "last.ckpt + best.ckpt when improved"),
        ("save cost per epoch", f"{200 * save_s / epoch_time:.2f} %", "target <= 5 %"),
        ("`train.py resume=<run>`: start to exit after one step", f"{to_first_step:.1f} s",
         "interpreter + imports, cached data, checkpoint load, one step, save, exit"),
    ]
    print_table(rows)

if __name__ == "__main__":
    main()
