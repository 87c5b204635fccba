"""Batches moved to the training device one step ahead, on a side stream.

A batch in pinned host memory copied on the compute stream waits there for the step before
it, and the step after it waits for the copy. Copied on a side stream while the previous step
computes, it is on the device when its step starts. A batch already on the device (a dataset
held on the GPU, collated there) passes through: there is nothing to copy.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import torch
from torch import Tensor
from torch_geometric.data import Batch


def prefetched(batches: Iterable[Batch], device: torch.device,
               prepare: Callable[[Batch], Batch] = lambda batch: batch) -> Iterator[Batch]:
    """`prepare(batch)` of each batch, on `device`; on a GPU the next batch's copy is queued
    on a side stream before the current batch is handed out."""
    if device.type != "cuda":
        for batch in batches:
            yield prepare(batch).to(device)
        return
    side = torch.cuda.Stream(device)
    compute = torch.cuda.current_stream(device)
    ahead = iter(batches)
    upcoming = _copy(ahead, prepare, device, side)
    while upcoming is not None:
        compute.wait_stream(side)
        batch = upcoming
        for value in batch.stores[0].values():
            if isinstance(value, Tensor) and value.device.type == "cuda":
                # memory the side stream allocated is in use on the compute stream until here
                value.record_stream(compute)
        upcoming = _copy(ahead, prepare, device, side)
        yield batch


def _copy(batches: Iterator[Batch], prepare: Callable[[Batch], Batch], device: torch.device,
          side: torch.cuda.Stream) -> Batch | None:
    batch = next(batches, None)
    if batch is None:
        return None
    if batch.x.device.type == "cuda":  # collated on the device, by kernels of the compute stream
        return prepare(batch)
    with torch.cuda.stream(side):
        return prepare(batch).to(device, non_blocking=True)
