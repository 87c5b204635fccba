"""The tables of benchmarks/generalization.py: per run, set and target the rel L2 mean and
median, the mean's ratio to the run's in_dist mean, the truth's own error; the goal check
of issue #18's goals, met or missed by how much; and where the in_dist error sits."""

from __future__ import annotations

from typing import Any

import numpy as np

from error_location import summarise as summarise_location
from table import machine_line

# Issue #18's goals: (sets named so, the goal's name, the most their mean rel L2 may be in
# multiples of the in_dist mean).
RATIO_GOALS = (("refine_2x", "2x finer", 1.2), ("refine_4x", "4x finer", 1.3), ("family:", "new family", 1.3),
               ("beyond_", "20 % beyond a range", 1.5))
# Its absolute in-distribution goals (mean rel L2): the CPU default's, and the GPU budget's.
ABSOLUTE_GOALS = {
    "cpu": {"heat2d": {"temperature": 0.05, "heat_flux": 0.15}},
    "cuda": {"heat2d": {"temperature": 0.0085, "heat_flux": 0.031},
             "elasticity2d": {"displacement": 0.01, "von_mises": 0.03}},
}


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run, set and target: meshes, rel L2 mean and median, mean / the run's
    in_dist mean, the median of per-file ratios (sets paired file by file with in_dist), and
    the truth's own rel L2 mean and median (where measured)."""
    in_dist = {(r["run"], t): e for r in results if r["set"] == "in_dist" for t, e in r["errors"].items()}
    rows = []
    for result in results:
        for target, errors in result["errors"].items():
            base = in_dist[(result["run"], target)]
            row = {"run": result["run"], "variant": result["variant"], "model": result["model"],
                   "data": result["data"], "set": result["set"], "target": target, "meshes": len(errors),
                   "mean": float(np.mean(errors)), "median": float(np.median(errors)),
                   "ratio": float(np.mean(errors) / np.mean(base))}
            if result["paired"]:
                row["file_ratio_median"] = float(np.median(np.asarray(errors) / np.asarray(base)))
            truth = result["truth"].get(target)
            if truth:
                row["truth_mean"], row["truth_median"] = float(np.mean(truth)), float(np.median(truth))
            rows.append(row)
    return rows


