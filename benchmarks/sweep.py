"""Sweep benchmark: what the Optuna search is worth against the old grid, and how much running
trials in parallel cuts a sweep's wall time (issue #17).

1. search: the 36-point grid (`hparams_search=grid`) against `hparams_search=optuna` (TPE +
   median pruning, as shipped) over the same 4 parameters and ranges, for several TPE seeds.
   Both use one fixed shrunk setting so that 36 trials fit on a CPU: `debug=default` data
   (heat2d, coarse meshes), `--samples` meshes, `--epochs` epochs, and hidden_dim
   choice(16,32) in place of the grid's choice(256,512) (fourier_features, lr and
   smoothness_weight keep the grid's values and the TPE space's ranges). The objective is
   val/temperature/rel_l2 (not val/loss/total, which holds smoothness_weight itself). A trial
   costs the epochs it actually ran (pruned ones only theirs, read from the study). TPE's
   trials are taken in order until `--budget` x the grid's trial-epochs are spent; the
   best completed objective within that budget is compared with the grid's best (goal:
   within 2 % using at most 30 % of the grid's trial-epochs).
2. parallel: one sweep of `--parallel-trials` trials (fixed width, no pruning, a seeded
   sampler: the same trials at every level) with `hydra/launcher=joblib
   hydra.sweeper.n_jobs=k` for each k of `--jobs`, every trial with `--threads` torch
   threads; wall time of the whole `train.py -m` command and speedup against the first k.

Every sweep is a real `train.py -m` subprocess (Hydra, Optuna, SQLite); the data cache is
built once beforehand and not timed. Prints a table; `--out` writes the numbers as JSON.

Usage: python benchmarks/sweep.py [--parts search parallel] [--seeds 0 1 2 3 4] [--jobs 1 2 4]
       [--threads N] [--procs N] [--out sweep.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from table import print_table  # noqa: E402

OBJECTIVE = "val/temperature/rel_l2"
GOAL_GAP, GOAL_BUDGET = 0.02, 0.30
# The grid's hidden_dim choice(256,512) is sized for a GPU; the other 3 params keep their values.
SHRUNK_SPACE = ["model.hidden_dim=choice(16,32)"]
# --quick: a smoke run of every step in seconds (a 2-point grid; numbers mean nothing).
QUICK_SPACE = ["model.hidden_dim=choice(8,16)", "data.fourier_features=16", "optim.lr=1e-3",
               "loss.smoothness_weight=0.1"]


def base_overrides(samples: int, epochs: int, threads: int) -> list[str]:
    """The fixed shrunk setting every trial of every sweep shares."""
    return ["debug=default", f"data.num_samples={samples}", f"trainer.epochs={epochs}",
            f"trainer.threads={threads}", f"objective={OBJECTIVE}"]


def train(args: list[str], cwd: Path) -> float:
    """Run `python train.py ARGS` in `cwd`; return its wall seconds (exit on failure with its log)."""
    cwd.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"train.py {' '.join(args)} failed (exit {proc.returncode}):\n"
                         f"{(proc.stdout + proc.stderr)[-3000:]}")
    return seconds


def build_cache(overrides: list[str], cache: Path) -> None:
    """Generate the dataset once, in this process, before any sweep: concurrent sweeps then only
    read it, and no timed sweep pays for it."""
    from hydra import compose, initialize_config_dir

    from meshgnn.config import register_configs
    from meshgnn.data.dataset import load_datasets
    from meshgnn.data.features import ModelInputs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    load_datasets(cfg.data, cache, ModelInputs.of_model(cfg.model))


def sweep(name: str, work: Path, overrides: list[str]) -> tuple[Path, float]:
    """One `train.py -m` sweep in its own folder and SQLite study; (sweep dir, wall seconds)."""
    folder = work / name
    shutil.rmtree(folder, ignore_errors=True)  # a study of an earlier run would be continued
    sweep_dir = folder / "sweep"
    seconds = train(["-m", *overrides, f"hydra.sweep.dir={sweep_dir}",
                     f"hydra.sweeper.storage=sqlite:///{folder / 'optuna.db'}"], cwd=folder)
    return sweep_dir, seconds


def trials(sweep_dir: Path) -> list[dict]:
    """The study's trials in the order they were asked: number, state, value, epochs run."""
    from meshgnn.sweeps.study import load_sweep

    rows = sorted(load_sweep(sweep_dir).rows, key=lambda r: r.number)
    return [{"number": r.number, "state": r.state, "value": r.value, "epochs": r.epochs, "params": r.params}
            for r in rows]


def within_budget(rows: list[dict], budget: float) -> dict:
    """Best completed objective among the trials run, in order, before `budget` trial-epochs
    are spent (a trial that would overrun the budget is not counted), and the epochs used."""
    used, best, counted = 0, None, 0
    for row in rows:
        if used + row["epochs"] > budget:
            break
        used += row["epochs"]
        counted += 1
        if row["state"] == "COMPLETE" and (best is None or row["value"] < best):
            best = row["value"]
    return {"best": best, "epochs": used, "trials": counted}


