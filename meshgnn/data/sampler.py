"""Batch order as a pure function of (seed, epoch): the basis of exact resume.

A resumed run rebuilds the same permutation for the interrupted epoch and skips the batches
already trained on, so "3 epochs + resume 3" visits exactly the batches of "6 epochs". The
same sampler shards the order across data-parallel ranks: rank r takes order[r::world_size].

With `pad` (training under DDP) the order is first extended by its own beginning to a multiple
of world_size, as torch's DistributedSampler does, so every rank has the same number of graphs
and of batches (DDP needs every rank to take every step). Evaluation does not pad: each graph
is counted once and the ranks' sums are added up.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


class EpochBatchSampler(Sampler[list[int]]):
    def __init__(self, size: int, batch_size: int, shuffle: bool, seed: int,
                 rank: int = 0, world_size: int = 1, pad: bool = False) -> None:
        self.size, self.batch_size, self.shuffle, self.seed = size, batch_size, shuffle, seed
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip = epoch, skip_batches

    def _order(self) -> list[int]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=gen)
        else:
            order = torch.arange(self.size)
        if self.pad and self.size % self.world_size:
            total = -(-self.size // self.world_size) * self.world_size
            order = order.repeat(-(-total // self.size))[:total]
        return order[self.rank::self.world_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        order = self._order()
        for start in range(self.skip * self.batch_size, len(order), self.batch_size):
            yield order[start:start + self.batch_size]

    def batches_per_epoch(self) -> int:
        per_rank = (-(-self.size // self.world_size) if self.pad
                    else len(range(self.rank, self.size, self.world_size)))
        return -(-per_rank // self.batch_size)

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.skip
