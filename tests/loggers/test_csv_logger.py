"""metrics.csv: one row per epoch under a header that grows with new metrics; resume-safe."""

from __future__ import annotations

import csv

from meshgnn.loggers.base import RunInfo
from meshgnn.loggers.csv_logger import CsvLogger


def rows(run_dir) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_new_metric_adds_a_column_and_earlier_rows_leave_it_empty(tmp_path):
    logger = CsvLogger(RunInfo(tmp_path, "run"))
    logger.log_metrics({"train/loss/total": 2.0, "lr": 1e-3}, 1)
    logger.log_metrics({"train/loss/total": 1.5, "lr": 1e-3, "val/u/rel_l2": 0.25}, 2)
    logger.log_metrics({"lr": 5e-4, "train/loss/total": 1.0, "val/u/rel_l2": float("nan")}, 3)
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0] == "epoch,train/loss/total,lr,val/u/rel_l2"
    assert [(r["epoch"], r["train/loss/total"], r["val/u/rel_l2"]) for r in rows(tmp_path)] == [
        ("1", "2.0", ""), ("2", "1.5", "0.25"), ("3", "1.0", "nan")]


def test_a_resumed_run_drops_the_rows_it_trains_again(tmp_path):
    first = CsvLogger(RunInfo(tmp_path, "run"))
    for epoch in (1, 2, 3):  # epoch 3 logged, then killed before its checkpoint
        first.log_metrics({"train/loss/total": float(epoch)}, epoch)
    resumed = CsvLogger(RunInfo(tmp_path, "run", first_new_epoch=3))
    resumed.log_metrics({"train/loss/total": 30.0}, 3)
    assert [(r["epoch"], r["train/loss/total"]) for r in rows(tmp_path)] == [("1", "1.0"), ("2", "2.0"), ("3", "30.0")]
