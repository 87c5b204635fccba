"""Accuracy benchmark: every candidate model trained at one budget, on identical data and loss.

For each dataset and model it runs `train.py` (the real pipeline, one subprocess per run) for
the same number of epochs, then evaluates the best checkpoint on meshes twice as fine
(`trainer.epochs=0 init_from=... data.mesh_size=h/2`, a range halved at both ends: the same
parts, boundary data and test split, meshed at half the edge length). It prints per dataset
and target the test rel L2 (mean and median over meshes), the max abs error, the fine-mesh
rel L2 and its ratio, for every model and for the analytic baseline; then, on the first
dataset, a learning curve of the first model over training-set sizes at a fixed number of
optimiser steps, with fixed-size val/test sets.

"Equal budget" is equal data and equal optimiser steps, not equal wall time: a bigger model
(the MeshGraphNets baseline) spends more compute per step, and the table shows its time.

Usage (defaults reproduce the README table; runs go to --out, several at once with --parallel):
    python benchmarks/accuracy.py [--datasets heat2d elasticity2d]
        [--models multiscale_gnn edge_gnn meshgraphnet] [--epochs 5] [--no-fine] [--device cpu]
        [--threads 2] [--parallel 1] [--curve 50 100 200 400 800 1600 3200] [--out DIR]
        [-- extra train.py overrides]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from generalization_sets import divided  # noqa: E402
from table import machine_line  # noqa: E402
from train_jobs import Job, compose_args, pregenerate, run_all  # noqa: E402

CURVE_HELD_OUT = 100  # val and test meshes of every learning-curve point


def plan(args: argparse.Namespace) -> list[Job]:
    jobs = []
    for dataset in args.datasets:
        fine = divided(compose_args([f"data={dataset}"]).data.mesh_size, 2)
        for model in args.models:
            name = f"{dataset}/{model}"
            jobs.append(Job(name, [f"data={dataset}", f"model={model}", f"trainer.epochs={args.epochs}"]))
            if not args.fine:
                continue
            jobs.append(Job(f"{name}/fine", [f"data={dataset}", f"model={model}", "trainer.epochs=0",
                                             f"data.mesh_size={fine}",
                                             f"init_from={args.out / name / 'checkpoints' / 'best.ckpt'}"],
                            after=name))
        if dataset != args.datasets[0]:
            continue
        steps_samples = args.epochs * args.curve_reference
        for n in args.curve:
            total = n + 2 * CURVE_HELD_OUT
            epochs = max(1, round(steps_samples / n))
            jobs.append(Job(f"{dataset}/curve/{n}", [
                f"data={dataset}", f"model={args.models[0]}", f"data.num_samples={total}",
                f"data.split.train={n / total}", f"data.split.val={CURVE_HELD_OUT / total}",
                f"data.split.test={CURVE_HELD_OUT / total}", f"trainer.epochs={epochs}"]))
    return jobs


def target_names(results: dict) -> list[str]:
    return sorted({key.split("/")[1] for key in results.get("model", {}) if key.startswith("test/")})


def report(args: argparse.Namespace, done: dict[str, Job]) -> None:
    print(machine_line(f"{args.epochs} epochs per model, device {args.device}, "
                       f"{args.threads} threads per run, {args.parallel} runs at once"))
    for dataset in args.datasets:
        first = done[f"{dataset}/{args.models[0]}"].results
        print(f"\n### {dataset}\n")
        print("| target | model | rel L2 mean | rel L2 median | max abs | 2x finer rel L2 | finer / trained | train time |")
        print("|---|---|---|---|---|---|---|---|")
        for target in target_names(first):
            for model in args.models:
                job, fine = done[f"{dataset}/{model}"], done.get(f"{dataset}/{model}/fine")
                if job.error:
                    print(f"| {target} | {model} | failed: {job.error} | | | | | |")
                    continue
                m = job.results["model"]
                rel = m[f"test/{target}/rel_l2"]
                fine_rel = fine.results.get("model", {}).get(f"test/{target}/rel_l2", float("nan")) if fine else float("nan")
                print(f"| {target} | {model} | {rel:.4f} | {m[f'test/{target}/rel_l2_median']:.4f} | "
                      f"{m[f'test/{target}/max_abs']:.4g} | {fine_rel:.4f} | {fine_rel / rel:.2f} | "
                      f"{job.seconds:.0f} s |")
            analytic = first.get("baseline_analytic", {})
            if analytic:
                print(f"| {target} | analytic baseline | {analytic[f'test/{target}/rel_l2']:.4f} | "
                      f"{analytic[f'test/{target}/rel_l2_median']:.4f} | "
                      f"{analytic[f'test/{target}/max_abs']:.4g} | | | |")
        if args.curve and dataset == args.datasets[0]:
            print(f"\nLearning curve, {dataset}, model={args.models[0]}, "
                  f"{args.epochs * args.curve_reference} graphs of optimiser steps per point, "
                  f"{CURVE_HELD_OUT} val and {CURVE_HELD_OUT} test meshes:\n")
            targets = target_names(first)
            print("| training meshes | epochs | " + " | ".join(f"{t} rel L2" for t in targets) + " |")
            print("|---|---|" + "---|" * len(targets))
            for n in args.curve:
                job = done[f"{dataset}/curve/{n}"]
                epochs = next(a.split("=")[1] for a in job.args if a.startswith("trainer.epochs="))
                cells = [f"{job.results['model'][f'test/{t}/rel_l2']:.4f}" if not job.error else "failed"
                         for t in targets]
                print(f"| {n} | {epochs} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["heat2d", "elasticity2d"])
    parser.add_argument("--models", nargs="+", default=["multiscale_gnn", "edge_gnn", "meshgraphnet"])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--no-fine", dest="fine", action="store_false",
                        help="skip the 2x finer evaluation (it generates the whole dataset again at 4x the nodes: "
                             "an hour of flow2d solves on 2 cores)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--curve", type=int, nargs="*", default=[50, 100, 200, 400, 800, 1600, 3200])
    parser.add_argument("--curve-reference", type=int, default=800,
                        help="training meshes whose --epochs set the learning curve's step budget")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "runs" / "accuracy")
    parser.add_argument("overrides", nargs="*", help="extra train.py overrides for every run")
    args = parser.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    common = [f"trainer.device={args.device}", f"trainer.threads={args.threads}", *args.overrides]
    jobs = plan(args)
    pregenerate(jobs, args.out, common)
    done = run_all(jobs, args.out, common, args.parallel)
    report(args, done)
    summary = {name: {"seconds": j.seconds, "results": j.results, "error": j.error} for name, j in done.items()}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
