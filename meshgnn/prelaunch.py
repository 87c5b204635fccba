"""Checks before any work: compose the config from the command line as hydra.main will, and
refuse a bad launch in one line before Hydra creates (or writes into) a run directory.

The one pre-Hydra composition: `meshgnn.distributed.launch` calls `check_launch` for every
launch (a single process, and rank 0 under torchrun, where the composed config also names
the run directory all ranks agree on). It checks
- every value of the composed config and of every stage (meshgnn.config.validate);
- for a sweep, every value each comma-list override and each hydra.sweeper.params entry can
  take (choices, and both bounds of an interval or range), and the sweeper's own keys;
- the paths in resume= and init_from= (a run directory, or a meshgnn checkpoint file);
- that no `+key=`/`++key=` adds a key the schema lacks (a typo Hydra's own hint lets through).
Hydra's composition errors (unknown key, wrong type, malformed override) become one line
naming the override, an unknown key with its close matches. Import-light: torch is loaded
only to read a checkpoint file.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import sys
import typing
from pathlib import Path
from typing import Any, Iterable

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from meshgnn.boundary import one_line
from meshgnn.config import Config, validate
from meshgnn.logger_config import unchosen_logger_message
from meshgnn.constraints import check_values
from meshgnn.errors import UserError
from meshgnn.resume import check_start_paths
from meshgnn.sweeps.config import SWEEPER_TARGET, MeshgnnSweeperConf
from meshgnn.sweeps.launchers import check_launcher


# Old spellings of an override that now means something else, and what they are replaced by.
RENAMED_OVERRIDES = {"trainer=debug": "debug=default"}


def renamed_overrides(argv: list[str], printing: bool = False) -> list[str]:
    """`argv` with old spellings replaced, each with a note (rank 0 only under torchrun): on
    stdout, or on stderr when the command only prints (--cfg job > file stays YAML; an error
    stays the one line on stderr of a launch). `trainer=debug` sat before experiment= in the
    defaults list and could not shrink a mesh folder or a staged run; debug=default, applied
    last, shrinks any choice."""
    out = [argv[0]]
    for arg in argv[1:]:
        new = RENAMED_OVERRIDES.get(arg)
        if new and os.environ.get("RANK", "0") == "0":
            print(f"note: {arg} is now {new} (the debug switch, applied after every other choice: "
                  f"tiny data, narrow model, 2 epochs, 2 per stage); running with {new}",
                  file=sys.stderr if printing else sys.stdout, flush=True)
        out.append(new or arg)
    return out


def config_directory(args: Any, config_dir: Path) -> Path:
    """The config directory hydra.main uses (train.py's conf/, or --config-path)."""
    directory = Path(config_dir)
    return (directory.parent / args.config_path).resolve() if args.config_path else directory


def is_multirun(args: Any, cfg: DictConfig) -> bool:
    return bool(args.multirun) or str(cfg.hydra.mode).endswith("MULTIRUN")


def check_launch(args: Any, config_dir: Path, job_name: str) -> DictConfig:
    """The composed config (with its `hydra` node) of a launch that passed every check, or
    one UserError line. `args` is Hydra's parsed command line (old spellings read as their
    replacements, as `renamed_overrides` gives them to Hydra)."""
    parsed = parse_overrides([RENAMED_OVERRIDES.get(o, o) for o in args.overrides])
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    sweeps = [o for o in parsed if o.is_sweep_override()]
    with initialize_config_dir(config_dir=str(config_directory(args, config_dir)), version_base="1.3",
                               job_name=job_name):
        cfg = compose_overrides(args, plain)
        check_added_keys(parsed, cfg)
        if sweeps and not is_multirun(args, cfg):
            o = sweeps[0]
            raise UserError(f"override {o.input_line!r} lists several values for {o.key_or_group}: that is "
                            "a sweep; add -m (python train.py -m ...) or give one value")
        validate(cfg)
        check_start_paths(cfg.resume, cfg.init_from)
        if is_multirun(args, cfg):
            check_sweep(args, cfg, plain, sweeps)
    return cfg


def parse_overrides(overrides: list[str]) -> list[Override]:
    """Hydra's parse of each override; a malformed one is refused naming it and its key."""
    parser = OverridesParser.create()
    out = []
    for line in overrides:
        try:
            out.extend(parser.parse_overrides([line]))
        except HydraException as exc:
            key = line.split("=", 1)[0].lstrip("+~") or line
            reason = one_line(exc).replace(f"Error parsing override '{line}'; ", "")
            raise UserError(f"override {line!r} (key {key}) cannot be parsed ({reason}); check its brackets "
                            f"and quotes, e.g. {key}=value, or quote the whole value: {key}='...'") from exc
    return out


def compose_overrides(args: Any, overrides: list[str]) -> DictConfig:
    """compose() as hydra.main does it; a composition error is one UserError line."""
    try:
        return compose(args.config_name or "config", overrides=overrides, return_hydra_config=True)
    except MissingConfigException as exc:
        if exc.options:
            group, _, option = str(exc.missing_cfg_file).rpartition("/")
            raise UserError(f"{group}={option}: no such option of {group}; choose one of "
                            f"{', '.join(exc.options)}") from exc
        raise UserError(one_line(exc)) from exc
    except AssertionError as exc:  # OmegaConf's, for a key set under an unset (None) section
        raise UserError(unchosen_logger_message(overrides) or one_line(exc)) from exc
    except (HydraException, OmegaConfBaseException) as exc:
        unknown = _NOT_OVERRIDABLE.search(str(exc))
        if unknown:  # Hydra's hint to add it with `+` would store the typo
            line = next((o for o in overrides if o.split("=", 1)[0] == unknown.group(1)), unknown.group(1))
            base = compose_overrides(args, [o for o in overrides if o != line])
            raise UserError(unknown_key_message(line, unknown.group(1), base) or one_line(exc)) from exc
        raise UserError(f"{one_line(exc)}; check the spelling (`python train.py --cfg job` prints every "
                        "key, `--help` every group)") from exc


# ------------------------------------------------------------------ keys the schema lacks
_NOT_OVERRIDABLE = re.compile(r"Could not override '([^']+)'")


def schema_gap(cfg: DictConfig, key: str) -> tuple[str, str, list[str]] | None:
    """Where dotted `key` leaves the schema: (the typed section it falls in, the name it
    lacks, that section's own names), or None when every part is a schema field or the key
    runs into an open mapping (loss.target_weights, a stage's optim/trainer changes). The
    names under a mapping of schemas (stages.<name>) are free, the fields below them are not."""
    if key.split(".")[0] == "hydra":  # Hydra's and its plugins' schemas (hydra.launcher.*): the node's own keys
        return _node_gap(cfg, key)
    node: Any = cfg
    schema: Any = Config  # the root, whatever composition typed it as
    done: list[str] = []
    parts = key.split(".")
    while parts:
        part = parts.pop(0)
        if typing.get_origin(schema) is dict:  # Dict[str, X]: any name, then X's fields
            schema = typing.get_args(schema)[1]
        elif dataclasses.is_dataclass(schema):
            hints = typing.get_type_hints(schema)
            if part not in hints or part not in {f.name for f in dataclasses.fields(schema)}:
                return ".".join(done), part, [f.name for f in dataclasses.fields(schema)]
            schema = _unwrap_optional(hints[part])
        else:
            return None
        done.append(part)
        node = node.get(part) if isinstance(node, DictConfig) else None
        if schema is Any and isinstance(node, DictConfig):  # data: typed by the chosen option's schema
            schema = OmegaConf.get_type(node)
    return None


def _node_gap(cfg: DictConfig, key: str) -> tuple[str, str, list[str]] | None:
    """schema_gap for a key under `hydra`, whose typed nodes (not our dataclasses) know their keys."""
    node: Any = cfg
    done: list[str] = []
    for part in key.split("."):
        if not isinstance(node, DictConfig) or OmegaConf.get_type(node) is dict:  # an open mapping
            return None
        if part not in node:
            return ".".join(done), part, [str(k) for k in node.keys()]
        node = node[part]
        done.append(part)
    return None


def _unwrap_optional(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) is typing.Union and len(args) == 1 else hint


def unknown_key_message(line: str, key: str, cfg: DictConfig) -> str | None:
    """One line for an override naming a key no schema section has, with its close matches."""
    gap = schema_gap(cfg, key)
    if gap is None:
        return None
    section, name, names = gap
    owner = f"{section} has no key {name!r}" if section else f"the config has no top-level key {name!r}"
    close = [f"{section}.{c}" if section else c for c in difflib.get_close_matches(name, names, n=3, cutoff=0.6)]
    value = line.split("=", 1)[1] if "=" in line else "..."
    fix = f"did you mean {' or '.join(close)}? e.g. {close[0]}={value}" if close else f"its keys are {', '.join(names)}"
    adding = " (`+` cannot add keys to a schema-backed section)" if line.lstrip().startswith("+") else ""
    printed = "hydra" if key.split(".")[0] == "hydra" else "job"
    return (f"override {line!r}: {owner}{adding}; {fix} (`python train.py --cfg {printed}` prints every key)")


def check_added_keys(parsed: list[Override], cfg: DictConfig) -> None:
    """Refuse `+key=`/`++key=` that adds a key the schema lacks (Hydra suggests `+` for a typo,
    and the run then trains with the typo stored). Adding a group option (`+experiment=...`),
    hydra.* keys and entries of open mappings (stages, loss.target_weights) stay allowed."""
    groups = set(cfg.hydra.runtime.choices)
    for override in parsed:
        key = override.key_or_group
        if not (override.is_add() or override.is_force_add()) or override.is_hydra_override():
            continue
        if override.package is not None or key in groups:  # a group option, not a key
            continue
        message = unknown_key_message(override.input_line, key, cfg)
        if message:
            raise UserError(message)


# ------------------------------------------------------------------ sweeps
def sweep_values(override: Override) -> list[Any]:
    """Every value a sweep override can give its key: the choices, or a range's or an
    interval's two ends (the values in between are inside the same bounds)."""
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return list(value.list)
    if isinstance(value, RangeSweep):
        items = list(override.sweep_iterator())
        return [items[0], items[-1]] if items else []
    if isinstance(value, IntervalSweep):
        return [value.start, value.end]
    return [value]


def _sweeper_params(cfg: DictConfig) -> Iterable[Override]:
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    return parse_overrides([f"{key}={value}" for key, value in params.items()])


def check_sweep(args: Any, cfg: DictConfig, plain: list[str], sweeps: list[Override]) -> None:
    """Each value of each sweep override and sweeper param, on top of the base config, and
    the sweeper's own keys."""
    if OmegaConf.select(cfg, "hydra.sweeper._target_") == SWEEPER_TARGET:
        sweeper = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
        check_values(MeshgnnSweeperConf, sweeper, "hydra.sweeper", strict=False)
    check_launcher(OmegaConf.to_container(cfg.hydra.launcher, resolve=False))
    groups = set(cfg.hydra.runtime.choices)
    for override in [*sweeps, *_sweeper_params(cfg)]:
        key = override.key_or_group.removeprefix("hydra.sweeper.params.")
        for value in sweep_values(override):
            where = f"sweep value {key}={value}"
            if key in groups:  # a config group option: compose it
                variant = compose_overrides(args, [*plain, f"{key}={value}"])
            else:
                variant = with_value(cfg, key, value, where)
            validate(variant, where=where)


def with_value(cfg: DictConfig, key: str, value: Any, where: str) -> DictConfig:
    """A copy of `cfg` with `key` set to `value`, type-checked by the schema."""
    if isinstance(value, float) and value.is_integer() and isinstance(OmegaConf.select(cfg, key), int):
        value = int(value)  # interval(16, 64) on an integer key: Optuna samples integers
    out = cfg.copy()
    try:
        OmegaConf.update(out, key, value, merge=False)
    except OmegaConfBaseException as exc:
        raise UserError(f"{where}: {one_line(exc)}") from exc
    return out
