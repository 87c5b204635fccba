"""Generalization benchmark (issue #18): how a trained model holds up on meshes it never saw:
2x / 4x finer meshes of its test parts, geometry families it did not train on, and physical
parameters at and 20 % beyond its training ranges (the sets: benchmarks/generalization_sets.py).

It trains, through `train.py` subprocesses, every model x training-data variant:
- `mixture`: the data config's defaults (the default mixture of families and mesh sizes);
- `plates`: the data before issue #18 (`data.families=[plate] data.hole_shapes=[circle]
  data.mesh_size=0.08`): what the mixture costs in-distribution and buys off it;
- `held_out`: the mixture without the `--held-out` families.
("default" model = no model override; any other name = `model=<name>`.) Extra train.py
overrides go to every run, before the variant's own data keys, and into the run names. With
`--runs DIR...` it evaluates those run directories instead of training.

Every model is loaded as a user loads it (`load_model(run_dir)`: best.ckpt) and predicts each
sample through the real prediction path (`predict_sample`, `errors_against`). It prints per
variant, model, set and target the rel L2 mean and median and the mean's ratio to the
model's in_dist mean (refinements: also the median of the per-file ratios), the truth's own
discretisation error next to it, a goal check of issue #18's goals, the machine, the budget
and each run's wall time; on in_dist, where each model's error (and the truth's) sits
(benchmarks/error_location.py: per node type, boundary-distance band and near corners); and
writes it all to <out>/generalization.json.

Usage:
    python benchmarks/generalization.py [--data heat2d] [--models default meshgraphnet]
        [--epochs 4] [--num-samples 1000] [--eval-samples 100] [--eval-seed 1000]
        [--device cpu] [--threads 2] [--parallel 1] [--gen-workers 0]
        [--held-out l_shape tapered] [--variants mixture plates held_out] [--out DIR]
        [--runs DIR ...] [-- extra train.py overrides]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from error_location import locate  # noqa: E402
from generalization_report import goal_checks, locations, print_locations, print_report, summarise  # noqa: E402
from generalization_sets import EvalSet, eval_sets, generate  # noqa: E402
from table import machine_line  # noqa: E402
from train_jobs import Job, compose_args, pregenerate, run_all  # noqa: E402

from meshgnn.data.geometry import FAMILIES  # noqa: E402
from meshgnn.inference.package import Package, load_model  # noqa: E402
from meshgnn.inference.predict import errors_against, predict_sample  # noqa: E402

VARIANTS = ("mixture", "plates", "held_out")
PLATES = ["data.families=[plate]", "data.hole_shapes=[circle]", "data.mesh_size=0.08"]


def variant_overrides(variant: str, data: str, extras: list[str], held_out: list[str]) -> list[str]:
    """The data keys that make a training-data variant (module doc)."""
    if variant == "plates":
        return PLATES
    if variant == "held_out":
        mixture = list(compose_args([f"data={data}", *extras]).data.families)
        unknown = [f for f in held_out if f not in mixture]
        kept = [f for f in mixture if f not in held_out]
        if unknown:
            raise SystemExit(f"--held-out {' '.join(unknown)}: not in the {data} mixture's data.families "
                             f"({', '.join(mixture)}); hold out some of those")
        if not kept:
            raise SystemExit(f"--held-out {' '.join(held_out)}: holds out every family of the {data} mixture; "
                             "keep at least one to train on")
        return [f"data.families=[{','.join(kept)}]"]
    return []


def run_name(data: str, variant: str, model: str, extras: list[str]) -> str:
    """`<data>/<variant>/<model>`, then the extra overrides (made path- and Hydra-safe)."""
    suffix = "".join("+" + re.sub(r"[^A-Za-z0-9._-]", "-", extra) for extra in extras)
    return f"{data}/{variant}/{model}{suffix}"


def plan(args: argparse.Namespace) -> list[tuple[str, str, Job]]:
    """(variant, model, job) of every training run."""
    budget = [f"data={args.data}", f"trainer.epochs={args.epochs}", f"data.num_samples={args.num_samples}"]
    planned = []
    for variant in args.variants:
        keys = variant_overrides(variant, args.data, args.overrides, args.held_out)
        for model in args.models:
            chosen = [] if model == "default" else [f"model={model}"]
            planned.append((variant, model, Job(run_name(args.data, variant, model, args.overrides),
                                                [*budget, *chosen, *args.overrides, *keys])))
    return planned


def evaluate(package: Package, evalset: EvalSet,
             device: torch.device) -> tuple[dict[str, list[float]], dict[str, list[dict[str, Any]]]]:
    """Per target, the model's rel L2 on every sample of the set, in the set's order; and,
    where the set says `locate`, where each sample's error sits (error_location.locate)."""
    errors: dict[str, list[float]] = {}
    located: dict[str, list[dict[str, Any]]] = {}
    node_types = package.features.source.node_types
    for sample in evalset.samples:
        (pred,) = predict_sample([package], sample, device)
        for target, e in errors_against(pred, sample.targets).items():
            errors.setdefault(target, []).append(e["rel_l2"])
            if evalset.locate:
                located.setdefault(target, []).append(locate(sample.points, sample.cells, sample.node_type,
                                                             pred[target].double().cpu().numpy(),
                                                             sample.targets[target], node_types))
    return errors, located


