"""Weights that do not fit a model: one line naming the first mismatched tensor."""

import pytest
import torch

from meshgnn.errors import UserError
from meshgnn.models import EdgeGNN
from meshgnn.weights import load_weights, weight_mismatch

TARGETS = [("temperature", 1), ("heat_flux", 2)]


def model(hidden_dim: int = 16) -> EdgeGNN:
    return EdgeGNN(5, 3, TARGETS, hidden_dim=hidden_dim, num_layers=1, mlp_layers=2, dropout=0.0,
                   aggregation="sum", num_levels=0, residual=False)


def test_fitting_weights_load_exactly():
    source, target = model(), model()
    load_weights(target, source.state_dict(), "a.ckpt", "fix")
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)


def test_another_hidden_dim_names_the_first_tensor_and_both_shapes():
    first = next(iter(model().state_dict()))
    target = model(16)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(UserError) as info:
        load_weights(target, model(32).state_dict(), "run/checkpoints/best.ckpt", "use hidden_dim 32")
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert message.startswith("run/checkpoints/best.ckpt: weights do not fit the model: ")
    assert f"tensor {first!r} is [32, 5] in the saved weights but [16, 5] in the model" in message
    assert message.endswith("; use hidden_dim 32")
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())  # nothing half-loaded


def test_renamed_missing_and_extra_tensors_are_named():
    state = model().state_dict()
    key = list(state)[3]
    renamed = {("old_name" if k == key else k): v for k, v in state.items()}
    assert weight_mismatch(model(), renamed) == (
        f"tensor {key!r} of the model is missing from the saved weights (it has 'old_name', which the "
        "model does not)")
    assert weight_mismatch(model(), {**state, "extra.bias": torch.zeros(2)}) == (
        "the saved weights hold 'extra.bias', which the model has no tensor for")
    assert weight_mismatch(model(), {**state, key: [1, 2]}) == f"{key!r} is a list, not a tensor"
