"""heat2d's Shepard baseline: accuracy and cost for each data.shepard_neighbours.

  - accuracy: test-style rel L2 (per mesh, then the mean) of the baseline's temperature and
    heat flux against the FEM solution, on the first --samples meshes of the default dataset
    (conf/data/heat2d.yaml: seed, mesh_size, max_holes); "all" weights every Dirichlet node,
    which is data version 2's global baseline;
  - cost: milliseconds of the baseline on heat2d meshes of about --sizes nodes (median of
    --repeats), and with --model RUN_DIR|PACKAGE of a heat2d model, of the whole graph
    preparation `meshgnn predict` does (edges, baseline at the model's own setting, features,
    coarse levels, normalisation).

Usage: python benchmarks/heat2d_baseline.py [--samples 1000] [--neighbours 4 8 16 32 64 all]
       [--sizes 1000 10000 100000] [--repeats 3] [--model RUN_DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from table import machine_line  # noqa: E402

ALL = "all"
REFERENCE_NODES, REFERENCE_MESH_SIZE = 19_000, 0.0118  # heat2d: nodes ~ 1 / mesh_size^2 (as inference.py)


def neighbours_of(choice: str, sample) -> int:
    """A --neighbours entry as the knob's value: "all" is every Dirichlet node of the mesh."""
    from meshgnn.data.sources import heat2d

    if choice != ALL:
        return int(choice)
    return int((sample.node_type == heat2d.SPEC.node_types.index("dirichlet")).sum())


def rel_l2(guess: np.ndarray, true: np.ndarray) -> float:
    return float(np.linalg.norm(guess - true) / np.linalg.norm(true))


def median_seconds(work, repeats: int) -> float:
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def accuracy_table(choices: list[str], count: int) -> None:
    from omegaconf import OmegaConf

    from meshgnn.conf_location import conf_dir
    from meshgnn.data.generate import generate_samples
    from meshgnn.data.sources import get_source

    data = OmegaConf.load(conf_dir() / "data" / "heat2d.yaml")
    source = get_source("heat2d")
    samples = generate_samples(source, count, data.seed, data.mesh_size, data.max_holes, workers=0)
    print(f"accuracy on the first {count} meshes of the default heat2d dataset (mesh_size {data.mesh_size}, "
          f"mean {np.mean([s.num_nodes for s in samples]):.0f} nodes)\n")
    print("| shepard_neighbours | temperature rel L2 (%) | heat_flux rel L2 (%) |\n|---|---|---|")
    for choice in choices:
        errors = {"temperature": [], "heat_flux": []}
        for sample in samples:
            guess = source.baseline(sample, {"shepard_neighbours": neighbours_of(choice, sample)})
            for name, values in errors.items():
                values.append(rel_l2(guess[name], sample.targets[name]))
        print(f"| {choice} | {100 * np.mean(errors['temperature']):.2f} | {100 * np.mean(errors['heat_flux']):.2f} |",
              flush=True)


def cost_table(choices: list[str], sizes: list[int], repeats: int, model: str | None) -> None:
    from meshgnn.data.sources import get_source

    source = get_source("heat2d")
    package = None
    if model:
        from meshgnn.inference.package import load_model
        from meshgnn.inference.predict import prepare_graph

        package = load_model(model, 0.0)
    header = " | ".join(f"k={c} (ms)" for c in choices)
    extra = f" | prepare_graph, k={package.data['shepard_neighbours']} (ms)" if package else ""
    print(f"\n| nodes | {header}{extra} |\n|---|" + "---|" * (len(choices) + bool(package)))
    for nodes in sizes:
        mesh_size = REFERENCE_MESH_SIZE * (REFERENCE_NODES / nodes) ** 0.5
        sample = source.generate(0, 1, mesh_size, 3)
        cells = [median_seconds(lambda c=c: source.baseline(sample, {"shepard_neighbours": neighbours_of(c, sample)}),
                                repeats) for c in choices]
        if package is not None:
            bare = replace(sample, baseline={})  # as a mesh file comes: predict computes the baseline
            cells.append(median_seconds(lambda: prepare_graph(package, bare), repeats))
        print(f"| {sample.num_nodes:,} | " + " | ".join(f"{1e3 * s:.1f}" for s in cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1000, help="meshes of the default dataset (default 1000)")
    parser.add_argument("--neighbours", nargs="+", default=["4", "8", "16", "32", "64", ALL])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", help="heat2d run directory, checkpoint or package: also time prepare_graph")
    args = parser.parse_args()
    print(machine_line("heat2d Shepard baseline"))
    accuracy_table(args.neighbours, args.samples)
    cost_table(args.neighbours, args.sizes, args.repeats, args.model)


if __name__ == "__main__":
    main()