def locations(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per run, located set and target, where the model's error and the truth's sit
    (error_location.summarise of its samples; truth None where not measured)."""
    return [{"run": r["run"], "variant": r["variant"], "model": r["model"], "data": r["data"], "set": r["set"],
             "target": target, "prediction": summarise_location(located),
             "truth": summarise_location(r["truth_located"][target]) if r["truth_located"].get(target) else None}
            for r in results for target, located in r.get("located", {}).items()]


def print_locations(entries: list[dict[str, Any]]) -> None:
    """One table per run: every target's regions (shares of nodes and of the squared error,
    pooled rel L2, the truth's the same), then its per-sample concentration line."""
    for run in dict.fromkeys(e["run"] for e in entries):
        mine = [e for e in entries if e["run"] == run]
        print(f"\n### error location: {mine[0]['data']}, {run}, {mine[0]['set']} "
              f"({mine[0]['prediction']['meshes']} meshes)\n")
        print("| target | region | node share | error share | rel L2 | truth error share | truth rel L2 |")
        print("|---|---|---|---|---|---|---|")
        for entry in mine:
            truth = (entry["truth"] or {}).get("regions", {})
            for name, r in entry["prediction"]["regions"].items():
                t = truth.get(name, {})
                print(f"| {entry['target']} | {name} | {r['node_share']:.3f} | {r['error_share']:.3f} | "
                      f"{_cell(r['rel_l2'], '.4f')} | {_cell(t.get('error_share'), '.3f')} | "
                      f"{_cell(t.get('rel_l2'), '.4f')} |")
        for entry in mine:
            p = entry["prediction"]
            print(f"{entry['target']}: Spearman(per-mesh rel L2, RMS |true|) = "
                  f"{_cell(p['spearman_rel_l2_vs_rms_true'], '+.3f') or 'n/a (< 3 meshes)'}; the worst 10 % of meshes "
                  f"hold {100 * p['worst_10pct_share_of_mean_rel_l2']:.1f} % of the mean rel L2")


def goal_checks(rows: list[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    """Every goal that applies to a row: {run, variant, model, set, target, goal, value, limit,
    unit, met, verdict}; the in_dist absolute goals are the GPU budget's on cuda, else the CPU's."""
    checks = []
    for row in rows:
        for prefix, goal, limit in RATIO_GOALS:
            if row["set"].startswith(prefix):
                checks.append(_check(row, f"{goal} <= {limit:g}x in_dist", row["ratio"], limit, "x"))
        absolute = ABSOLUTE_GOALS["cuda" if device.startswith("cuda") else "cpu"].get(row["data"], {})
        if row["set"] == "in_dist" and row["target"] in absolute:
            checks.append(_check(row, f"in_dist rel L2 <= {absolute[row['target']]:g} ({device})", row["mean"],
                                 absolute[row["target"]], ""))
    return checks


def worst_per_goal(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per run, goal and target the check furthest from its limit (e.g. the worst of the
    beyond-a-range sets), in the order the goals come."""
    worst: dict[tuple[str, str, str], dict[str, Any]] = {}
    for check in checks:
        key = (check["run"], check["goal"], check["target"])
        if key not in worst or check["value"] / check["limit"] > worst[key]["value"] / worst[key]["limit"]:
            worst[key] = check
    return list(worst.values())


def _check(row: dict[str, Any], goal: str, value: float, limit: float, unit: str) -> dict[str, Any]:
    met = value <= limit
    verdict = "met" if met else f"missed by {100 * (value / limit - 1):.0f} %"
    return {"run": row["run"], "variant": row["variant"], "model": row["model"], "set": row["set"],
            "target": row["target"], "goal": goal, "value": value, "limit": limit, "unit": unit, "met": met,
            "verdict": verdict}


def print_report(summary: dict[str, Any], rows: list[dict[str, Any]], goals: list[dict[str, Any]]) -> None:
    budget = summary["budget"]
    trained = "" if budget["runs_given"] else f"{budget['epochs']} epochs x {budget['num_samples']} samples per run, "
    print(machine_line(f"{trained}device {budget['device']}, {budget['threads']} threads per run, "
                       f"{budget['parallel']} runs at once, {budget['eval_samples']} meshes per set, extra overrides: "
                       f"{' '.join(budget['overrides']) or 'none'}"))
    print("| run | variant | model | epochs | samples | train wall time | run's results.json test rel L2 |")
    print("|---|---|---|---|---|---|---|")
    for run in summary["runs"]:
        wall = "given" if run["seconds"] is None else f"{run['seconds']:.0f} s"
        tests = ", ".join(f"{k.split('/')[1]} {v:.4f}" for k, v in run.get("results", {}).get("model", {}).items()
                          if k.startswith("test/") and k.endswith("/rel_l2"))
        print(f"| {run['name']} | {run['variant']} | {run['model']} | {run.get('epochs', '')} | "
              f"{run.get('num_samples', '')} | {wall} | {run['error'] or tests} |")
    shown = set()
    for run in (r for r in summary["runs"] if r.get("sets") and r["variant"] not in shown):
        shown.add(run["variant"])
        print(f"\n### {run['data']['name']}, {run['variant']}: evaluation sets (evaluation times of {run['model']})\n")
        print("| set | meshes | seed | mesh_size | families | generation | evaluation | notes |")
        print("|---|---|---|---|---|---|---|---|")
        for name, s in run["sets"].items():
            print(f"| {name} | {s['num_meshes']} | {s['seed']} | {s['mesh_size']} | {','.join(s['families'])} | "
                  f"{s['generation_s']:.1f} s | {s['evaluation_s']:.1f} s | {'; '.join(s['notes'])} |")
    for variant in dict.fromkeys(row["variant"] for row in rows):
        variant_rows = [r for r in rows if r["variant"] == variant]
        print(f"\n### {variant_rows[0]['data']}, {variant}\n")
        print("| model | set | target | meshes | rel L2 mean | rel L2 median | mean / in_dist | "
              "per-file ratio median | truth rel L2 mean | truth rel L2 median |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for row in variant_rows:
            print(f"| {row['model']} | {row['set']} | {row['target']} | {row['meshes']} | {row['mean']:.4f} | "
                  f"{row['median']:.4f} | {row['ratio']:.3f} | {_cell(row.get('file_ratio_median'), '.3f')} | "
                  f"{_cell(row.get('truth_mean'), '.4f')} | {_cell(row.get('truth_median'), '.4f')} |")
    print("\n### goals (issue #18): the worst set of each goal (every set's check: generalization.json)\n")
    print("| variant | model | goal | target | worst set | value | verdict |\n|---|---|---|---|---|---|---|")
    for g in worst_per_goal(goals):
        print(f"| {g['variant']} | {g['model']} | {g['goal']} | {g['target']} | {g['set']} | "
              f"{g['value']:.4g}{g['unit']} | {g['verdict']} |")


def _cell(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)
