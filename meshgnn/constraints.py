"""Constraints as data: what a config value may be, declared next to its schema field.

meshgnn/config.py attaches one `Check` to every schema field through `key(...)` (the field's
dataclass metadata) and the relations between fields as a `relations` class variable, so a
new key without a constraint shows in review, and a test walks the schemas to catch it. One
function (`check_values`) applies them to a plain mapping: the composed training config (at
launch, before any heavy import), every stage, a model package's config.json and the sweeper's
keys all go through it. Import-light on purpose: no torch, no Hydra.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

from meshgnn.errors import UserError

CHECK = "meshgnn_check"  # the dataclass-metadata key holding a field's Check


def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


class Check:
    """One field's constraint. `problem` returns why a (well-typed) value is refused and how
    to fix it, or None; the caller prefixes `<key>=<value>`."""

    def problem(self, value: Any, key: str) -> Optional[str]:
        raise NotImplementedError


@dataclass(frozen=True)
class Range(Check):
    """A number in [lo, hi] (or open ends); NaN and inf are always refused for floats."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False
    meaning: str = ""  # e.g. "0 = off": said with the bounds, so the fix is obvious
    eg: Optional[float] = None  # the value a fix suggests, where the bounds alone suggest a poor one

    def bounds(self) -> str:
        lo, hi = _num(self.lo), _num(self.hi)
        if self.hi == math.inf:
            text = f"{'>' if self.lo_open else '>='} {lo}"
        elif self.lo == -math.inf:
            text = f"{'<' if self.hi_open else '<='} {hi}"
        else:
            text = f"in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
        return f"{text} ({self.meaning})" if self.meaning else text

    def example(self) -> float:
        if self.eg is not None:
            return self.eg
        if self.lo == -math.inf:
            return min(self.hi, 0)
        lo = self.lo + (1 if self.lo_open else 0) if self.hi == math.inf else self.lo
        if self.lo_open and self.hi != math.inf:
            lo = (self.lo + self.hi) / 2
        return int(lo) if float(lo).is_integer() else lo

    def problem(self, value: Any, key: str) -> Optional[str]:
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number {self.bounds()}; set e.g. {key}={self.example()}"
        below = value <= self.lo if self.lo_open else value < self.lo
        above = value >= self.hi if self.hi_open else value > self.hi
        if below or above:
            return f"must be {self.bounds()}; set e.g. {key}={self.example()}"
        return None


def at_least(lo: float, meaning: str = "") -> Range:
    return Range(lo=lo, meaning=meaning)


def positive(meaning: str = "", eg: Optional[float] = None) -> Range:
    return Range(lo=0, lo_open=True, meaning=meaning, eg=eg)


def fraction(hi_open: bool = False, meaning: str = "") -> Range:
    """[0, 1] or [0, 1)."""
    return Range(lo=0, hi=1, hi_open=hi_open, meaning=meaning)


@dataclass(frozen=True)
class OneOf(Check):
    """A choice among fixed values; `prefixes` also admits e.g. "cuda:1"."""

    choices: tuple[Any, ...]
    prefixes: tuple[str, ...] = ()

    def problem(self, value: Any, key: str) -> Optional[str]:
        if value in self.choices or (isinstance(value, str) and value.startswith(self.prefixes)):
            return None
        extra = "".join(f", {p}<n>" for p in self.prefixes)
        return f"is not one of {', '.join(map(str, self.choices))}{extra}; pick one of those"


@dataclass(frozen=True)
class Text(Check):
    """A free string (a name, a path, a glob): only emptiness is refused, where `required`."""

    required: bool = True
    example: str = "<text>"

    def problem(self, value: Any, key: str) -> Optional[str]:
        if self.required and (value is None or value == ""):
            return f"must not be empty; set it, e.g. {key}={self.example}"
        return None


@dataclass(frozen=True)
class Each(Check):
    """A list (of a fixed length, or at least `min_len` items) whose items pass `item`."""

    item: Check
    length: Optional[int] = None
    min_len: int = 0
    example: str = ""

    def problem(self, value: Any, key: str) -> Optional[str]:
        if self.length is not None and len(value) != self.length:
            return f"must have exactly {self.length} values, e.g. {key}={self.example}"
        if len(value) < self.min_len:
            return f"needs at least {self.min_len} value(s), e.g. {key}={self.example}"
        for index, item in enumerate(value):
            why = self.item.problem(item, key)
            if why:
                if isinstance(self.item, Range) and self.example:
                    why = f"must be {self.item.bounds()}; set e.g. {key}={self.example}"
                return f"item {index} ({_fmt(item)}) {why}"
        return None


