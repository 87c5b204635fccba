"""Foundation benchmark: generation, cached load, epoch time and graphs/s of the default config.

Prints a table (copied into the README with the machine it ran on). Not a test: nothing here
asserts a timing. Usage: python benchmarks/foundation.py [key=value overrides ...]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from table import print_table  # noqa: E402
from meshgnn.config import register_configs  # noqa: E402
from meshgnn.data.dataset import load_datasets  # noqa: E402
from meshgnn.data.features import ModelInputs  # noqa: E402


def compose_default(overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def main() -> None:
    overrides = sys.argv[1:]
    cfg = compose_default(overrides)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        t0 = time.perf_counter()
        data = load_datasets(cfg.data, cache, ModelInputs.of_model(cfg.model))
        rows.append(("dataset generation (cold cache)", f"{time.perf_counter() - t0:.1f} s",
                     f"{cfg.data.num_samples} samples"))
        t0 = time.perf_counter()
        data = load_datasets(cfg.data, cache, ModelInputs.of_model(cfg.model))
        rows.append(("cached dataset load", f"{time.perf_counter() - t0:.2f} s", "target <= 2 s"))
        nodes = sum(g.num_nodes for g in data.splits["train"]) / len(data.splits["train"])
        rows.append(("mean nodes per mesh", f"{nodes:.0f}", ""))

        run_dir = Path(tmp) / "run"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides,
                               f"hydra.run.dir={run_dir}", f"paths.data_dir={Path(tmp) / 'cache2'}"],
                              capture_output=True, text=True, cwd=tmp)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"train.py failed:\n{proc.stderr[-2000:]}")
        epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        epoch_time = sorted(e["epoch_time_s"] for e in epochs)[len(epochs) // 2]
        graphs = len(data.splits["train"])
        results = json.loads((run_dir / "results.json").read_text())
        rows.append(("full `python train.py` (generate + train + test)", f"{wall:.0f} s", "target <= 180 s"))
        rows.append(("epoch time (median, training only)", f"{epoch_time:.1f} s", f"{len(epochs)} epochs"))
        rows.append(("training throughput", f"{graphs / epoch_time:.1f} graphs/s",
                     f"{graphs * nodes / epoch_time:,.0f} nodes/s"))
        for name in sorted({k.split("/")[1] for k in results["model"]}):
            model = results["model"][f"test/{name}/rel_l2"]
            mean = results["baseline_mean"][f"test/{name}/rel_l2"]
            analytic = results["baseline_analytic"][f"test/{name}/rel_l2"]
            rows.append((f"test rel L2 {name}", f"{model:.3f}",
                         f"baselines: mean {mean:.3f}, analytic {analytic:.3f}"))

    print_table(rows, f"overrides: {' '.join(overrides) or '(defaults)'}")

if __name__ == "__main__":
    main()