def epochs_to_reach(rows: list[dict], target: float) -> int | None:
    """Trial-epochs spent until a completed trial first reaches `target` (None: never)."""
    used = 0
    for row in rows:
        used += row["epochs"]
        if row["state"] == "COMPLETE" and row["value"] <= target:
            return used
    return None


def search(args: argparse.Namespace, work: Path) -> dict:
    """Grid and TPE seeds (run `--procs` sweeps at a time); their bests against the budget."""
    space = QUICK_SPACE if args.quick else SHRUNK_SPACE
    base = base_overrides(args.samples, args.epochs, args.search_threads) + [f"paths.data_dir={work / 'cache'}"] + space
    grid_launch = ["hydra/launcher=joblib", f"hydra.sweeper.n_jobs={args.grid_jobs}"] if args.grid_jobs > 1 else []
    # n_trials: the grid's size (2 points in --quick), so no grid point is run twice.
    runs = {"grid": base + ["hparams_search=grid", f"hydra.sweeper.n_trials={2 if args.quick else 36}"] + grid_launch}
    for seed in args.seeds:
        runs[f"tpe_seed{seed}"] = base + ["hparams_search=optuna", f"hydra.sweeper.sampler.seed={seed}",
                                          f"hydra.sweeper.n_trials={args.tpe_trials}"]
    with ThreadPoolExecutor(max_workers=args.procs) as pool:
        done = dict(zip(runs, pool.map(lambda item: sweep(item[0], work / "search", item[1]), runs.items())))
    grid = trials(done["grid"][0])
    grid_best = min(r["value"] for r in grid if r["state"] == "COMPLETE")
    grid_epochs = sum(r["epochs"] for r in grid)
    budget = args.budget * grid_epochs
    seeds = []
    for seed in args.seeds:
        rows = trials(done[f"tpe_seed{seed}"][0])
        at_budget = within_budget(rows, budget)
        gap = None if at_budget["best"] is None else at_budget["best"] / grid_best - 1
        seeds.append({"seed": seed, "trials": rows, "at_budget": at_budget, "gap": gap,
                      "all_trials_best": min((r["value"] for r in rows if r["state"] == "COMPLETE"), default=None),
                      "all_trials_epochs": sum(r["epochs"] for r in rows),
                      "pruned": sum(r["state"] == "PRUNED" for r in rows),
                      "epochs_to_2pct": epochs_to_reach(rows, grid_best * (1 + GOAL_GAP)),
                      "met": gap is not None and gap <= GOAL_GAP})
    gaps = [s["gap"] for s in seeds if s["gap"] is not None]
    return {"objective": OBJECTIVE, "space": space, "overrides": base, "grid_points": len(grid),
            "grid_best": grid_best, "grid_epochs": grid_epochs, "budget_fraction": args.budget,
            "budget_epochs": budget, "grid_trials": grid, "seeds": seeds,
            "median_gap": statistics.median(gaps) if gaps else None,
            "seeds_met": sum(s["met"] for s in seeds),
            "wall_s": {name: seconds for name, (_, seconds) in done.items()}}


def parallel(args: argparse.Namespace, work: Path, save: Callable[[dict], None]) -> dict:
    """The same sweep at each parallel level, one after another (nothing else of ours running);
    `save` gets the result after each level, so a run stopped at the last level keeps the others."""
    space = QUICK_SPACE if args.quick else ["model.hidden_dim=32", "data.fourier_features=16"]
    base = (base_overrides(args.samples, args.parallel_epochs, args.threads) + space
            + [f"paths.data_dir={work / 'cache'}", "hparams_search=optuna", "hydra/launcher=joblib",
               "hydra.sweeper.pruner.name=none", "hydra.sweeper.sampler.seed=0",
               f"hydra.sweeper.n_trials={args.parallel_trials}"])
    result: dict = {"overrides": base, "levels": []}
    for jobs in args.jobs:
        # joblib's own n_jobs (-1: a worker per core) unless matched: extra workers start cold, and
        # a trial that lands on one waits for its imports.
        pool = [f"hydra.launcher.n_jobs={jobs}"] if args.match_launcher_jobs else []
        sweep_dir, seconds = sweep(f"jobs{jobs}", work / "parallel", base + [f"hydra.sweeper.n_jobs={jobs}"] + pool)
        levels = result["levels"]
        levels.append({"n_jobs": jobs, "wall_s": seconds, "trials": len(trials(sweep_dir)),
                       "speedup": levels[0]["wall_s"] / seconds if levels else 1.0})
        save(result)
    return result


