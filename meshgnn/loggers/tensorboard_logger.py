"""logger=tensorboard: scalars and images in <run dir>/tb, and the run as one HParams session.

The HParams tab is built from what each run declares, because no run writes an experiment
summary: with one, TensorBoard takes the first run's summary as the whole table's (its
hparams and metrics only), so a mixed folder lost the other problems' keys and metrics.
Without one, the plugin takes the union of every run's session-start hparams and, as
metrics, every scalar tag logged in the session runs: each problem's keys and metrics get
their columns, whatever run was read first.

The session is written in a file of its own (`SESSION_FILE`), rewritten whole: at launch
start with the session start (hparam `status`: "running"), at the end with the end status
too (STATUS_SUCCESS / STATUS_FAILURE / STATUS_UNKNOWN, and `status` "finished", "failed" or
"stopped"), so a crashed or interrupted run is listed, with its status. TensorBoard keeps the
first summary it reads for a tag; one file rewritten, not one per launch, lets a resumed
run's last launch speak for it. (A TensorBoard already open reads the rewrite on restart.)
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.summary.writer.record_writer import RecordWriter
from torch.utils.tensorboard.summary import image, scalar

from meshgnn.atomic import atomic_write_bytes
from meshgnn.loggers.base import RunInfo, Status
from meshgnn.loggers.events import EventFile

# Sorts before the epochs' event files (TensorBoard reads a folder's files in name order).
SESSION_FILE = "events.out.tfevents.0000000000.hparams"


class TensorBoardLogger:
    def __init__(self, run: RunInfo) -> None:
        self.log_dir = Path(run.run_dir) / "tb"
        self.events = EventFile(self.log_dir, purge_step=run.first_new_epoch if run.resumed else None)
        self.name, self.hparams, self.started = run.name, run.hparams, time.time()
        self._write_session([session_start(self.name, {**self.hparams, "status": "running"}, self.started)])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for tag, value in metrics.items():
            self.events.add_summary(scalar(tag, value), step)
        self.events.flush()

    def log_image(self, tag: str, picture: np.ndarray, step: int) -> None:
        """An RGB image [H, W, 3] uint8."""
        self.events.add_summary(image(tag, picture, dataformats="HWC"), step)
        self.events.flush()

    def log_final(self, metrics: Mapping[str, float], step: int) -> None:
        """Final results (test metrics, best value) as scalars: HParams metric columns."""
        self.log_metrics(metrics, step)

    def finish(self, status: Status) -> None:
        try:
            self.events.close()
        finally:
            self._write_session([session_start(self.name, {**self.hparams, "status": status.word}, self.started),
                                 session_end(status)])

    def _write_session(self, summaries: list[Summary]) -> None:
        buffer = io.BytesIO()
        records = RecordWriter(buffer)
        records.write(Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
        for summary in summaries:
            records.write(Event(wall_time=time.time(), step=0, summary=summary).SerializeToString())
        self.log_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.log_dir / SESSION_FILE, buffer.getvalue())


def session_start(group_name: str, hparams: Mapping[str, Any], start_time: float) -> Summary:
    """The HParams session start: booleans as booleans (not 1.0), numbers as numbers, the
    rest as text; `group_name` is the row's trial name."""
    info = plugin_data_pb2.SessionStartInfo(group_name=group_name, start_time_secs=start_time)
    for name, value in hparams.items():
        if isinstance(value, bool):  # before int: bool is an int subclass
            info.hparams[name].bool_value = value
        elif isinstance(value, (int, float)):
            info.hparams[name].number_value = float(value)
        else:
            info.hparams[name].string_value = "None" if value is None else str(value)
    return _summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=info))


def session_end(status: Status) -> Summary:
    info = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value(status.tensorboard),
                                          end_time_secs=time.time())
    return _summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=info))


def _summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    return Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data))])
