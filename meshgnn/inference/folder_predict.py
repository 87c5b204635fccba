"""The folder pipeline of `meshgnn predict`: files read by worker processes ahead of the
device, grouped into batches by node count, and written by a thread while the next batch is
predicted. What a batch is and how it is predicted lives in `predict` (`predict_files`).

Reading in processes: reading a mesh file (meshio's XML and base64, the geometry checks) is
Python and NumPy work that holds the GIL, so only processes read several files at once while
the main process prepares and predicts. They start from a 'forkserver' (forking a process
whose torch thread pools have run can deadlock the child) that has this module imported, so a
worker costs a fork, not a fresh interpreter importing torch. Files come back in input order
and at most `READ_AHEAD_PER_WORKER` per worker are read ahead of the batch being predicted:
memory stays bounded on a folder of thousands of large meshes.

Writing in a thread: a VTU is mostly zlib and file I/O, which release the GIL; the writes of
one batch run while the next is predicted, and a batch waits for the previous batch's writes
before queueing its own, so at most two batches of meshes are held.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path

import meshio
import torch

from meshgnn.data.sample import MeshSample
from meshgnn.errors import UserError
from meshgnn.inference.mesh_input import Globals, read_mesh
from meshgnn.inference.package import Package

READ_AHEAD_PER_WORKER = 4  # files in flight per reader: enough to cover a batch's device time


@dataclass
class ReadFile:
    """One planned file (mesh file, the folder it was given in, output file) after reading:
    its sample and mesh as read, or the UserError that refused it."""

    path: Path
    root: Path
    target: Path
    sample: MeshSample | None = None
    mesh: meshio.Mesh | None = None
    error: UserError | None = None

    @property
    def name(self) -> str:
        return self.path.relative_to(self.root).as_posix()


def read_planned(package: Package, given_globals: Globals | None, path: Path, root: Path, target: Path) -> ReadFile:
    """`read_mesh` of one planned file, a refusal kept as data (a bad file costs only itself)."""
    try:
        sample, mesh = read_mesh(package, path, root, given_globals)
    except UserError as exc:
        return ReadFile(path, root, target, error=exc)
    return ReadFile(path, root, target, sample, mesh)


_WORKER: tuple[Package, Globals | None] | None = None  # a reader process's package and globals


def _start_worker(package: Package, given_globals: Globals | None) -> None:
    """Ctrl-C reaches the whole process group: the parent stops the pool, the readers must not
    print a KeyboardInterrupt each. One torch thread: reading barely uses torch."""
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    _WORKER = (package, given_globals)


def _read_in_worker(path: Path, root: Path, target: Path) -> ReadFile:
    return read_planned(*_WORKER, path, root, target)


class FileReader:
    """`read(plan)` yields every planned file as a `ReadFile`, in plan order: read in the main
    process (`workers` 0) or by `workers` processes ahead of the consumer. A context manager:
    leaving it, also on an error or a stop signal, shuts the processes down."""

    def __init__(self, package: Package, given_globals: Globals | None, workers: int) -> None:
        if workers < 0:
            raise UserError(f"--workers must be >= 0 (0 reads the files in the main process), got {workers}")
        # reading needs the reader settings and the feature spec, not the weights (which may
        # sit on a GPU by the time a worker starts)
        self.package = replace(package, model=torch.nn.Module())
        self.given_globals = given_globals
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> "FileReader":
        if self.workers:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
            self.pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_worker,
                                            initargs=(self.package, self.given_globals))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def read(self, plan: Iterable[tuple[Path, Path, Path]]) -> Iterator[ReadFile]:
        if self.pool is None:
            for entry in plan:
                yield read_planned(self.package, self.given_globals, *entry)
            return
        entries = iter(plan)
        pending: deque[Future] = deque()
        while True:
            try:  # a dead reader breaks the pool: both submitting and collecting then raise
                while len(pending) < READ_AHEAD_PER_WORKER * self.workers:
                    entry = next(entries, None)
                    if entry is None:
                        break
                    pending.append(self.pool.submit(_read_in_worker, *entry))
                if not pending:
                    return
                read = pending.popleft().result()
            except BrokenProcessPool:
                raise UserError("a mesh-reading worker process died (out of memory, or killed); predict again "
                                "with fewer --workers, or --workers 0 to read in the main process") from None
            yield read


def batches(reads: Iterable[ReadFile], batch_nodes: int,
            refused: Callable[[ReadFile], None]) -> Iterator[list[ReadFile]]:
    """Consecutive read files in groups of at most `batch_nodes` nodes (a larger mesh alone).
    A refused file goes to `refused` after the group before it was yielded, so when `refused`
    raises, every file before the bad one has been predicted, as one by one."""
    if batch_nodes < 1:
        raise UserError(f"--batch-nodes must be >= 1, got {batch_nodes}")
    group: list[ReadFile] = []
    nodes = 0
    for read in reads:
        size = 0 if read.error is not None else read.sample.num_nodes
        if group and (read.error is not None or nodes + size > batch_nodes):
            yield group
            group, nodes = [], 0
        if read.error is not None:
            refused(read)
        else:
            group.append(read)
            nodes += size
    if group:
        yield group


class Writer:
    """Runs write jobs on one thread, one batch behind the device: `write(jobs)` first waits
    for the previous batch's jobs (raising their error), then queues these. Leaving the
    context waits for every queued write; a write's error surfaces unless another error is
    already on its way out."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="meshgnn-write")
        self.pending: list[Future] = []

    def write(self, jobs: list[Callable[[], None]]) -> None:
        self.wait()
        self.pending = [self.pool.submit(job) for job in jobs]

    def wait(self) -> None:
        pending, self.pending = self.pending, []
        for future in pending:
            future.result()

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        try:
            if exc_type is None:
                self.wait()
        finally:
            self.pool.shutdown(wait=True)
