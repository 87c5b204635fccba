"""Mesh-file reading benchmark (issue #19, file to fields): what reading one VTU costs beyond
meshio's own parse, per mesh size.

Per --sizes (nodes; heat2d meshes generated and written as `meshgnn data export` writes them):
  - meshio.read of the file;
  - check_geometry on its points and cells (duplicate points, zero-measure, inverted and
    overlapping cells);
  - read_file: the whole reader a prediction runs (meshio, geometry, fields, node types,
    globals; `read_mesh` adds only the globals splice);
minimums of --repeats (the machine is shared, so the least-disturbed run is the measure),
and read_file's cost beyond meshio.

Usage: python benchmarks/mesh_read.py [--sizes 1000 10000 100000] [--repeats 7] [--folder DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from inference import timed_generate, write_sample  # noqa: E402
from table import machine_line  # noqa: E402

SOURCE = "heat2d"


def reader_spec(folder: Path):
    """The FolderSpec and component counts a heat2d package reads its files with."""
    from meshgnn.data.export import NODE_TYPE_FIELD
    from meshgnn.data.folder_spec import FolderSpec
    from meshgnn.data.sources import get_source

    spec = get_source(SOURCE).spec
    dims = {f.name: f.dim for f in (*spec.inputs, *spec.targets)} | {g: 1 for g in spec.global_names}
    folder_spec = FolderSpec(path=folder, inputs=tuple(f.name for f in spec.inputs),
                             targets=tuple(f.name for f in spec.targets), node_type_field=NODE_TYPE_FIELD,
                             node_type_values=tuple(range(len(spec.node_types))), globals=spec.global_names,
                             targets_required=False)
    return folder_spec, dims


def fastest(call, repeats: int) -> float:
    """Least seconds of `repeats` calls, after one warm-up call."""
    call()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def measure(path: Path, repeats: int) -> dict:
    from meshgnn.data.mesh_geometry import check_geometry
    from meshgnn.data.mesh_read import meshio_read, read_file

    spec, dims = reader_spec(path.parent)
    sample, _ = read_file(path, spec, dims)
    row = {"nodes": sample.num_nodes, "cells": sum(len(c) for _, c in sample.cells),
           "meshio": fastest(lambda: meshio_read(path), repeats),
           "geometry": fastest(lambda: check_geometry(sample.points, sample.cells), repeats),
           "read_file": fastest(lambda: read_file(path, spec, dims), repeats)}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--folder", type=Path, help="where the meshes are written (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meshgnn-read-") as scratch:
        folder = args.folder or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for nodes in args.sizes:
            path = folder / f"{SOURCE}_{nodes}.vtu"
            if not path.exists():
                write_sample(SOURCE, timed_generate(SOURCE, nodes, seed=1)[0], path)
            rows.append(measure(path, args.repeats))
    print(machine_line(f"{SOURCE} VTU (zlib), least of {args.repeats} runs"))
    print("| nodes | cells | meshio.read ms | check_geometry ms | read_file ms | beyond meshio ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['nodes']:,} | {r['cells']:,} | {1e3 * r['meshio']:.1f} | {1e3 * r['geometry']:.1f} | "
              f"{1e3 * r['read_file']:.1f} | {1e3 * (r['read_file'] - r['meshio']):.1f} |")


if __name__ == "__main__":
    main()
