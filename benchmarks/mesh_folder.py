"""Mesh-folder benchmark: processing and loading throughput, and peak memory while training,
for folders of N meshes of about 20k nodes.

`--base` distinct heat2d meshes are exported as VTU once; each folder of N files hard-links
them in turn (distinct paths, so the pipeline converts and caches every file). For each N it
measures, each in a fresh process: checking + converting the folder (files/s, nodes/s, peak
RSS), reading the converted training split back with features (files/s, nodes/s), and one
training epoch of a small model (peak RSS of the training process, which must not grow with
N: target, peak RSS at 1,000 files within 1.5x of that at 100).

Usage: python benchmarks/mesh_folder.py [--sizes 100 1000] [--base 100] [--mesh-size 0.0118]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from table import print_table  # noqa: E402

INPUTS = "[boundary_temperature,heat_source,conductivity]"
TARGETS = "[temperature,heat_flux]"
SMALL_MODEL = ["model=edge_gnn", "model.hidden_dim=16", "model.num_layers=2"]


def folder_overrides(folder: Path, cache: Path) -> list[str]:
    return ["data=mesh_folder", f"data.path={folder}", f"data.inputs={INPUTS}", f"data.targets={TARGETS}",
            "data.node_type_field=node_type", "data.node_type_values=[0,1,2]", f"paths.data_dir={cache}"]


def run_measured(args: list[str]) -> tuple[float, float, str]:
    """Run a command; return wall seconds, its peak RSS in MiB (children excluded) and stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed:\n{out[-3000:]}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024, out


def stage(kind: str, folder: Path, cache: Path) -> None:
    """In a fresh process: 'process' (check + convert + fit normaliser) or 'load' (read the
    train split with features), printing one JSON line of counts and seconds."""
    from hydra import compose, initialize_config_dir

    from meshgnn.config import register_configs
    from meshgnn.data.dataset import load_datasets
    from meshgnn.data.features import ModelInputs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=folder_overrides(folder, cache) + SMALL_MODEL)
    start = time.perf_counter()
    data = load_datasets(cfg.data, cache, ModelInputs.of_model(cfg.model))
    seconds = time.perf_counter() - start
    train = data.splits["train"]
    if kind == "load":
        start = time.perf_counter()
        nodes = sum(int(g.num_nodes) for g in train)
        seconds = time.perf_counter() - start
        print(json.dumps({"files": len(train), "nodes": nodes, "seconds": seconds}))
    else:
        files = sum(len(s) for s in data.splits.values())
        print(json.dumps({"files": files, "nodes": None, "seconds": seconds}))


def make_folder(base: list[Path], folder: Path, size: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(size):
        source = base[i % len(base)]
        for suffix in (".vtu", ".json"):
            target = folder / f"sample_{i:05d}{suffix}"
            if not target.exists():
                os.link(source.with_suffix(suffix), target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--base", type=int, default=100)
    parser.add_argument("--mesh-size", type=float, default=0.0118)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "runs" / "mesh_folder")
    parser.add_argument("--stage", choices=["process", "load"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = args.out.resolve()
    if args.stage:
        return stage(args.stage, args.folder, out / "cache")

    from meshgnn.data.export import export_samples

    base_dir = out / "base"
    if not (base_dir / "sample_00000.vtu").exists():
        export_samples("heat2d", base_dir, args.base, seed=0, mesh_size=args.mesh_size, max_holes=3, workers=0)
    base = sorted(base_dir.glob("*.vtu"))
    rows = []
    for size in args.sizes:
        folder = out / f"folder_{size}"
        make_folder(base, folder, size)
        me = [sys.executable, str(Path(__file__).resolve()), "--out", str(out), "--folder", str(folder)]
        _, rss, text = run_measured(me + ["--stage", "process"])
        processed = json.loads(text.strip().splitlines()[-1])
        _, load_rss, text = run_measured(me + ["--stage", "load"])
        loaded = json.loads(text.strip().splitlines()[-1])
        run_dir = out / f"run_{size}"
        _, train_rss, _ = run_measured([sys.executable, "train.py", *folder_overrides(folder, out / "cache"),
                                        *SMALL_MODEL, "trainer.epochs=1", f"hydra.run.dir={run_dir}"])
        epoch = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
        nodes_per_file = loaded["nodes"] / loaded["files"]
        rows += [
            (f"{size} files: check + convert", f"{processed['files'] / processed['seconds']:.1f} files/s",
             f"{processed['files'] * nodes_per_file / processed['seconds']:,.0f} nodes/s, "
             f"{processed['seconds']:.0f} s, parent peak RSS {rss:.0f} MiB"),
            (f"{size} files: read train split with features", f"{loaded['files'] / loaded['seconds']:.1f} files/s",
             f"{loaded['nodes'] / loaded['seconds']:,.0f} nodes/s ({nodes_per_file:,.0f} nodes per mesh)"),
            (f"{size} files: one training epoch", f"peak RSS {train_rss:.0f} MiB",
             f"{epoch['epoch_time_s']:.0f} s, model=edge_gnn 16 wide x 2"),
        ]
    if len(args.sizes) >= 2:
        first, last = rows[2], rows[-1]  # the training-epoch rows of the smallest and largest folder
        ratio = float(last[1].split()[2]) / float(first[1].split()[2])
        rows.append((f"peak RSS {args.sizes[-1]} / {args.sizes[0]} files", f"{ratio:.2f}x", "target <= 1.5x"))
    print_table(rows, f"heat2d exported at mesh_size {args.mesh_size}, {args.base} distinct meshes")


if __name__ == "__main__":
    main()
