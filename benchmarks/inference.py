"""Inference benchmark (issue #19, item 4): what a trained surrogate costs per mesh, file to
fields, against the solver it replaces, on CPU and (when CUDA is there) GPU.

Per source (--model SOURCE=RUN_DIR, or --train-quick: a tiny model of each trained through
train.py; timing does not depend on the weights) and mesh size (--sizes, nodes):
  - the solver's seconds (assembly + solve, timed inside the generator; meshing excluded);
  - read (VTU), prepare (edges, baseline, features, coarse levels, normalisation) and forward
    seconds per --precisions, medians of --repeats after a warm-up, their total and its
    speed-up over the solver, and prepare as a multiple of forward;
  - folder throughput: --folder-count meshes of ~10k nodes through `predict_files` (the
    `meshgnn predict` path) per --folder-workers reader processes, in batches of --batch-nodes,
    meshes/s and nodes/s;
  - with --accuracy, the test rel L2 per precision and pruning level on the model's test split.
Issue #19's goals are checked and printed; everything goes to --json too.

Usage: python benchmarks/inference.py (--model heat2d=RUN_DIR ... | --train-quick)
       [--sizes 1000 10000 100000] [--repeats 5] [--precisions fp32 bf16] [--folder-count 64]
       [--folder-workers 0 2] [--batch-nodes 200000]
       [--accuracy] [--json inference.json] [-- train.py overrides for --train-quick]
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from meshgnn.inference.folder_defaults import BATCH_NODES, default_workers  # noqa: E402
from table import machine_line  # noqa: E402
from train_jobs import Job, run_all  # noqa: E402

# source -> (module holding the solver the generator calls, its name, nodes at a reference
# mesh size); nodes ~ 1 / mesh_size^2. A new source joins here.
SOURCES = {"heat2d": ("meshgnn.data.sources.heat2d", "solve_heat", 19_000, 0.0136),
           "flow2d": ("meshgnn.data.sources.flow2d", "solve_navier_stokes", 1_950, 0.05)}
ACCURACY_SETTINGS = [("fp32", 0.0), ("bf16", 0.0), ("fp16", 0.0), ("fp32", 0.2), ("bf16", 0.2)]
FOLDER_NODES = 10_000
# --train-quick: the default architecture (timing depends on its size, not on its weights),
# trained for one epoch on a few coarse meshes
QUICK_ARGS = ["trainer.epochs=1", "data.num_samples=8", "data.mesh_size=[0.2,0.3]", "data.max_holes=1",
              "data.generate_workers=1", "trainer.image_every=0"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_generate(source: str, nodes: int, seed: int, index: int = 0):
    """A sample of about `nodes` nodes and the seconds its solver took (meshing excluded)."""
    from meshgnn.data.sources import get_source

    module_name, solver_name, reference_nodes, reference_size = SOURCES[source]
    module = importlib.import_module(module_name)
    solve, seconds = getattr(module, solver_name), []

    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = solve(*args, **kwargs)
        seconds.append(time.perf_counter() - start)
        return out

    setattr(module, solver_name, timed)
    try:
        sample = get_source(source).generate(index, seed, reference_size * (reference_nodes / nodes) ** 0.5, 3)
    finally:
        setattr(module, solver_name, solve)
    return sample, sum(seconds)


def latency(package, path: Path, device: torch.device, precision: str,
            repeats: int) -> tuple[float, float, float]:
    """Median seconds of reading the file, preparing the graph and the forward pass (after a
    warm-up)."""
    from meshgnn.inference.predict import predict_graph, prepare_graph, read_mesh

    times: list[tuple[float, float, float]] = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        sample, _ = read_mesh(package, path, path.parent)
        read = time.perf_counter()
        graph = prepare_graph(package, sample, device)
        sync(device)
        prepared = time.perf_counter()
        predict_graph(package, graph, device, precision)
        sync(device)
        times.append((read - start, prepared - read, time.perf_counter() - prepared))
    return tuple(statistics.median(column) for column in zip(*times[1:]))


def write_sample(source: str, sample, path: Path) -> Path:
    """The sample as `meshgnn data export` writes it (VTU + globals sidecar)."""
    import meshio

    from meshgnn.data.export import sample_to_meshio
    from meshgnn.data.sources import get_source

    spec = get_source(source).spec
    meshio.write(path, sample_to_meshio(sample, spec))
    path.with_suffix(".json").write_text(json.dumps(dict(zip(spec.global_names, sample.globals.tolist()))))
    return path


def folder_throughput(package, source: str, folder: Path, count: int, device: torch.device, workers: int,
                      batch_nodes: int, nodes: int = FOLDER_NODES) -> dict:
    """Meshes/s and nodes/s of `predict_files` on a folder of `count` meshes of about `nodes` nodes with
    `workers` reader processes and batches of `batch_nodes` (timed a second time after a
    warm-up pass)."""
    from meshgnn.inference.predict import predict_files

    inputs = folder / f"{source}_folder"
    if not inputs.is_dir():
        inputs.mkdir()
        for index in range(count):
            sample, _ = timed_generate(source, nodes, seed=2, index=index)
            write_sample(source, sample, inputs / f"mesh_{index:03d}.vtu")
    options = {"workers": workers, "batch_nodes": batch_nodes}
    predict_files([package], [inputs], folder / "warm", device, **options)
    sync(device)
    start = time.perf_counter()
    results = predict_files([package], [inputs], folder / f"out_{device.type}", device, **options)
    sync(device)
    seconds = time.perf_counter() - start
    nodes = sum(r.num_nodes for r in results)
    return {**options, "meshes": len(results), "mean_nodes": nodes / max(len(results), 1), "seconds": seconds,
            "meshes_per_s": len(results) / seconds, "nodes_per_s": nodes / seconds}


def train_quick(out: Path, sources: list[str], overrides: list[str]) -> dict[str, str]:
    """A quickly trained model of each source, through train.py (the real pipeline)."""
    jobs = run_all([Job(source, [f"data={source}", *QUICK_ARGS]) for source in sources], out, overrides, parallel=1)
    failed = [f"{j.name}: {j.error}" for j in jobs.values() if j.error]
    if failed:
        raise SystemExit("--train-quick failed: " + "; ".join(failed))
    return {source: str(out / source) for source in sources}


def parse_models(pairs: list[str]) -> dict[str, str]:
    models = {}
    for pair in pairs:
        source, _, run = pair.partition("=")
        if source not in SOURCES or not run:
            raise SystemExit(f"--model {pair}: expected SOURCE=RUN_DIR with SOURCE one of {', '.join(SOURCES)}")
        models[source] = run
    return models


def accuracy_table(run: str, data_dir: Path, device: torch.device) -> list[dict]:
    """Test rel L2 per precision and pruning level, and its change from fp32 (pp)."""
    from meshgnn.inference.ensemble import evaluate_on_test
    from meshgnn.inference.package import load_model

    rows, reference = [], None
    for precision, prune in ACCURACY_SETTINGS:
        package = load_model(run, prune)
        table = evaluate_on_test([package], data_dir, device, precision)
        errors = {t: 100 * table.metrics[package.name][f"test/{t}/rel_l2"] for t, _ in package.targets}
        reference = reference or errors
        rows.append({"precision": precision, "prune": prune, "rel_l2_pct": errors,
                     "change_pp": {t: e - reference[t] for t, e in errors.items()}})
    return rows


def goals(latencies: list[dict], throughput: list[dict]) -> list[tuple[str, float | None, float, bool | None]]:
    """Issue #19's goals: (goal, measured, target, met); measured None where not run here."""
    def pick(source, device, lo, key, reduce=max):
        values = [r[key] for r in latencies if r["source"] == source and r["device"] == device
                  and r["precision"] == "fp32" and r["nodes"] >= lo]
        return reduce(values) if values else None

    def folder(source, device):
        values = [t["meshes_per_s"] for t in throughput if t["source"] == source and t["device"] == device]
        return values[0] if values else None

    checks = [("heat2d 100k file-to-fields, GPU (ms)", pick("heat2d", "cuda", 80_000, "total_ms"), 60.0, "<="),
              ("heat2d prepare / forward, GPU (x)", pick("heat2d", "cuda", 0, "prep_over_forward"), 2.0, "<="),
              ("heat2d 10k folder, GPU (meshes/s)", folder("heat2d", "cuda"), 50.0, ">="),
              ("heat2d CPU prepare at 100k (ms)", pick("heat2d", "cpu", 80_000, "prepare_ms"), 200.0, "<="),
              ("flow2d speed-up over solver at 10k+, GPU (x)", pick("flow2d", "cuda", 8_000, "speedup", min),
               100.0, ">="),
              ("flow2d speed-up over solver at 10k+, CPU (x)", pick("flow2d", "cpu", 8_000, "speedup", min),
               10.0, ">=")]
    return [(name, value, target, None if value is None else (value <= target if op == "<=" else value >= target))
            for name, value, target, op in checks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], help="SOURCE=RUN_DIR (run dir, checkpoint or package)")
    parser.add_argument("--train-quick", action="store_true", help="train a tiny model of each source first")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES),
                        help="sources --train-quick trains a model of")
    parser.add_argument("--folder-count", type=int, default=64, help="0 skips folder throughput")
    parser.add_argument("--folder-nodes", type=int, default=FOLDER_NODES, help="nodes per folder mesh (about)")
    parser.add_argument("--folder-sources", nargs="+", default=["heat2d"], choices=list(SOURCES),
                        help="sources timed on a folder (flow2d's 64 ~10k-node solves take about an hour here)")
    parser.add_argument("--folder-workers", type=int, nargs="+", default=[default_workers()],
                        help="reader processes of the folder runs, one run each (0 = in-process; default "
                             "`meshgnn predict`'s)")
    parser.add_argument("--batch-nodes", type=int, default=BATCH_NODES, help="nodes per batch of the folder runs")
    parser.add_argument("--accuracy", action="store_true", help="also the accuracy-vs-precision table")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data_cache")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"], help="cuda is skipped without CUDA")
    parser.add_argument("--json", type=Path, default=Path("inference.json"))
    parser.add_argument("overrides", nargs="*", help="extra train.py overrides for --train-quick (after --)")
    args = parser.parse_args()
    from meshgnn.inference.package import load_model

    devices = [torch.device(d) for d in args.devices if d != "cuda" or torch.cuda.is_available()]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models = parse_models(args.model)
        if args.train_quick:
            models = {**train_quick(folder / "runs", args.sources, args.overrides), **models}
        if not models:
            raise SystemExit("give --model SOURCE=RUN_DIR or --train-quick")
        print(machine_line(f"devices {', '.join(d.type for d in devices)}; models {models}"))
        report = {"machine": machine_line(), "models": models, "latency": [], "folder": [], "accuracy": {}}
        print("\n| source | device | nodes | solver (s) | precision | read (ms) | prepare (ms) | forward (ms) "
              "| total (ms) | speed-up | prepare / forward |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for source, run in models.items():
            package = load_model(run, 0.0)
            for nodes in args.sizes:
                sample, solver = timed_generate(source, nodes, seed=1)
                path = write_sample(source, sample, folder / f"{source}_{nodes}.vtu")
                for device in devices:
                    for precision in args.precisions:
                        read, prep, forward = latency(package, path, device, precision, args.repeats)
                        total = read + prep + forward
                        row = {"source": source, "device": device.type, "nodes": sample.num_nodes,
                               "solver_s": solver, "precision": precision, "read_ms": 1e3 * read,
                               "prepare_ms": 1e3 * prep, "forward_ms": 1e3 * forward, "total_ms": 1e3 * total,
                               "speedup": solver / total, "prep_over_forward": prep / forward}
                        report["latency"].append(row)
                        print(f"| {source} | {device.type} | {sample.num_nodes:,} | {solver:.3f} | {precision} | "
                              f"{row['read_ms']:.1f} | {row['prepare_ms']:.1f} | {row['forward_ms']:.1f} | "
                              f"{row['total_ms']:.1f} | {row['speedup']:.1f}x | {row['prep_over_forward']:.1f}x |",
                              flush=True)
            for device in devices if args.folder_count and source in args.folder_sources else []:
                for workers in args.folder_workers:
                    row = {"source": source, "device": device.type,
                           **folder_throughput(package, source, folder, args.folder_count, device, workers,
                                               args.batch_nodes, args.folder_nodes)}
                    report["folder"].append(row)
            if args.accuracy:
                report["accuracy"][source] = accuracy_table(run, args.data_dir, devices[-1])
    if report["folder"]:
        print("\n| source | device | workers | batch nodes | meshes | mean nodes | seconds | meshes/s | nodes/s |"
              "\n|---|---|---|---|---|---|---|---|---|")
        for r in report["folder"]:
            print(f"| {r['source']} | {r['device']} | {r['workers']} | {r['batch_nodes']:,} | {r['meshes']} | "
                  f"{r['mean_nodes']:,.0f} | {r['seconds']:.2f} | {r['meshes_per_s']:.1f} | {r['nodes_per_s']:,.0f} |")
    for source, rows in report["accuracy"].items():
        targets = list(rows[0]["rel_l2_pct"])
        print(f"\n{source} accuracy | precision | prune | " + " | ".join(f"{t} rel L2 (%) | change (pp)" for t in targets))
        for r in rows:
            print(f"| {r['precision']} | {r['prune']:g} | " + " | ".join(
                f"{r['rel_l2_pct'][t]:.3f} | {r['change_pp'][t]:+.3f}" for t in targets) + " |")
    report["goals"] = [{"goal": g, "measured": v, "target": t, "met": m} for g, v, t, m in
                       goals(report["latency"], report["folder"])]
    print("\n| goal | measured | target | status |\n|---|---|---|---|")
    for g in report["goals"]:
        status = "not measured" if g["met"] is None else ("met" if g["met"] else "missed") + \
            f" ({g['measured'] / g['target']:.2f}x of target)"
        measured = "-" if g["measured"] is None else f"{g['measured']:.1f}"
        print(f"| {g['goal']} | {measured} | {g['target']:g} | {status} |")
    args.json.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
