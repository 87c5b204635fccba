"""Slots of parallel sweep trials: which GPU and how many CPU threads each trial gets.

With `hydra/launcher=joblib` the sweeper hands `hydra.sweeper.n_jobs` trials at once to loky
worker processes on this machine. Without care every trial would see every GPU (and train
on the first) and start one torch thread per core (N trials oversubscribe the CPU N times).
So each trial takes a *slot*, a free index in 0..n_jobs-1, for as long as it runs:
- the slot is an exclusive lock file `<sweep dir>/.slots/<i>.lock` (fcntl.flock), so two
  trials running at the same time never hold the same slot, whatever order joblib runs them
  in, and a killed trial's slot is free again at once (the kernel drops its lock);
- slot i sees one GPU, the i-th of those the sweep was started with (CUDA_VISIBLE_DEVICES),
  shared round robin when there are fewer GPUs than slots;
- the trial gets max(1, cores // slots) torch threads (trainer.threads > 0 still wins), and
  OMP/MKL_NUM_THREADS the same for processes it starts. This changes speed, not results.
loky reuses its workers: CUDA_VISIBLE_DEVICES is read once, when a process first initialises
CUDA, so a worker that has done so stays on its slot's GPU; it takes that slot again (waiting
for it if need be) rather than a slot whose GPU it cannot see.
`hydra/launcher=submitit_local` starts every job it is handed at once (a new process each)
and sets each job's CUDA_VISIBLE_DEVICES to 0..hydra.launcher.gpus_per_node-1 (none when unset),
so slots share those out the same way. Under `hydra/launcher=slurm` trials have no slots: each
is its own allocation, whose GPUs (CUDA_VISIBLE_DEVICES) and cores SLURM sets.
Each trial records its slot in `<run dir>/slot.json`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Iterator, Optional, Sequence

from omegaconf import read_write

from meshgnn.atomic import atomic_write_text
from meshgnn.sweeps.launchers import SUBMITIT_LOCAL

log = logging.getLogger(__name__)

# Launchers that run a sweep's trials at the same time on this machine.
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
PARALLEL_LAUNCHERS = (JOBLIB, SUBMITIT_LOCAL)
# The CUDA_VISIBLE_DEVICES the sweep started with, kept so a reused worker does not read back
# the one GPU an earlier trial of its own was given.
SWEEP_DEVICES_ENV = "MESHGNN_SWEEP_CUDA_VISIBLE_DEVICES"
THREAD_ENVS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

# The slot whose GPU this process initialised CUDA with (None until then).
_cuda_slot: Optional[int] = None


@dataclass(frozen=True)
class Slot:
    """What one parallel trial was given."""
    index: int
    slots: int
    cuda_visible_devices: Optional[str]  # None: no GPU on this machine, left as it was
    threads: int


def visible_device_for(slot: int, devices: Sequence[str]) -> Optional[str]:
    """The one GPU slot `slot` sees, from the sweep's GPUs (ids as CUDA_VISIBLE_DEVICES lists
    them); None without GPUs. Fewer GPUs than slots: slots share them round robin."""
    return devices[slot % len(devices)] if devices else None


def threads_for(slots: int, cores: int) -> int:
    """Torch threads per trial so that `slots` trials at once use the cores without oversubscribing."""
    return max(1, cores // slots)


def parallel_slots(launcher_target: Optional[str], sweeper_jobs: int, launcher_jobs: Optional[int],
                   cores: int) -> int:
    """How many trials run at once: 1 unless a parallel launcher runs several."""
    if launcher_target not in PARALLEL_LAUNCHERS:
        return 1
    if launcher_jobs is None:  # submitit_local: every job handed to it runs at once
        return max(1, sweeper_jobs)
    at_once = cores if launcher_jobs < 0 else launcher_jobs  # joblib: -1 = all cores
    return max(1, min(sweeper_jobs, at_once))


def size_worker_pool(launcher: Any, sweeper_jobs: int, cores: int) -> None:
    """Give joblib's pool as many workers as trials run at once, where it was left at its
    default (`hydra.launcher.n_jobs=-1`: a worker per core). loky hands a job to any idle worker,
    so with 16 workers for 2 trials most trials start in a worker that has never run one and
    wait ~10 s for its imports (torch, meshgnn); with 2 the two are reused, warm. Speed only."""
    if launcher.get("_target_") == JOBLIB and (launcher.get("n_jobs") is None or launcher.n_jobs < 0):
        with read_write(launcher):
            launcher.n_jobs = parallel_slots(JOBLIB, sweeper_jobs, -1, cores)


def _sweep_devices() -> list[str]:
    """The GPUs the sweep was started with, without initialising CUDA in this process."""
    listed = os.environ.get(SWEEP_DEVICES_ENV, os.environ.get("CUDA_VISIBLE_DEVICES"))
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]  # NVML: does not initialise CUDA


def _cuda_initialised() -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and torch.cuda.is_initialized()


def _take_lock(folder: Path, slots: int) -> tuple[int, IO[str]]:
    """A free slot's lock, held until the returned file closes. A worker bound to a GPU waits
    for its own slot; any other takes the first free one (or waits for slot 0 if none is)."""
    folder.mkdir(parents=True, exist_ok=True)
    order = [_cuda_slot] if _cuda_slot is not None and _cuda_slot < slots else list(range(slots))
    for index in order:
        handle = open(folder / f"{index}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return index, handle
        except BlockingIOError:
            handle.close()
    index = order[0]
    log.info("waiting for trial slot %d to be free", index)
    handle = open(folder / f"{index}.lock", "w")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return index, handle


def _apply(slot: Slot, devices: Sequence[str]) -> None:
    if slot.cuda_visible_devices is not None and not _cuda_initialised():
        os.environ.setdefault(SWEEP_DEVICES_ENV, ",".join(devices))
        os.environ["CUDA_VISIBLE_DEVICES"] = slot.cuda_visible_devices
    for name in THREAD_ENVS:
        os.environ[name] = str(slot.threads)
    import torch

    torch.set_num_threads(slot.threads)


@contextlib.contextmanager
def trial_slot(run_dir: Path) -> Iterator[Optional[Slot]]:
    """Hold a slot for the trial running in `run_dir` when this is a parallel sweep trial
    (yields None, and changes nothing, otherwise). Records it in `<run dir>/slot.json`."""
    global _cuda_slot
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    cores = len(os.sched_getaffinity(0))
    slots = 1 if hydra is None or hydra.mode != RunMode.MULTIRUN else parallel_slots(
        hydra.launcher.get("_target_"), int(hydra.sweeper.get("n_jobs", 1) or 1), hydra.launcher.get("n_jobs"),
        cores)
    if slots == 1:
        yield None
        return
    index, lock = _take_lock(Path(hydra.sweep.dir) / ".slots", slots)
    try:
        devices = _sweep_devices()
        slot = Slot(index, slots, visible_device_for(index, devices), threads_for(slots, cores))
        _apply(slot, devices)
        if slot.cuda_visible_devices is not None and len(devices) < slots:
            log.warning("%d GPUs for %d parallel trials: trials share GPUs", len(devices), slots)
        log.info("trial slot %d of %d: CUDA_VISIBLE_DEVICES=%s, %d torch threads", index, slots,
                 slot.cuda_visible_devices if slot.cuda_visible_devices is not None else "(no GPU)", slot.threads)
        record = {**asdict(slot), "pid": os.getpid(), "started": time.time()}
        atomic_write_text(run_dir / "slot.json", json.dumps(record, indent=1))
        try:
            yield slot
        finally:
            import torch

            record.update(ended=time.time(), torch_threads=torch.get_num_threads())
            atomic_write_text(run_dir / "slot.json", json.dumps(record, indent=1))
    finally:
        if _cuda_slot is None and _cuda_initialised():
            _cuda_slot = index
        lock.close()
