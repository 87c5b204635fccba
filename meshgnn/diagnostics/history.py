"""A run's epoch records as numbers the rules can test: records in epoch order, one metric's
series (finite values, the epochs where it was not finite, how many records lack it), the
resolved config's values, and the slopes and changes the thresholds are stated in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class Series:
    """One metric over the run: its finite values with their epochs, and what was not usable."""

    epochs: list[float]
    values: list[float]
    nonfinite: list[int]   # epochs whose value is nan/inf
    missing: int           # records without the tag


class Context:
    """The sorted records and the resolved config one diagnosis reads (config keys as dotted paths)."""

    def __init__(self, records: list[dict], config: dict, has_config: bool, run_dir: str) -> None:
        self.records, self.config, self.has_config, self.run_dir = records, config, has_config, run_dir
        last = records[-1].get("epoch") if records else None
        self.last_epoch = int(number(last)) if is_number(last) else len(records)

    def series(self, key: str) -> Series:
        epochs, values, nonfinite, missing = [], [], [], 0
        for i, record in enumerate(self.records):
            value = number(record.get(key))
            epoch = number(record.get("epoch"))
            epoch = epoch if epoch is not None and math.isfinite(epoch) else float(i + 1)
            if value is None:
                missing += 1
            elif not math.isfinite(value):
                nonfinite.append(int(epoch))
            else:
                epochs.append(epoch)
                values.append(value)
        return Series(epochs, values, nonfinite, missing)

    def get(self, dotted: str) -> Any:
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def get_number(self, dotted: str) -> float | None:
        value = number(self.get(dotted))
        return value if value is not None and math.isfinite(value) else None


def sorted_records(history: list[dict]) -> list[dict]:
    """Records by epoch; a later record for the same epoch replaces an earlier one."""
    by_epoch: dict[float, dict] = {}
    unnumbered = []
    for record in history:
        epoch = number(record.get("epoch"))
        if epoch is None or not math.isfinite(epoch):
            unnumbered.append(record)
        else:
            by_epoch[epoch] = record
    return [by_epoch[e] for e in sorted(by_epoch)] + unnumbered


def number(value: Any) -> float | None:
    """A metric value as float ("nan"/"inf"/"-inf" strings included); None if absent or not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def is_number(value: Any) -> bool:
    parsed = number(value)
    return parsed is not None and math.isfinite(parsed)


def normalised_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs, divided by the mean |y| (fraction of its size per epoch)."""
    n = len(ys)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    scale = sum(abs(y) for y in ys) / n
    return slope / scale if scale > 0 else 0.0


def relative_change(first: float, last: float) -> float:
    if first == 0:
        return 0.0 if last == 0 else math.copysign(math.inf, last)
    return (last - first) / abs(first)
