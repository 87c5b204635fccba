"""Turn SIGTERM / SIGINT into a polite stop request instead of an abrupt exit.

Cluster schedulers send SIGTERM before killing a job and users press Ctrl-C; either way the
trainer should finish the step it is in, write last.ckpt and say how to resume. A second
Ctrl-C interrupts immediately, as users expect.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


class StopRequests:
    SIGNALS = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested == "SIGINT" and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = self.SIGNALS[signum]

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
