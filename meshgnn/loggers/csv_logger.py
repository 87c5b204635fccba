"""logger=csv: <run dir>/metrics.csv, one row per epoch, for spreadsheets and pandas.

Columns are `epoch` then the metric tags in the order they first appeared. An epoch with a
tag not seen before rewrites the file once with the column added (earlier rows leave it
empty), so every row always matches the header; otherwise a row is appended. A resumed run
drops the rows of epochs it trains again, as metrics.jsonl does. Images and final results
are not per-epoch values and are not written here (results.json has the results)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Mapping

import numpy as np

from meshgnn.atomic import atomic_write_text
from meshgnn.loggers.base import RunInfo, Status
from meshgnn.loggers.files import append_line

FILE_NAME = "metrics.csv"


class CsvLogger:
    def __init__(self, run: RunInfo) -> None:
        self.path = Path(run.run_dir) / FILE_NAME
        self.columns, self.rows = ["epoch"], []
        if self.path.is_file():
            with self.path.open(newline="") as f:
                reader = csv.DictReader(f)
                self.columns = list(reader.fieldnames or self.columns)
                self.rows = [row for row in reader if int(row["epoch"]) < run.first_new_epoch]
            self._rewrite()

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        row = {"epoch": str(step), **{k: _text(v) for k, v in metrics.items()}}
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new or not self.path.is_file():
            self.columns += new
            self._rewrite()
        else:
            append_line(self.path, _lines([row], self.columns, header=False).encode())

    def log_image(self, tag: str, picture: np.ndarray, step: int) -> None:
        pass

    def log_final(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def finish(self, status: Status) -> None:
        pass

    def _rewrite(self) -> None:
        atomic_write_text(self.path, _lines(self.rows, self.columns, header=True))


def _text(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else str(float(value))


def _lines(rows: list[dict[str, str]], columns: list[str], header: bool) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, restval="", lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
