"""Mixed precision for training: autocast regions and the fp16 gradient scaler, in one place
so the trainer, the throughput benchmark and the GPU tests run the same arithmetic.

bf16 and fp16 run matrix products (the MLPs: nearly all the FLOPs) in 16 bits under
`torch.autocast`; LayerNorm, reductions, scatter sums and the loss stay float32 (the loss is
computed outside the autocast region on float32 predictions). fp16's narrow exponent range
needs loss scaling (`torch.amp.GradScaler`); bf16 has float32's range and does not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """The forward pass's precision: a no-op for fp32.

    Without autocast's cache of 16-bit weight copies: CUDA graphs require it off (a copy cached
    at capture would never be refreshed as the weights change), and a compiled forward is
    specialised on it, so it must be the same inside a capture and outside. It saves nothing
    here anyway: each weight is used once per forward pass."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=DTYPES[precision], cache_enabled=False):
        yield


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for fp16; a disabled scaler (a pass-through) otherwise."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