def runs_to_evaluate(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Train (or take `--runs`: variant = a run directory's parent folder's name, model = its
    own, as in this benchmark's <out>/<data>/<variant>/<model>) and list
    {name, variant, model, run_dir, seconds (None: given), error}."""
    if args.runs:
        return [{"name": f"{d.parent.name}/{d.name}", "variant": d.parent.name, "model": d.name,
                 "run_dir": d.resolve(), "seconds": None, "error": ""} for d in args.runs]
    common = [f"trainer.device={args.device}", f"trainer.threads={args.threads}"]
    planned = plan(args)
    jobs = [job for _, _, job in planned]
    pregenerate(jobs, args.out, common)
    done = run_all(jobs, args.out, common, args.parallel)
    return [{"name": job.name, "variant": variant, "model": model, "run_dir": args.out / job.name,
             "seconds": done[job.name].seconds, "error": done[job.name].error} for variant, model, job in planned]


def evaluate_runs(runs: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every run's per-sample errors on each of its sets (generated once for all the runs whose
    training data draws them alike); each run's record gains its data, budget and sets."""
    device = torch.device(args.device)
    sets: dict[str, EvalSet] = {}
    results = []
    for run in (r for r in runs if not r["error"]):
        package = load_model(run["run_dir"])
        config = OmegaConf.load(run["run_dir"] / ".hydra" / "config.yaml")
        results_json = run["run_dir"] / "results.json"
        run.update(data=package.data, epochs=config.trainer.epochs, num_samples=package.data["num_samples"],
                   results=json.loads(results_json.read_text()) if results_json.is_file() else {}, sets={})
        for evalset in eval_sets(package.data, args.eval_samples, args.eval_seed):
            evalset = sets.setdefault(evalset.key(), evalset)
            if not evalset.samples:
                generate(evalset, args.gen_workers)
                print(f"  {run['variant']}: {evalset.name}, {len(evalset.samples)} meshes generated in "
                      f"{evalset.seconds:.1f} s", flush=True)
            tick = time.perf_counter()
            errors, located = evaluate(package, evalset, device)
            run["sets"][evalset.name] = {**evalset.describe(), "evaluation_s": round(time.perf_counter() - tick, 2)}
            truth = {t: [e[t] for e in evalset.truth_errors] for t in errors} if evalset.truth else {}
            results.append({"run": run["name"], "variant": run["variant"], "model": run["model"],
                            "data": package.data["name"], "set": evalset.name, "paired": evalset.paired,
                            "errors": errors, "truth": truth, "located": located,
                            "truth_located": {t: [s[t] for s in evalset.truth_located] for t in located}})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="heat2d", choices=["heat2d", "elasticity2d"])
    parser.add_argument("--models", nargs="+", default=["default", "meshgraphnet"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--eval-samples", type=int, default=100, help="meshes per evaluation set")
    parser.add_argument("--eval-seed", type=int, default=1000,
                        help="data seed of the sets other than in_dist and its refinements")
    parser.add_argument("--device", default="cpu", help="training and evaluation device (cpu, cuda)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per training run and for evaluation")
    parser.add_argument("--parallel", type=int, default=1, help="training runs at once")
    parser.add_argument("--gen-workers", type=int, default=0, help="processes generating the sets (0 = every core)")
    parser.add_argument("--held-out", nargs="+", default=["l_shape", "tapered"], choices=FAMILIES)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--runs", nargs="+", type=Path, help="evaluate these run directories instead of training")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "runs" / "generalization")
    parser.add_argument("overrides", nargs="*", help="extra train.py overrides for every run")
    args = parser.parse_args()
    for run_dir in args.runs or []:
        if not (run_dir / ".hydra" / "config.yaml").is_file():
            parser.error(f"--runs {run_dir}: not a train.py run directory (it has no .hydra/config.yaml)")
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    runs = runs_to_evaluate(args)

    torch.set_num_threads(args.threads)
    results = evaluate_runs(runs, args)
    summary = {
        "machine": machine_line().strip(),
        "budget": {"data": args.data, "epochs": args.epochs, "num_samples": args.num_samples,
                   "eval_samples": args.eval_samples, "eval_seed": args.eval_seed, "device": args.device,
                   "threads": args.threads, "parallel": args.parallel, "overrides": args.overrides,
                   "held_out": args.held_out, "runs_given": [str(r) for r in args.runs or []]},
        "runs": [{k: (str(v) if isinstance(v, Path) else v) for k, v in run.items()} for run in runs],
    }
    summary["rows"] = summarise(results)
    summary["goals"] = goal_checks(summary["rows"], args.device)
    summary["error_location"] = locations(results)
    print_report(summary, summary["rows"], summary["goals"])
    print_locations(summary["error_location"])
    summary["wall_s"] = round(time.perf_counter() - start, 1)
    print(f"\nwall time: {summary['wall_s']:.0f} s in all")
    (args.out / "generalization.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
