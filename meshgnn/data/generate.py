"""Generate a dataset from a built-in source in parallel worker processes.

Each sample is seeded by (seed, index) alone, so the result does not depend on the number of
workers or on which worker produced which sample; `imap` keeps the order.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections.abc import Iterable
from functools import partial

from tqdm import tqdm

from meshgnn.data.sample import MeshSample
from meshgnn.data.sources import GeneratedSource
from meshgnn.errors import UserError

logger = logging.getLogger("meshgnn.data")

_CHUNKS_PER_WORKER = 8  # small enough chunks to balance, large enough to amortise pickling
_LOG_FRACTION = 0.1  # without a progress bar, log every 10% of the samples


def generate_samples(
    source: GeneratedSource,
    num_samples: int,
    seed: int,
    mesh_size: float,
    max_holes: int,
    workers: int,
) -> list[MeshSample]:
    """Samples 0..num_samples-1 of `source`; workers=0 uses every CPU, 1 runs in-process."""
    if workers < 0:
        raise UserError(f"workers must be >= 0 (0 = one per CPU), got {workers}")
    workers = min(workers or os.cpu_count() or 1, max(num_samples, 1))
    job = partial(_generate_one, source, seed=seed, mesh_size=mesh_size, max_holes=max_holes)
    bar = tqdm(total=num_samples, desc=f"generating {source.name}", file=sys.stderr, disable=None)
    log_every = max(1, round(num_samples * _LOG_FRACTION))
    samples: list[MeshSample] = []

    def collect(results: Iterable[MeshSample]) -> None:
        for sample in results:
            samples.append(sample)
            bar.update()
            if bar.disable and (len(samples) % log_every == 0 or len(samples) == num_samples):
                logger.info("generated %d/%d %s samples", len(samples), num_samples, source.name)

    with bar:
        if workers == 1:
            collect(map(job, range(num_samples)))
        else:
            chunksize = max(1, num_samples // (workers * _CHUNKS_PER_WORKER))
            with multiprocessing.Pool(workers) as pool:
                collect(pool.imap(job, range(num_samples), chunksize=chunksize))
    return samples


def _generate_one(
    source: GeneratedSource, index: int, *, seed: int, mesh_size: float, max_holes: int
) -> MeshSample:
    return source.generate(index, seed, mesh_size, max_holes)