@dataclass(frozen=True)
class EachValue(Check):
    """A mapping (e.g. per-target weights) whose values pass `item`."""

    item: Check

    def problem(self, value: Any, key: str) -> Optional[str]:
        for name, item in value.items():
            why = self.item.problem(item, f"{key}.{name}")
            if why:
                return f"has {key}.{name}={_fmt(item)}, which {why}"
        return None


@dataclass(frozen=True)
class Nested(Check):
    """A nested schema (data.split, stages.<name>): its own fields carry the checks."""

    def problem(self, value: Any, key: str) -> Optional[str]:
        return None


# A relation between fields of one schema: takes the group's values (a plain dict) and the
# group's dotted prefix ("optim"), returns the problem as one line, or None.
Relation = Callable[[Mapping[str, Any], str], Optional[str]]


def key(check: Check, **kwargs: Any) -> Any:
    """A schema field (value MISSING unless given: defaults live in conf/) with its check."""
    if "default" not in kwargs and "default_factory" not in kwargs:
        kwargs["default"] = "???"  # omegaconf.MISSING
    return field(metadata={CHECK: check}, **kwargs)


def check_of(f: dataclasses.Field) -> Optional[Check]:
    return f.metadata.get(CHECK)


def example_of(check: Optional[Check], hint: Any) -> str:
    """A value that passes `check`, for the fix of a missing or mistyped key."""
    if isinstance(check, Range):
        return str(check.example())
    if isinstance(check, OneOf):
        return str(check.choices[0])
    if isinstance(check, (Text, Each)) and check.example:
        return check.example
    return "true" if hint is bool else "<value>"


# ------------------------------------------------------------------ applying the checks
def _type_problem(value: Any, hint: Any) -> Optional[str]:
    """Why `value` (from JSON or a composed config) does not have the schema type, or None."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return None
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        return _type_problem(value, next(a for a in args if a is not type(None)))
    if origin in (list, Sequence):
        if not isinstance(value, (list, tuple)):
            return "must be a list"
        for item in value:
            why = _type_problem(item, args[0])
            if why:
                return f"has an item {_fmt(item)} that {why}"
        return None
    if origin is dict:
        if not isinstance(value, Mapping):
            return "must be a mapping"
        for item in value.values():
            why = _type_problem(item, args[1])
            if why:
                return f"has a value {_fmt(item)} that {why}"
        return None
    if dataclasses.is_dataclass(hint):
        return None if isinstance(value, Mapping) else "must be a mapping"
    if hint is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be an integer"
    if hint is float:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "must be a number"
    if hint is str:
        return None if isinstance(value, str) else "must be a string"
    return None


def _is_interpolation(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def check_values(schema: type, values: Mapping[str, Any], prefix: str, where: str = "",
                 strict: bool = True) -> None:
    """Apply `schema`'s field checks and relations to `values`; raise UserError for the first
    problem: "<where>: <prefix>.<key>=<value> <why and fix>".

    `strict`: also refuse unknown and missing keys (a plain dict such as a package's
    config.json; a composed config has had both checked by OmegaConf already, and keeps
    "???" for keys a user must set, which are reported here as missing)."""
    lead = f"{where}: " if where else ""
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema)}
    if strict:
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise UserError(f"{lead}unknown key {prefix}.{unknown[0]}; remove it (the keys of {prefix} "
                            f"are {', '.join(fields)})")
    for name, f in fields.items():
        dotted = f"{prefix}.{name}" if prefix else name
        if name not in values or values[name] == "???":
            if strict or values.get(name) == "???":
                example = example_of(check_of(f), hints[name])
                raise UserError(f"{lead}{dotted} is missing; set it, e.g. {dotted}={example}")
            continue
        value = values[name]
        if _is_interpolation(value):  # resolved later by Hydra (paths.*); nothing to check yet
            continue
        why = _type_problem(value, hints[name])
        if why is not None:
            why += f"; set e.g. {dotted}={example_of(check_of(f), hints[name])}"
        else:
            hint = hints[name]
            if dataclasses.is_dataclass(hint):
                check_values(hint, value, dotted, where, strict)
                continue
            check = check_of(f)
            why = check.problem(value, dotted) if check is not None and value is not None else None
        if why:
            raise UserError(f"{lead}{dotted}={_fmt(value)} {why}")
    for relation in getattr(schema, "relations", ()):
        why = relation(values, prefix)
        if why:
            raise UserError(f"{lead}{why}")
