"""The learning-rate schedule: a pure function of the step, driven through torch's LambdaLR."""

import math

import pytest
import torch

from meshgnn.training.schedule import Schedule

COSINE = Schedule(lr=1e-3, min_lr=1e-5, warmup_steps=4, total_steps=20, kind="cosine")


def rates_through_lambda_lr(schedule: Schedule, start: int, steps: int, restored_lr: float = 0.5) -> list[float]:
    """The rate of each optimiser step from schedule step `start` on, as the trainer drives it:
    the scheduler made at the first step, stepped before every later one."""
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.AdamW([weight], lr=restored_lr)
    optimizer.param_groups[0]["initial_lr"] = restored_lr  # as a restored optimiser state holds it
    scheduler = schedule.lr_scheduler(optimizer, start)
    rates = []
    for index in range(steps):
        if index:
            scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
        weight.sum().backward()
        optimizer.step()
    return rates


@pytest.mark.parametrize("schedule", [COSINE, Schedule(2e-4, 0.0, 0, 10, "constant")])
def test_lambda_lr_gives_the_pure_function_at_every_step_from_any_starting_step(schedule):
    straight = rates_through_lambda_lr(schedule, 0, 25)
    assert straight == [schedule.lr_at(s) for s in range(25)]
    assert rates_through_lambda_lr(schedule, 7, 18) == straight[7:]  # a resume at step 7: the same curve


def test_warmup_then_cosine_down_to_min_lr():
    assert COSINE.lr_at(0) == pytest.approx(1e-3 / 4)
    assert COSINE.lr_at(3) == pytest.approx(1e-3)  # the warm-up ends at the peak
    assert COSINE.lr_at(12) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * 0.5)))
    assert COSINE.lr_at(20) == pytest.approx(1e-5) and COSINE.lr_at(100) == pytest.approx(1e-5)
    assert all(COSINE.lr_at(s) >= COSINE.lr_at(s + 1) for s in range(4, 30))
