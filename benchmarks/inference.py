"""Inference benchmark: what each precision and pruning level costs in accuracy and gains in
time, against the FEM solver it replaces.

For a trained model (run directory, checkpoint or package of a heat2d run):
  - test rel L2 per target on the model's test split, for each setting, and its change from
    fp32 in percentage points (target: bf16/fp16 within 0.1 pp);
  - latency per mesh for heat2d meshes of about 1k, 10k and 100k nodes, as `meshgnn predict`
    spends it: reading the VTU file, preparing the graph (edges, analytic baseline, features,
    coarse levels, normalisation) and the forward pass, medians of --repeats;
  - the FEM solve of the same meshes (scikit-fem assembly + sparse solve, timed inside the
    generator; meshing excluded) and the speed-up of the surrogate over it, end to end (file
    to prediction) and for the forward pass alone.

Usage: python benchmarks/inference.py --model RUN_DIR [--device cpu|cuda] [--sizes 1000 10000 100000]
       [--repeats 5] [--latency-precisions fp32 bf16 fp16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from table import machine_line  # noqa: E402

REFERENCE_NODES, REFERENCE_MESH_SIZE = 19_000, 0.0118  # heat2d: nodes ~ 1 / mesh_size^2
SETTINGS = [("fp32", 0.0), ("bf16", 0.0), ("fp16", 0.0), ("fp32", 0.2), ("bf16", 0.2)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_generate(nodes: int, seed: int):
    """A heat2d sample of about `nodes` nodes and the seconds its FEM solve took."""
    from meshgnn.data.sources import get_source, heat2d

    mesh_size = REFERENCE_MESH_SIZE * (REFERENCE_NODES / nodes) ** 0.5
    solve, seconds = heat2d.solve_heat, []

    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = solve(*args, **kwargs)
        seconds.append(time.perf_counter() - start)
        return out

    heat2d.solve_heat = timed
    try:
        sample = get_source("heat2d").generate(0, seed, mesh_size, 3)
    finally:
        heat2d.solve_heat = solve
    return sample, seconds[0]


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
        graph = prepare_graph(package, sample)
        prepared = time.perf_counter()
        predict_graph(package, graph, device, precision)
        sync(device)
        times.append((read - start, prepared - read, time.perf_counter() - prepared))
    return tuple(statistics.median(column) for column in zip(*times[1:]))


def write_sample(sample, folder: Path) -> Path:
    """The sample as `meshgnn data export` writes it (VTU + globals sidecar)."""
    import json

    import meshio

    from meshgnn.data.export import sample_to_meshio
    from meshgnn.data.sources import heat2d

    path = folder / f"mesh_{sample.num_nodes}.vtu"
    meshio.write(path, sample_to_meshio(sample, heat2d.SPEC))
    path.with_suffix(".json").write_text(json.dumps(dict(zip(heat2d.SPEC.global_names,
                                                             sample.globals.tolist()))))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="heat2d run directory, checkpoint or package")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--latency-precisions", nargs="+", default=["fp32", "bf16", "fp16"],
                        help="precisions to time (all are evaluated for accuracy)")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data_cache")
    args = parser.parse_args()
    from meshgnn.inference.ensemble import evaluate_on_test
    from meshgnn.inference.package import load_model

    device = torch.device(args.device)
    variants = {(p, prune): load_model(args.model, prune) for p, prune in SETTINGS}
    targets = [n for n, _ in variants[("fp32", 0.0)].targets]

    print(machine_line(f"model {args.model}, device {device}"))
    print("| precision | prune | " + " | ".join(f"{t} rel L2 (%)" for t in targets)
          + " | " + " | ".join(f"{t} change (pp)" for t in targets) + " |")
    print("|---|---|" + "---|" * (2 * len(targets)))
    reference = None
    for (precision, prune), package in variants.items():
        table = evaluate_on_test([package], args.data_dir, device, precision)
        errors = [100 * table.metrics[package.name][f"test/{t}/rel_l2"] for t in targets]
        reference = reference or errors
        print(f"| {precision} | {prune:g} | " + " | ".join(f"{e:.3f}" for e in errors) + " | "
              + " | ".join(f"{e - r:+.3f}" for e, r in zip(errors, reference)) + " |")

    print("\n| nodes | FEM solve (s) | precision | prune | read (ms) | prepare (ms) | forward (ms) | "
          "total (ms) | speed-up | speed-up, forward only |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for nodes in args.sizes:
            sample, fem = timed_generate(nodes, seed=1)
            path = write_sample(sample, Path(folder))
            for (precision, prune), package in variants.items():
                if precision not in args.latency_precisions:
                    continue
                read, prep, forward = latency(package, path, device, precision, args.repeats)
                total = read + prep + forward
                print(f"| {sample.num_nodes:,} | {fem:.3f} | {precision} | {prune:g} | {1e3 * read:.1f} | "
                      f"{1e3 * prep:.1f} | {1e3 * forward:.1f} | {1e3 * total:.1f} | {fem / total:.1f}x | "
                      f"{fem / forward:.1f}x |",
                      flush=True)


if __name__ == "__main__":
    main()
