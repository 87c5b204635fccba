"""Per-column standardisation of node features, edge features and targets.

Fit on the training split only (validation and test must not leak into the statistics), with
float64 accumulation so a million nodes of float32 do not lose digits, and a floor on the
standard deviation so constant columns (a one-hot that never fires in a split) do not blow up.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from meshgnn.atomic import atomic_write_text
from meshgnn.errors import UserError

KEYS = ("x", "edge_attr", "y")


class Normalizer:
    def __init__(self, mean: dict[str, Tensor], std: dict[str, Tensor]) -> None:
        self.mean = {k: v.double() for k, v in mean.items()}
        self.std = {k: v.double() for k, v in std.items()}

    @classmethod
    def fit(cls, columns: dict[str, Tensor], std_floor: float) -> "Normalizer":
        """`columns[key]` is a [rows, features] matrix of training rows for each of KEYS."""
        moments = Moments()
        moments.add(columns)
        return moments.normalizer(std_floor)

    def normalize(self, key: str, values: Tensor) -> Tensor:
        """In the values' own precision: the statistics are exact, applying them need not be."""
        mean, std = self.mean[key].to(values), self.std[key].to(values)
        return (values - mean) / std

    def denormalize(self, key: str, values: Tensor) -> Tensor:
        mean, std = self.mean[key].to(values), self.std[key].to(values)
        return values * std + mean

    def state_dict(self) -> dict[str, Tensor]:
        state = {f"mean.{k}": v for k, v in self.mean.items()}
        state.update({f"std.{k}": v for k, v in self.std.items()})
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> "Normalizer":
        keys = list(dict.fromkeys(k.split(".", 1)[1] for k in state))
        return cls({k: state[f"mean.{k}"] for k in keys}, {k: state[f"std.{k}"] for k in keys})

    def to_json(self) -> dict:
        return {k: {"mean": self.mean[k].tolist(), "std": self.std[k].tolist()} for k in self.mean}

    def save(self, path: Path) -> None:
        """Atomically, so a full disk reports the path (StorageError) and keeps the old file."""
        atomic_write_text(Path(path), json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: Path) -> "Normalizer":
        try:
            raw = json.loads(Path(path).read_text())
            return cls({k: torch.tensor(v["mean"], dtype=torch.float64) for k, v in raw.items()},
                       {k: torch.tensor(v["std"], dtype=torch.float64) for k, v in raw.items()})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{path}: not a readable normalization.json ({exc}); re-export it "
                            "from the run that trained the model") from exc


class Moments:
    """Running per-column mean and variance, added chunk by chunk (one graph at a time), so a
    dataset larger than memory is fit in one streaming pass. Chunks merge with Chan et al.'s
    pairwise formula in float64, which stays exact where sum-of-squares would cancel."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self.mean: dict[str, Tensor] = {}
        self.m2: dict[str, Tensor] = {}

    def add(self, columns: dict[str, Tensor]) -> None:
        for key, values in columns.items():
            values = values.double()
            n, mean = values.shape[0], values.mean(dim=0)
            m2 = (values - mean).pow(2).sum(dim=0)
            if key not in self.count:
                self.count[key], self.mean[key], self.m2[key] = n, mean, m2
                continue
            total = self.count[key] + n
            delta = mean - self.mean[key]
            self.mean[key] = self.mean[key] + delta * n / total
            self.m2[key] = self.m2[key] + m2 + delta.pow(2) * self.count[key] * n / total
            self.count[key] = total

    def normalizer(self, std_floor: float) -> Normalizer:
        std = {k: (self.m2[k] / self.count[k]).sqrt().clamp_min(std_floor) for k in self.count}
        return Normalizer(dict(self.mean), std)
