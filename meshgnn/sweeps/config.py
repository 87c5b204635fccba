"""Config of meshgnn's Optuna sweeper (`hydra/sweeper=meshgnn_optuna`), with each key's
constraint beside it, as in meshgnn/config.py (the launch checks apply them before any trial).

Kept free of Optuna imports: Hydra imports every plugin at start-up, even for `--help`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf, SamplerConfig
from hydra_plugins.hydra_optuna_sweeper.config import defaults as plugin_defaults

from meshgnn.constraints import Check, Nested, OneOf, Text, at_least, fraction, key

SWEEPER_TARGET = "hydra_plugins.meshgnn_optuna_sweeper.MeshgnnOptunaSweeper"


@dataclass(frozen=True)
class StorageURL(Check):
    """An Optuna storage: a SQLAlchemy URL whose dialect SQLAlchemy knows (or none: in memory).
    Checked by parsing, without connecting, so a typo costs a second, not a failed sweep."""

    def problem(self, value: Any, key: str) -> Optional[str]:
        if value is None:
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            make_url(str(value)).get_dialect()
        except (ArgumentError, NoSuchModuleError, ValueError) as exc:
            return (f"is not a database URL SQLAlchemy can open ({str(exc).splitlines()[0]}); use e.g. "
                    f"{key}=sqlite:///multirun/optuna.db or postgresql://user:pass@host/db")
        return None


def shown_url(url: Optional[str]) -> Optional[str]:
    """The storage URL as logs and result files show it: its password, if any, as ***."""
    if url is None:
        return None
    from sqlalchemy.engine import make_url

    return make_url(str(url)).render_as_string(hide_password=True)



@dataclass
class PrunerConf:
    """`none`, `median` (MedianPruner) or `hyperband` (HyperbandPruner), on epochs."""

    name: str = key(OneOf(("none", "median", "hyperband")), default="median")
    n_startup_trials: int = key(at_least(0), default=5)
    n_warmup_steps: int = key(at_least(0), default=2)
    min_resource: int = key(at_least(1), default=1)
    reduction_factor: int = key(at_least(2), default=3)


@dataclass
class MeshgnnSweeperConf(OptunaSweeperConf):
    """The plugin's keys (redeclared here only to carry their checks) and the pruner. The
    sampler's own arguments are Optuna's (hydra.sweeper.sampler), checked when it is built."""

    _target_: str = key(Text(), default=SWEEPER_TARGET)
    defaults: List[Any] = key(Nested(), default_factory=lambda: list(plugin_defaults))
    sampler: SamplerConfig = key(Nested(), default="???")
    direction: Any = key(OneOf(("minimize", "maximize")), default="minimize")
    storage: Optional[Any] = key(StorageURL(), default=None)
    study_name: Optional[str] = key(Text(required=False), default=None)
    n_trials: int = key(at_least(1), default=20)
    n_jobs: int = key(at_least(1, "trials in flight at once (a parallel launcher)"), default=2)
    max_failure_rate: float = key(fraction(), default=0.0)
    search_space: Optional[Dict[str, Any]] = key(Nested(), default=None)
    custom_search_space: Optional[str] = key(Text(required=False), default=None)
    params: Optional[Dict[str, str]] = key(Nested(), default=None)  # each value checked at launch
    pruner: PrunerConf = key(Nested(), default_factory=PrunerConf)
    # Workers sharing a study: each running trial's heartbeat every heartbeat_interval seconds;
    # a RUNNING trial without one for grace_period seconds is a dead worker's, recorded FAIL "stale".
    heartbeat_interval: int = key(at_least(1, "seconds between a running trial's heartbeats"), default=10)
    grace_period: int = key(at_least(1, "seconds without a heartbeat before a trial is stale"), default=60)


def register_sweeper() -> None:
    ConfigStore.instance().store(group="hydra/sweeper", name="meshgnn_optuna", node=MeshgnnSweeperConf,
                                 provider="meshgnn")
