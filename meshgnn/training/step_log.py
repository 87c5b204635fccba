"""Training steps' logged values, held on the device until the trainer reads many at once.

Reading a GPU tensor's value (`float(t)`, `.item()`) waits for every kernel queued before it:
a step that reads its own loss cannot be queued while the previous step still runs, and at
the batch sizes users train on (a few thousand nodes) the GPU then idles between steps. So a
step only queues one row of its logged values (loss components, gradient norm), and the
trainer reads the rows of all steps since the last read in one transfer: every
`log_every_steps` steps, at the end of an epoch and before it saves anything. The divergence
checks, the epoch's sums, the step losses and the progress figures come from that read.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class StepRecord:
    """What the host knows of a step without reading the device: where it was and its size."""

    step: int  # the global step count after it
    epoch: int  # 1-based
    graphs: int  # real graphs of its batch (not counting pad graphs)


@dataclass(frozen=True)
class ReadStep:
    record: StepRecord
    values: dict[str, float]


class PendingSteps:
    """Rows of logged values of the steps not read yet (device tensors, in step order)."""

    def __init__(self) -> None:
        self._rows: list[Tensor] = []
        self._records: list[StepRecord] = []
        self._keys: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, keys: tuple[str, ...], row: Tensor, record: StepRecord) -> None:
        if self._keys is not None and keys != self._keys:
            raise RuntimeError(f"a step logged {keys}, the steps before it {self._keys}")
        self._keys = keys
        self._rows.append(row)
        self._records.append(record)

    def read(self) -> list[ReadStep]:
        """Every pending step's values (one device-to-host transfer), oldest first; clears them."""
        if not self._rows:
            return []
        rows = torch.stack(self._rows).tolist()
        steps = [ReadStep(record, dict(zip(self._keys, row))) for record, row in zip(self._records, rows)]
        self._rows, self._records = [], []
        return steps
