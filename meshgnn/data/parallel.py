"""One way to run per-sample work (generating, checking, converting meshes) in processes.

Results come back in input order, so the output never depends on the number of workers; a
progress bar shows on a terminal, and elsewhere (logs, clusters) progress comes as a log line
every 10 %.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tqdm import tqdm

from meshgnn.errors import UserError

log = logging.getLogger("meshgnn.data")

_CHUNKS_PER_WORKER = 8  # small enough chunks to balance, large enough to amortise pickling
_LOG_FRACTION = 0.1


def parallel_map(job: Callable[[Any], Any], items: Sequence[Any], workers: int, desc: str,
                 progress: bool = True) -> list[Any]:
    """`job` over `items`, in order; workers=0 uses one process per CPU, 1 runs in-process.
    `job` must be picklable (a module-level function or a partial of one)."""
    if workers < 0:
        raise UserError(f"workers must be >= 0 (0 = one per CPU), got {workers}")
    workers = min(workers or os.cpu_count() or 1, max(len(items), 1))
    bar = tqdm(total=len(items), desc=desc, file=sys.stderr, disable=None if progress else True)
    log_every = max(1, round(len(items) * _LOG_FRACTION))
    results: list[Any] = []

    def collect(outputs: Iterable[Any]) -> None:
        for output in outputs:
            results.append(output)
            bar.update()
            if progress and bar.disable and (len(results) % log_every == 0 or len(results) == len(items)):
                log.info("%s: %d/%d", desc, len(results), len(items))

    with bar:
        if workers == 1:
            collect(map(job, items))
        else:
            chunksize = max(1, len(items) // (workers * _CHUNKS_PER_WORKER))
            with multiprocessing.Pool(workers) as pool:
                collect(pool.imap(job, items, chunksize=chunksize))
    return results
