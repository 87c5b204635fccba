"""MetricsLog: metrics.jsonl plus the chosen backends, closed with the launch's status."""

from __future__ import annotations

import itertools

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from meshgnn.errors import Interrupted
from meshgnn.loggers import events as events_module
from meshgnn.loggers.base import RunInfo, Status
from meshgnn.loggers.csv_logger import CsvLogger
from meshgnn.loggers.fanout import Loggers
from meshgnn.training.metrics_log import MetricsLog, read_metrics


class Recorder:
    """A backend that keeps what it got (and can fail to finish), beside real ones."""

    def __init__(self, fail_to_finish: bool = False) -> None:
        self.fail_to_finish, self.calls = fail_to_finish, []

    def log_metrics(self, metrics, step):
        self.calls.append(("metrics", step, dict(metrics)))

    def log_image(self, tag, picture, step):
        self.calls.append(("image", step, tag))

    def log_final(self, metrics, step):
        self.calls.append(("final", step, dict(metrics)))

    def finish(self, status):
        self.calls.append(("finish", status))
        if self.fail_to_finish:
            raise OSError("lost the connection")


def test_without_loggers_epochs_go_to_metrics_jsonl_and_tensorboard(tmp_path):
    log = MetricsLog(tmp_path)
    log.write(1, {"val/loss/total": 2.0})
    log.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(s.step, s.value) for s in events.Scalars("val/loss/total")] == [(1, 2.0)]
    assert read_metrics(tmp_path) == [{"epoch": 1, "val/loss/total": 2.0}]


@pytest.mark.parametrize("first_file_counter", [0, 9])  # 9 -> 10: "...10" sorts before "...9" by name
def test_a_resume_drops_the_epochs_it_trains_again(tmp_path, monkeypatch, first_file_counter):
    monkeypatch.setattr(events_module, "_uid", itertools.count(first_file_counter))
    with MetricsLog(tmp_path) as log:
        for epoch in (1, 2, 3):
            log.write(epoch, {"val/loss/total": float(epoch)})
    with MetricsLog(tmp_path, first_new_epoch=3) as log:
        log.write(3, {"val/loss/total": 30.0})
    assert [r["val/loss/total"] for r in read_metrics(tmp_path)] == [1.0, 2.0, 30.0]
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(s.step, s.value) for s in events.Scalars("val/loss/total")] == [(1, 1.0), (2, 2.0), (3, 30.0)]


@pytest.mark.parametrize("error, status", [(None, Status.SUCCESS), (Interrupted("stopped by SIGTERM"), Status.KILLED),
                                           (KeyboardInterrupt(), Status.KILLED), (ValueError("bug"), Status.FAILED)])
def test_every_backend_is_closed_with_the_launchs_status(tmp_path, error, status):
    failing, recorder = Recorder(fail_to_finish=True), Recorder()
    backends = [failing, CsvLogger(RunInfo(tmp_path, "run")), recorder]
    # the launch's own error is the one reported; a failure to close only when there is none
    with pytest.raises(OSError if error is None else type(error)):
        with MetricsLog(tmp_path, loggers=Loggers(backends)) as log:
            log.write(1, {"val/loss/total": 1.0})
            log.write_results({"best/val/loss/total": 1.0, "test/u/rel_l2": 0.5, "never": float("inf")}, 1)
            if error is not None:
                raise error
    assert failing.calls[-1] == recorder.calls[-1] == ("finish", status)
    assert ("final", 1, {"best/val/loss/total": 1.0, "test/u/rel_l2": 0.5}) in recorder.calls
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["epoch,val/loss/total", "1,1.0"]
