"""Config of meshgnn's Optuna sweeper (`hydra/sweeper=meshgnn_optuna`).

Kept free of Optuna imports: Hydra imports every plugin at start-up, even for `--help`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf

SWEEPER_TARGET = "hydra_plugins.meshgnn_optuna_sweeper.MeshgnnOptunaSweeper"


@dataclass
class PrunerConf:
    """`none`, `median` (MedianPruner) or `hyperband` (HyperbandPruner), on epochs."""

    name: str = "median"
    n_startup_trials: int = 5
    n_warmup_steps: int = 2
    min_resource: int = 1
    reduction_factor: int = 3


@dataclass
class MeshgnnSweeperConf(OptunaSweeperConf):
    _target_: str = SWEEPER_TARGET
    pruner: PrunerConf = field(default_factory=PrunerConf)


def register_sweeper() -> None:
    ConfigStore.instance().store(group="hydra/sweeper", name="meshgnn_optuna", node=MeshgnnSweeperConf,
                                 provider="meshgnn")
