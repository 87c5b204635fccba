"""Workers benchmark: issue #17's goal for many workers on one study, at full size.

`--workers` concurrent `train.py -m hparams_search=optuna` processes (default 4), started at
the same moment on one storage and one study name, run `--trials` trials (default 12) in
total, once undisturbed and once with worker 0 killed -9 after the first epoch of its first
trial. Each worker sweeps into its own directory, as on its own machine. Storages: SQLite
(a file, the zero-setup default) and PostgreSQL: the server at `--storage` (any SQLAlchemy
URL of an empty database), else a throwaway local one (tests/sweeps/pg_server.py, the tests'
own starter), else the PostgreSQL rows are left out, saying why.

Per run it prints: trials in the study by state, FAIL reasons, trial directories reused
(two trials in one directory, or one trial number in two workers' directories: must be 0),
seconds from the kill to the killed trial's FAIL "stale" in the study (the grace period
plus the time until a surviving worker next checks, between its trials), and wall time.
Goal: `--trials` COMPLETE or PRUNED, 0 FAIL, 0 reused; with the kill, one FAIL "stale"
besides them (a stale trial is not counted and its point runs again).

Trials are tiny (trainer=debug, 20 samples, hidden_dim choice(8,16), `--epochs` epochs, one
torch thread each) so that it takes minutes on 2 cores.

Usage: python benchmarks/sweep_workers.py [--workers 4] [--trials 12] [--storages sqlite postgres]
       [--storage postgresql+psycopg2://user:pass@host/db] [--epochs 2] [--out workers.json]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests" / "sweeps"))

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from pg_server import PostgresUnavailable, postgres_server  # noqa: E402
from table import print_table  # noqa: E402

DATA = ["trainer=debug", "data.num_samples=20"]


def worker_args(storage: str, study: str, args: argparse.Namespace, cache: Path) -> list[str]:
    return ["-m", "hparams_search=optuna", *DATA, "model.hidden_dim=choice(8,16)", f"trainer.epochs={args.epochs}",
            "trainer.threads=1", f"paths.data_dir={cache}", f"hydra.sweeper.n_trials={args.trials}",
            f"hydra.sweeper.storage={storage}", f"hydra.sweeper.study_name={study}",
            f"hydra.sweeper.heartbeat_interval={args.heartbeat}", f"hydra.sweeper.grace_period={args.grace}"]


def run(storage: str, study: str, work: Path, args: argparse.Namespace, cache: Path, kill: bool) -> dict:
    """One run of `args.workers` workers on `study`; what the study and the directories hold after."""
    work.mkdir(parents=True)
    common = worker_args(storage, study, args, cache)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    workers = []
    for i in range(args.workers):
        with open(work / f"w{i}.log", "w") as log:
            workers.append(subprocess.Popen([sys.executable, str(ROOT / "train.py"), *common,
                                             f"hydra.sweep.dir={work / f'w{i}'}"], cwd=work, stdout=log,
                                            stderr=subprocess.STDOUT, env=env))
    killed, killed_at = None, None
    if kill:
        deadline = time.time() + 600
        while not (running := list((work / "w0").glob("*/metrics.jsonl"))) and time.time() < deadline:
            time.sleep(0.05)
        if not running:
            raise SystemExit(f"worker 0 ran no trial in 10 min: {(work / 'w0.log').read_text()[-2000:]}")
        workers[0].kill()
        killed_at = datetime.datetime.now()  # Optuna records trial times in local naive datetimes
        workers[0].wait()
        killed = int(running[0].parent.name)
    codes = [w.wait() for w in workers]
    wall = time.perf_counter() - started
    # a survivor that crashed is a result too (its log says why): listed, and the goal not met
    crashed = [i for i, code in enumerate(codes) if code != 0 and not (kill and i == 0)]

    trials = optuna.load_study(study_name=study, storage=storage).trials
    states = collections.Counter(t.state.name for t in trials)
    reasons = collections.Counter(t.user_attrs.get("failure", "?").split(":")[0] for t in trials
                                  if t.state == TrialState.FAIL)
    run_dirs = [t.user_attrs.get("run_dir") for t in trials]
    numbers = [int(p.name) for p in work.glob("w*/*") if p.is_dir() and p.name.isdigit()]
    reused = (len(run_dirs) - len(set(run_dirs))) + (len(numbers) - len(set(numbers)))
    stale_s = None
    if killed is not None:
        trial = next(t for t in trials if t.number == killed)
        if trial.state == TrialState.FAIL and trial.datetime_complete is not None:
            stale_s = (trial.datetime_complete - killed_at).total_seconds()
    return {"states": dict(states), "fail_reasons": dict(reasons), "dirs_reused": reused, "killed_trial": killed,
            "stale_after_s": stale_s, "wall_s": wall, "crashed_workers": crashed,
            "goal_met": (states["COMPLETE"] + states["PRUNED"] == args.trials and reused == 0 and not crashed
                         and dict(reasons) == ({"stale": 1} if kill else {}))}


@contextlib.contextmanager
def storages(args: argparse.Namespace, work: Path) -> Iterator[list[tuple[str, Optional[str], str]]]:
    """(name, URL or None, note) for each storage asked for; the throwaway server runs meanwhile."""
    with contextlib.ExitStack() as stack:
        chosen: list[tuple[str, Optional[str], str]] = []
        for name in args.storages:
            if name == "sqlite":
                chosen.append((name, f"sqlite:///{work / 'optuna.db'}", "one file, local workers"))
            elif args.storage:
                chosen.append((name, args.storage, "--storage"))
            else:
                try:
                    chosen.append((name, stack.enter_context(postgres_server()), "throwaway local server"))
                except PostgresUnavailable as exc:
                    chosen.append((name, None, f"left out: {exc}"))
        yield chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=2, help="per trial (the kill comes after the first)")
    # A grace period of a few heartbeats finds the killed trial quickly; on a loaded machine a
    # SQLite heartbeat can wait seconds for the write lock, so it must not be much shorter.
    parser.add_argument("--heartbeat", type=int, default=1, help="hydra.sweeper.heartbeat_interval (s)")
    parser.add_argument("--grace", type=int, default=10, help="hydra.sweeper.grace_period (s)")
    parser.add_argument("--storages", nargs="+", choices=("sqlite", "postgres"), default=["sqlite", "postgres"])
    parser.add_argument("--storage", help="a PostgreSQL (or MySQL) URL to use instead of a throwaway server")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="meshgnn-workers-"))
    cache = work / "data_cache"  # the 20 tiny meshes: the first trials generate them in a second
    rows: list[tuple[str, str, str]] = []
    results: dict[str, Any] = {}
    # A fresh study name per run: a --storage database may hold earlier runs' studies.
    tag = datetime.datetime.now().strftime("%H%M%S")
    with storages(args, work) as chosen:
        for name, url, note in chosen:
            if url is None:
                rows.append((f"{name}", "-", note))
                continue
            for kill in (False, True):
                label = f"{name}, {args.workers} workers, {args.trials} trials" + (", worker 0 killed -9" if kill else "")
                result = run(url, f"bench-{tag}-{name}-{'kill' if kill else 'plain'}",
                             work / f"{name}-{'kill' if kill else 'plain'}", args, cache, kill)
                results[label] = result
                stale = "" if not kill else (f"; trial {result['killed_trial']} stale after "
                                             f"{result['stale_after_s']:.1f} s" if result["stale_after_s"] is not None
                                             else f"; trial {result['killed_trial']} NOT stale")
                rows.append((label, f"{result['wall_s']:.0f} s",
                             f"states {result['states']}, FAIL reasons {result['fail_reasons'] or 'none'}, "
                             f"dirs reused {result['dirs_reused']}{stale}"
                             f"{'; workers ' + str(result['crashed_workers']) + ' CRASHED' if result['crashed_workers'] else ''}; goal {'met' if result['goal_met'] else 'NOT met'} "
                             f"({note})"))
    print_table(rows, f"{os.getloadavg()[0]:.1f} load average at the end; trials: {' '.join(DATA)}, "
                      f"{args.epochs} epochs, 1 thread each, heartbeat {args.heartbeat} s, grace {args.grace} s")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    print(f"work folder (logs, sweeps): {work}")


if __name__ == "__main__":
    main()
