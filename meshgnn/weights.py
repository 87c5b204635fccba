"""Loading saved weights into a model, or one line that says which tensor does not fit.

`nn.Module.load_state_dict` reports every mismatch at once, in a multi-line RuntimeError
that ends up as a long traceback (a changed `hidden_dim` touches every layer). A user needs
the first tensor that differs, its two shapes and what to do about it.

This module sits at the top of the package, next to `errors.py`, because it depends on
torch alone: the trainer (resume), the experiment (init_from) and inference (packages,
exports) all load weights, and `training` must not import `models` (layers point one way).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from meshgnn.errors import UserError


def weight_mismatch(model: nn.Module, state: Mapping[str, Any]) -> str | None:
    """What first keeps `state` from loading into `model` (in the model's parameter order), or
    None when every tensor is there, expected and of the model's shape."""
    expected = model.state_dict()
    unexpected = [key for key in state if key not in expected]
    for key, tensor in expected.items():
        if key not in state:
            instead = f" (it has {unexpected[0]!r}, which the model does not)" if unexpected else ""
            return f"tensor {key!r} of the model is missing from the saved weights{instead}"
        saved = state[key]
        if not isinstance(saved, Tensor):
            return f"{key!r} is a {type(saved).__name__}, not a tensor"
        if saved.shape != tensor.shape:
            return (f"tensor {key!r} is {_shape(saved)} in the saved weights but {_shape(tensor)} "
                    "in the model")
    if unexpected:
        return f"the saved weights hold {unexpected[0]!r}, which the model has no tensor for"
    return None


def load_weights(model: nn.Module, state: Mapping[str, Any], source: str, fix: str) -> None:
    """Load `state` into `model` exactly (strict), or raise one UserError line:
    `<source>: weights do not fit the model: <first mismatch>; <fix>`."""
    problem = weight_mismatch(model, state)
    if problem is not None:
        raise UserError(f"{source}: weights do not fit the model: {problem}; {fix}")
    model.load_state_dict(state)


def _shape(tensor: Tensor) -> str:
    return "[" + ", ".join(str(n) for n in tensor.shape) + "]"
