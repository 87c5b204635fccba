"""Device names as users write them (auto, cpu, cuda, cuda:N) -> torch devices."""

from __future__ import annotations

import torch

from meshgnn.errors import UserError


def resolve_device(name: str, option: str) -> torch.device:
    """`auto` is the GPU when one is visible, else the CPU. `option` is how the user set the
    name (`"trainer.device="`, `"--device "`), so the error says what to type instead."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"{option}{name} but no CUDA GPU is visible; use {option}cpu or {option}auto")
    return torch.device(name)