def commit() -> str:
    """$MESHGNN_COMMIT (for a copy of a commit, e.g. `git archive` on another machine), else the
    checkout's commit (+dirty when tracked files differ), else 'unknown'."""
    if os.environ.get("MESHGNN_COMMIT"):
        return os.environ["MESHGNN_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT).returncode != 0
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def search_rows(result: dict) -> list[tuple[str, str, str]]:
    grid = result["grid_best"]
    rows = [(f"grid ({result['grid_points']} points)", f"{grid:.4f}",
             f"{result['grid_epochs']} trial-epochs; budget for TPE {result['budget_fraction']:.0%} = "
             f"{result['budget_epochs']:.0f}")]
    for s in result["seeds"]:
        b = s["at_budget"]
        best = "-" if b["best"] is None else f"{b['best']:.4f}"
        gap = "no completed trial" if s["gap"] is None else f"{s['gap']:+.1%} vs grid"
        reach = "never" if s["epochs_to_2pct"] is None else f"{s['epochs_to_2pct']} epochs"
        rows.append((f"TPE+median seed {s['seed']}", best,
                     f"{gap}, {b['trials']} trials / {b['epochs']} epochs "
                     f"({b['epochs'] / result['grid_epochs']:.0%} of grid); within 2 %: {reach}; "
                     f"{s['pruned']} of {len(s['trials'])} pruned"))
    median = result["median_gap"]
    rows.append(("TPE median gap", "-" if median is None else f"{median:+.1%}",
                 f"{result['seeds_met']}/{len(result['seeds'])} seeds within 2 % at "
                 f"{result['budget_fraction']:.0%} of the grid's trial-epochs (goal: within 2 % at <= 30 %)"))
    return rows


def parallel_rows(result: dict) -> list[tuple[str, str, str]]:
    return [(f"{lv['trials']} trials, n_jobs={lv['n_jobs']}", f"{lv['wall_s']:.1f} s",
             f"{lv['speedup']:.2f}x vs n_jobs={result['levels'][0]['n_jobs']}") for lv in result["levels"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=["search", "parallel"], default=["search", "parallel"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="TPE sampler seeds")
    parser.add_argument("--tpe-trials", type=int, default=16, help="n_trials of each TPE sweep")
    parser.add_argument("--budget", type=float, default=GOAL_BUDGET, help="TPE budget, fraction of grid epochs")
    parser.add_argument("--samples", type=int, default=40, help="data.num_samples (debug=default meshes)")
    parser.add_argument("--epochs", type=int, default=8, help="trainer.epochs of a search trial")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="parallel levels (n_jobs)")
    parser.add_argument("--parallel-trials", type=int, default=8)
    parser.add_argument("--parallel-epochs", type=int, default=6)
    parser.add_argument("--match-launcher-jobs", action="store_true",
                        help="also set hydra.launcher.n_jobs=k (joblib workers = parallel trials)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per trial (0: cores // the largest --jobs)")
    parser.add_argument("--search-threads", type=int, default=0,
                        help="torch threads per search trial (0: as --threads); timing does not matter there")
    parser.add_argument("--procs", type=int, default=1, help="search sweeps running at once")
    parser.add_argument("--grid-jobs", type=int, default=1, help="parallel trials of the grid sweep")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "runs" / "sweep")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny data, 2-point grid and 1 seed at once, 2 trials per level")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    if args.quick:
        args.seeds, args.tpe_trials, args.samples, args.epochs, args.procs = args.seeds[:1], 2, 20, 2, 2
        args.jobs, args.parallel_trials, args.parallel_epochs = args.jobs[:2], 2, 1
    args.threads = args.threads or max(1, cores // max(args.jobs))
    args.search_threads = args.search_threads or args.threads
    work = args.work.resolve()
    results: dict = {"commit": commit(), "cores": cores, "threads_per_trial": args.threads,
                     "threads_per_search_trial": args.search_threads,
                     "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "quick": args.quick}

    def save(part: str, result: dict) -> None:  # as results come, so a stopped run keeps what it measured
        results[part] = result
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1))

    build_cache(base_overrides(args.samples, 1, args.threads), work / "cache")
    rows: list[tuple[str, str, str]] = []
    if "parallel" in args.parts:  # first: nothing else of ours runs while it is timed
        rows += parallel_rows(parallel(args, work, lambda result: save("parallel", result)))
    if "search" in args.parts:
        result = search(args, work)
        save("search", result)
        rows = search_rows(result) + rows
    threads = {"parallel": args.threads, "search": args.search_threads}
    print_table(rows, f"commit {results['commit']}, torch threads per trial: "
                      f"{', '.join(f'{part} {threads[part]}' for part in args.parts)}, "
                      f"objective {OBJECTIVE}, {args.samples} heat2d meshes (debug=default)")


if __name__ == "__main__":
    main()
