"""Training steps replayed from CUDA graphs, one per size bucket (`trainer.cuda_graphs`).

At the batch sizes users train on (a few thousand to a hundred thousand nodes) a step is
thousands of small kernels, and launching them from Python takes longer than running them.
A CUDA graph records the whole step once (forward, loss, backward, gradient clipping and
the optimiser's update) and replays it with one launch. Graphs need fixed shapes, so each
batch is padded to its size bucket (`meshgnn.training.padding`, which also says why padding
changes nothing) and copied into that bucket's fixed input tensors before the replay.

The recorded step is the trainer's own step function, so eager and graphed training run
the same code; it zeroes the gradients rather than freeing them, so every bucket's graph
works on the same gradient tensors (allocated by the first eager step, outside the graphs). A bucket's first batch pays for its capture: a few eager warm-up steps on a
side stream (CUDA's requirement before capture; cuBLAS and the allocator set themselves up
in them), whose effect on the weights, the optimiser and the random state is undone, then
the capture, which computes nothing; the replay that follows is that batch's real step.

The optimiser runs captured as torch's `capturable` variant (its step count and learning
rate live on the device); between replays its `param_groups` keep plain float rates and
`capturable=False`, so checkpoints, learning-rate schedules and a later eager resume see the
optimiser exactly as eager training leaves it. The rate of each replay is copied into the
captured rate tensor first.

Without CUDA (or under DDP, whose all-reduce is not captured here) the padded steps run
eagerly: the same results, which is how CI tests the padding on CPUs.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from meshgnn.training.padding import BatchLayout, SizeBuckets, pad_batch

log = logging.getLogger(__name__)

# Eager steps before a capture: CUDA asks for warm-up on a side stream before capturing
# (lazy initialisation in cuBLAS, autograd and the caching allocator); three is what the
# PyTorch CUDA-graph examples use. Undone afterwards, so it cannot change results.
WARMUP_STEPS = 3

StepFunction = Callable[[Batch], dict[str, Tensor]]


def stack_logged(logged: dict[str, Tensor]) -> Tensor:
    """A step's logged scalars as one float32 row (one kernel; read later with the others)."""
    return torch.stack([value.detach().reshape(()).float() for value in logged.values()])


def logged_row(logged: dict[str, Tensor]) -> tuple[tuple[str, ...], Tensor]:
    """(the logged keys, their row): what an eager step hands the step log."""
    return tuple(logged), stack_logged(logged)


@dataclass
class CapturedStep:
    graph: torch.cuda.CUDAGraph
    inputs: Batch  # the bucket's fixed, padded input tensors on the device
    row: Tensor  # the logged row the graph writes


class PaddedSteps:
    """`step` on batches padded to their size bucket (`pad`), replayed from one CUDA graph
    per bucket when `capture`."""

    def __init__(self, step: StepFunction, model: nn.Module, optimizer: torch.optim.Optimizer,
                 growth: float, device: torch.device, capture: bool) -> None:
        self.step, self.model, self.optimizer = step, model, optimizer
        self.device, self.capture = device, capture
        self.buckets = SizeBuckets(growth)
        self.captured: dict[tuple, CapturedStep] = {}
        self.keys: tuple[str, ...] | None = None
        self._pool = None  # one memory pool for every bucket's graph: they never run at once
        self._rates: list[Tensor] = []

    def pad(self, batch: Batch) -> Batch:
        """`batch` padded to its bucket, where it is (on the host before its copy, see
        `meshgnn.training.prefetch`)."""
        layout = BatchLayout.of(batch)
        return pad_batch(batch, layout, self.buckets.capacities(layout))

    def __call__(self, padded: Batch) -> tuple[tuple[str, ...], Tensor]:
        """One training step on a padded batch on the device: (logged keys, logged row)."""
        if not self.capture:
            self.keys, row = logged_row(self.step(padded))
            return self.keys, row
        # the graph is fixed by the shapes of the inputs; their values are what it reads
        bucket = tuple((key, tuple(value.shape), value.dtype) for key, value in sorted(padded.items())
                       if isinstance(value, Tensor))
        entry = self.captured.get(bucket)
        if entry is None:
            entry = self.captured[bucket] = self._record(padded)
            log.info("captured the training step for a bucket of %d nodes, %d graphs (%d buckets so far)",
                     padded.num_nodes, padded.ptr.shape[0] - 1, len(self.captured))
        else:
            for key, value in entry.inputs.items():
                if isinstance(value, Tensor):
                    value.copy_(padded[key], non_blocking=True)
        for rate, group in zip(self._rates, self.optimizer.param_groups):
            rate.fill_(group["lr"])
        entry.graph.replay()
        return self.keys, entry.row.clone()  # the next replay overwrites the graph's own row

    def _record(self, inputs: Batch) -> CapturedStep:
        """Warm up (undone), then capture `step(inputs)`; nothing of the step runs yet."""
        saved = self._snapshot()
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with self._capturable(), torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                self.keys = tuple(self.step(inputs))
        torch.cuda.current_stream(self.device).wait_stream(side)
        self._restore(saved)
        graph = torch.cuda.CUDAGraph()
        with self._capturable(), torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            row = stack_logged(self.step(inputs))
        self._pool = graph.pool() if self._pool is None else self._pool
        return CapturedStep(graph, inputs, row)

    @contextlib.contextmanager
    def _capturable(self) -> Iterator[None]:
        """The optimiser as its capturable variant (step counts on the device, rates as the
        device tensors each replay reads) while warming up and capturing; as before after."""
        groups = self.optimizer.param_groups
        if not self._rates:
            self._rates = [torch.tensor(float(group["lr"]), device=self.device) for group in groups]
        saved = [(group["lr"], group.get("capturable", False)) for group in groups]
        for rate, group in zip(self._rates, groups):
            rate.fill_(group["lr"])
            group["lr"], group["capturable"] = rate, True
        for state in self.optimizer.state.values():
            if "step" in state and state["step"].device != self.device:
                state["step"] = state["step"].to(self.device)
        try:
            yield
        finally:
            for group, (lr, capturable) in zip(groups, saved):
                group["lr"], group["capturable"] = lr, capturable

    def _snapshot(self) -> dict:
        """What warm-up steps change: parameters, optimiser state (absent before the first
        step) and the random generators."""
        return {"params": [p.detach().clone() for p in self.model.parameters()],
                "state": {id(p): {k: v.clone() if isinstance(v, Tensor) else v for k, v in s.items()}
                          for p, s in self.optimizer.state.items()},
                "cpu_rng": torch.get_rng_state(), "cuda_rng": torch.cuda.get_rng_state(self.device)}

    @torch.no_grad()
    def _restore(self, saved: dict) -> None:
        for param, value in zip(self.model.parameters(), saved["params"]):
            param.copy_(value)
        for param, state in self.optimizer.state.items():
            before = saved["state"].get(id(param), {})
            for key, value in state.items():
                if not isinstance(value, Tensor):
                    continue
                if key in before:
                    value.copy_(before[key])
                else:  # a state the warm-up created is a fresh one's: zero moments, step 0
                    value.zero_()
        torch.set_rng_state(saved["cpu_rng"])
        torch.cuda.set_rng_state(saved["cuda_rng"], self.device)
