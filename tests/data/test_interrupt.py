"""A real SIGTERM during `parallel_map` inside `interruptible`: workers stopped, one line, the
results finished so far handed to the caller."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from meshgnn.data.interrupt import interruptible
from meshgnn.data.parallel import parallel_map
from meshgnn.errors import Interrupted

STOP_AT = 40


def _job(index: int) -> int:
    if index == STOP_AT:
        os.kill(os.getppid() if multiprocessing.parent_process() else os.getpid(), signal.SIGTERM)
    time.sleep(0.005)
    return index * index


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_the_workers_and_keeps_what_was_done(workers):
    kept = []

    def keep(stop) -> str:
        kept.extend(stop.done)
        return f"{len(stop.done)} kept"

    with pytest.raises(Interrupted) as info:
        with interruptible("squaring numbers", keep):
            parallel_map(_job, range(400), workers, "squaring", progress=False, unit="numbers")
    message = str(info.value)
    assert message.startswith("stopped by SIGTERM while squaring numbers (")
    assert message.endswith(f"/400 numbers); {len(kept)} kept")
    assert kept == [i * i for i in range(len(kept))] and len(kept) < 400
    assert not multiprocessing.active_children()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is restored
