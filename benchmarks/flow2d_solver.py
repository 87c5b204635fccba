"""The flow2d solver (meshgnn.data.navier_stokes): accuracy and cost.

  - accuracy: Kovasznay flow at Re 40 on [-0.5, 1] x [-0.5, 1.5] (exact velocity on every
    side), L2 errors of velocity and pressure by quadrature on the P2/P1 fields under uniform
    refinement, and the observed orders (Taylor-Hood: 3 and 2);
  - cost: Poiseuille inflow (peak 1.5) past one circular obstacle (diameter 0.3, Re 30 on it
    with the mean speed 1) in the channel [0, 3] x [0, 1], meshed with Triangle at about
    --sizes vertices: dofs, Newton iterations, assembly / sparse LU seconds, total seconds of
    the solve (meshing excluded).

Usage: python benchmarks/flow2d_solver.py [--refinements 1 2 3 4] [--sizes 1000 10000 30000] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from table import machine_line  # noqa: E402

REYNOLDS = 40.0
LENGTH, PEAK, VISCOSITY = 3.0, 1.5, 0.01
OBSTACLE = (0.8, 0.5, 0.15)
REFERENCE_VERTICES, REFERENCE_MESH_SIZE = 8_829, 0.025  # this channel: vertices ~ 1 / mesh_size^2


def kovasznay_rows(refinements: list[int]) -> list[dict]:
    from skfem import MeshTri

    from meshgnn.data.navier_stokes import kovasznay, l2_errors, solve_navier_stokes_fields

    velocity, pressure = kovasznay(REYNOLDS)
    rows = []
    for level in refinements:
        mesh = MeshTri.init_tensor(np.linspace(-0.5, 1.0, 4), np.linspace(-0.5, 1.5, 5)).refined(level)
        fields = solve_navier_stokes_fields(mesh.p.T, mesh.t.T, 1 / REYNOLDS, mesh.facets[:, mesh.boundary_facets()].T,
                                            velocity)
        u_error, p_error = l2_errors(fields, velocity, pressure)
        rows.append({"h": 0.5 / 2**level, "vertices": int(mesh.nvertices), "iterations": fields.iterations,
                     "velocity_l2": u_error, "pressure_l2": p_error})
    for coarse, fine in zip(rows, rows[1:]):
        ratio = coarse["h"] / fine["h"]
        fine["velocity_order"] = float(np.log(coarse["velocity_l2"] / fine["velocity_l2"]) / np.log(ratio))
        fine["pressure_order"] = float(np.log(coarse["pressure_l2"] / fine["pressure_l2"]) / np.log(ratio))
    print(f"Kovasznay flow, Re {REYNOLDS:g}: L2 errors on the P2/P1 fields\n")
    print("| h | vertices | Newton iterations | velocity L2 | order | pressure L2 | order |\n"
          "|---|---|---|---|---|---|---|")
    for row in rows:
        orders = [f"{row[k]:.2f}" if k in row else "" for k in ("velocity_order", "pressure_order")]
        print(f"| 1/{1 / row['h']:.0f} | {row['vertices']:,} | {row['iterations']} | {row['velocity_l2']:.3e} | "
              f"{orders[0]} | {row['pressure_l2']:.3e} | {orders[1]} |", flush=True)
    return rows


def channel_rows(sizes: list[int]) -> list[dict]:
    from meshgnn.data.mesher import RIGHT, Circle, mesh_plate
    from meshgnn.data.navier_stokes import relative_divergence, solve_navier_stokes_fields

    def inflow(x: np.ndarray) -> np.ndarray:
        inlet = np.isclose(x[0], 0.0)
        return np.stack([np.where(inlet, 4 * PEAK * x[1] * (1 - x[1]), 0.0), np.zeros_like(x[0])])

    print(f"\nchannel [0, {LENGTH:g}] x [0, 1] past one circle (r {OBSTACLE[2]:g}), nu {VISCOSITY:g}\n")
    print("| vertices | dofs | Newton iterations | assembly (s) | LU solves (s) | total (s) | div u / grad u |\n"
          "|---|---|---|---|---|---|---|")
    rows = []
    for vertices in sizes:
        mesh = mesh_plate(LENGTH, [Circle(*OBSTACLE)], REFERENCE_MESH_SIZE * (REFERENCE_VERTICES / vertices) ** 0.5)
        start = time.perf_counter()
        walls = mesh.facets[mesh.facet_label != RIGHT]
        fields = solve_navier_stokes_fields(mesh.points, mesh.triangles, VISCOSITY, walls, inflow)
        total = time.perf_counter() - start
        row = {"vertices": len(mesh.points), "dofs": int(fields.velocity_basis.N + fields.pressure_basis.N),
               "iterations": fields.iterations, "assembly_s": fields.assembly_seconds, "solve_s": fields.solve_seconds,
               "total_s": total, "divergence": relative_divergence(fields)}
        rows.append(row)
        print(f"| {row['vertices']:,} | {row['dofs']:,} | {row['iterations']} | {row['assembly_s']:.2f} | "
              f"{row['solve_s']:.2f} | {row['total_s']:.2f} | {row['divergence']:.2e} |", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--refinements", type=int, nargs="+", default=[1, 2, 3, 4],
                        help="uniform refinements of the Kovasznay mesh (h = 1/4 at 1)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 30_000],
                        help="about how many vertices each channel mesh has")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()
    machine = machine_line("flow2d solver: Taylor-Hood P2/P1, Newton, SuperLU")
    print(machine)
    report = {"machine": machine.strip(), "kovasznay": kovasznay_rows(args.refinements),
              "channel": channel_rows(args.sizes)}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
