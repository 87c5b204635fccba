"""TensorBoard event files written in the calling thread.

torch's SummaryWriter writes from a background thread: a full disk or a lost permission there
is a traceback printed by the thread, seen by the main thread (if at all) as the same
exception re-raised at some later call. Writing each record here, in this thread, through
`writing()`, makes such a failure the same one StorageError line as any other write, at the
epoch that caused it. The files are TensorBoard's own format (its RecordWriter), so
TensorBoard and its event reader read them unchanged.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from contextlib import suppress
from pathlib import Path

from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.record_writer import RecordWriter

from meshgnn.atomic import writing

_uid = itertools.count()


def _stamp_after_existing(log_dir: Path) -> int:
    """The file name's time, later than every event file already in `log_dir`.

    TensorBoard reads a directory's files in name order, so a resume's file must sort after
    the run's earlier ones or its purge hides nothing; within one second the pid and counter
    that follow the time would decide that order by chance."""
    stamps = [int(name.split(".")[3]) for name in (p.name for p in log_dir.glob("events.out.tfevents.*"))
              if name.split(".")[3].isdigit()] if log_dir.is_dir() else []
    return max([int(time.time()), *(s + 1 for s in stamps)])


class EventFile:
    """One new events.out.tfevents.* file in `log_dir`.

    `purge_step` (a resumed run) tells TensorBoard to hide every point at or after that step
    from earlier files, as SummaryWriter(purge_step=...) does."""

    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        self.path = Path(log_dir) / (f"events.out.tfevents.{_stamp_after_existing(Path(log_dir)):010d}."
                                     f"{socket.gethostname()}.{os.getpid()}.{next(_uid)}")
        with writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._records = RecordWriter(self.path.open("wb"))
        self._add(Event(wall_time=time.time(), file_version="brain.Event:2"))
        if purge_step is not None:
            self._add(Event(step=purge_step, file_version="brain.Event:2"))
            self._add(Event(step=purge_step, session_log=SessionLog(status=SessionLog.START)))
        self.flush()

    def _add(self, event: Event) -> None:
        with writing(self.path):
            self._records.write(event.SerializeToString())

    def add_summary(self, summary: Summary, step: int) -> None:
        self._add(Event(wall_time=time.time(), step=step, summary=summary))

    def flush(self) -> None:
        """Flushed to the file system: a full disk shows here at the latest."""
        with writing(self.path):
            self._records.flush()

    def close(self) -> None:
        if self._records.closed:
            return
        try:
            self.flush()
        finally:
            with suppress(OSError):  # a failed flush above is the error to report
                self._records.close()
