"""One way to run per-sample work (generating, checking, converting meshes) in processes.

Results come back in input order, so the output never depends on the number of workers; a
progress bar shows on a terminal, and elsewhere (logs, clusters) progress comes as a log line
every 10 %. Worker processes leave stop signals to the parent (see `interrupt`): they ignore
SIGINT (a Ctrl-C reaches the whole process group) and die at once on the SIGTERM with which the
parent terminates them (the default action). A Python-level SIGTERM handler in a worker would
deadlock the pool: an idle worker waits for the task queue's lock in C, where the handler never
runs, and `Pool.terminate` joins it forever. A temporary file of a write a worker was killed in
is removed by the next builder of that cache, which holds its lock (`remove_orphaned_temp_files`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tqdm import tqdm

from meshgnn.data.interrupt import StopSignal
from meshgnn.errors import UserError

log = logging.getLogger("meshgnn.data")

_CHUNKS_PER_WORKER = 8  # small enough chunks to balance, large enough to amortise pickling
_LOG_FRACTION = 0.1


def parallel_map(job: Callable[[Any], Any], items: Sequence[Any], workers: int, desc: str,
                 progress: bool = True, unit: str = "items") -> list[Any]:
    """`job` over `items`, in order; workers=0 uses one process per CPU, 1 runs in-process.
    `job` must be picklable (a module-level function or a partial of one). A StopSignal
    terminates the workers and leaves with the progress and the results done so far."""
    if workers < 0:
        raise UserError(f"workers must be >= 0 (0 = one per CPU), got {workers}")
    workers = min(workers or os.cpu_count() or 1, max(len(items), 1))
    bar = tqdm(total=len(items), desc=desc, unit=f" {unit}", file=sys.stderr, disable=None if progress else True)
    log_every = max(1, round(len(items) * _LOG_FRACTION))
    results: list[Any] = []

    def collect(outputs: Iterable[Any]) -> None:
        for output in outputs:
            results.append(output)
            bar.update()
            if progress and bar.disable and (len(results) % log_every == 0 or len(results) == len(items)):
                log.info("%s: %d/%d", desc, len(results), len(items))

    try:
        with bar:
            if workers == 1:
                collect(map(job, items))
            else:
                chunksize = max(1, len(items) // (workers * _CHUNKS_PER_WORKER))
                with multiprocessing.Pool(workers, initializer=_leave_signals_to_the_parent) as pool:
                    collect(pool.imap(job, items, chunksize=chunksize))  # leaving terminates the workers
    except StopSignal as stop:
        stop.progress, stop.done = f"{len(results)}/{len(items)} {unit}", results
        raise
    return results


def _leave_signals_to_the_parent() -> None:
    """Forked workers inherit the parent's Python handlers (`interruptible`'s): undo them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
