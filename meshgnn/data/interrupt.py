"""SIGTERM / SIGINT during data preparation: stop the work, keep no half cache, say how to go on.

Training turns these signals into a stop request that it checks between steps; generating or
converting a dataset has no such natural point and runs in worker processes, so here the
signal raises `StopSignal` in the main thread, `parallel_map` terminates its workers as it
passes through, and `interruptible` turns it into `Interrupted` (exit 3, like a training stop)
with one line naming what was stopped, how far it got and what was kept.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from meshgnn.errors import Interrupted

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignal(BaseException):
    """A stop signal arrived; a BaseException so that no `except Exception` swallows it.

    `progress` ("412/1000 samples") and `done` (the results finished, in order) are filled
    in by the `parallel_map` it passes through."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name
        self.progress: str | None = None
        self.done: list[Any] = []


@contextmanager
def interruptible(what: str, kept: Callable[[StopSignal], str]) -> Iterator[None]:
    """Within the block SIGTERM and SIGINT raise StopSignal (once; later ones are ignored
    while the work is wound down); it leaves as `Interrupted("stopped by SIGTERM while
    <what> (<progress>); <kept(stop)>")`. Outside the main thread signals cannot be caught
    and the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def handle(signum: int, frame: FrameType | None) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise StopSignal(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, handle) for signum in SIGNALS}
    try:
        yield
    except StopSignal as stop:
        progress = f" ({stop.progress})" if stop.progress else ""
        raise Interrupted(f"stopped by {stop.name} while {what}{progress}; {kept(stop)}") from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
