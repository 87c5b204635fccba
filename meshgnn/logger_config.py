"""Schemas of the `logger` group (conf/logger/): which backends a run writes to and their
settings. Apart from meshgnn.config because a backend's section exists only when chosen, which
needs its own relation and its own one-line fix for a setting of an unchosen backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Optional

from meshgnn.constraints import Nested, OneOf, Relation, Text, check_values, key


@dataclass
class TensorBoardLoggerConfig:
    """logger=tensorboard: no settings (its files are <run dir>/tb)."""


@dataclass
class CsvLoggerConfig:
    """logger=csv: no settings (its file is <run dir>/metrics.csv)."""


@dataclass
class MlflowLoggerConfig:
    tracking_uri: str = key(Text(example="sqlite:///mlflow.db"))
    experiment_name: str = key(Text(example="meshgnn"))


@dataclass
class WandbLoggerConfig:
    project: str = key(Text(example="meshgnn"))
    entity: Optional[str] = key(Text(required=False), default=None)
    mode: str = key(OneOf(("online", "offline", "disabled")))


def _chosen_loggers_checked(v: Mapping[str, Any], prefix: str) -> Optional[str]:
    """Each chosen backend's settings against its schema (an unchosen one is None)."""
    for name, schema in LOGGER_BACKENDS.items():
        if v.get(name) is not None:
            check_values(schema, v[name], f"{prefix}.{name}", strict=False)
    return None


@dataclass
class LoggerConfig:
    """The `logger` group: a backend's section is set when it is chosen (logger=csv,
    'logger=[tensorboard,mlflow]', logger=many_loggers), None otherwise."""

    tensorboard: Optional[TensorBoardLoggerConfig] = key(Nested(), default=None)
    csv: Optional[CsvLoggerConfig] = key(Nested(), default=None)
    mlflow: Optional[MlflowLoggerConfig] = key(Nested(), default=None)
    wandb: Optional[WandbLoggerConfig] = key(Nested(), default=None)
    relations: ClassVar[tuple[Relation, ...]] = (_chosen_loggers_checked,)


LOGGER_BACKENDS: dict[str, type] = {"tensorboard": TensorBoardLoggerConfig, "csv": CsvLoggerConfig,
                                    "mlflow": MlflowLoggerConfig, "wandb": WandbLoggerConfig}


def unchosen_logger_message(overrides: list[str]) -> Optional[str]:
    """The fix for a setting of a backend that is not chosen (`logger.wandb.mode=offline` with
    the default logger=tensorboard; OmegaConf fails on the unset section with an assertion)."""
    for line in overrides:
        parts = line.lstrip("+~").split("=", 1)[0].split(".")
        if len(parts) > 2 and parts[0] == "logger" and parts[1] in LOGGER_BACKENDS:
            return (f"{line} sets logger.{parts[1]}, which is not chosen: choose it too, e.g. "
                    f"logger={parts[1]} or 'logger=[tensorboard,{parts[1]}]'")
    return None
