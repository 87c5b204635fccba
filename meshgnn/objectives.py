"""The run's objective and targets, checked before any data work: which metric tags a run
logs, the value of `objective` that train.py returns (what a sweep optimises), the predicted
fields of a data config.
"""

from __future__ import annotations

import math

from omegaconf import DictConfig

from meshgnn.data.sources import get_source
from meshgnn.errors import UserError
from meshgnn.training.losses import TERMS


def metric_tags(targets: list[str]) -> set[str]:
    """Every tag a run logs each epoch (DESIGN.md "Names that users see"): what `objective`, and
    so best.ckpt and early stopping, may follow."""
    tags = {"consistency/grad", "lr", "epoch_time_s"}
    for split in ("train", "val"):
        tags |= {f"{split}/loss/{term}" for term in (*TERMS, "total")}
        tags |= {f"{split}/{name}/l1" for name in targets}
    tags |= {f"val/{name}/{m}" for name in targets for m in ("rel_l2", "rel_l2_median")}
    return tags


def check_objective(cfg: DictConfig, targets: list[str]) -> None:
    """Refuse an objective that is no epoch metric: a test/ tag is measured once, after
    training, with the best.ckpt that the objective itself is meant to choose."""
    if cfg.objective.startswith("test/"):
        name = cfg.objective.split("/")[1]
        example = f"val/{name}/rel_l2" if name in targets else "val/loss/total"
        raise UserError(f"objective={cfg.objective} is measured only after training, so best.ckpt and early "
                        "stopping cannot follow it (and choosing epochs by the test set would leak it); "
                        f"choose a validation metric, e.g. objective={example}")
    if cfg.objective not in metric_tags(targets):
        raise UserError(f"objective={cfg.objective!r} is not a metric of data={cfg.data.name}; choose one "
                        f"of: {', '.join(sorted(metric_tags(targets)))}")


def objective_value(cfg: DictConfig, history: list[dict[str, float]]) -> float:
    """Best value of `cfg.objective` over the epochs (the epoch best.ckpt holds); NaN when no
    epoch was trained (`trainer.epochs=0` only tests)."""
    values = [h[cfg.objective] for h in history]
    if not values:
        return math.nan
    return float(min(values) if cfg.objective_mode == "min" else max(values))


def target_names(data_cfg: DictConfig) -> list[str]:
    """The predicted fields, known before any data is read (for config checks)."""
    if data_cfg.name == "mesh_folder":
        return list(data_cfg.targets)
    return [f.name for f in get_source(data_cfg.name).spec.targets]


def check_target_weights(cfg: DictConfig, names: list[str]) -> None:
    unknown = sorted(set(cfg.loss.target_weights) - set(names))
    if unknown:
        raise UserError(f"loss.target_weights names unknown target(s) {', '.join(unknown)}; the "
                        f"targets of data={cfg.data.name} are {', '.join(names)}")

