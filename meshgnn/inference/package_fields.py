"""What a package's JSON files must hold, written down as data and checked on every load.

A package may be edited by hand or written by another version, and its checksums only say
that the files are the ones the manifest lists. So each field a loader reads is checked for
presence and type first: a missing section or a wrong value is one line naming the file,
the field and the fix, never a KeyError deep inside the loader. The model section is checked
against the training schema itself (`meshgnn.config.check_group`), so a value training
would refuse (`aggregation: median`) is refused here too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from meshgnn.errors import UserError

REEXPORT = "re-export the package with `meshgnn export RUN_DIR OUT_DIR`"
WEIGHT_DTYPE_NAMES = ("fp32", "bf16", "fp16")

Kind = tuple[str, Callable[[Any], bool]]  # (what the field must be, in words; its test)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _list_of(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, list) and all(test(v) for v in value)


OBJECT: Kind = ("a JSON object", lambda v: isinstance(v, dict))
STRING: Kind = ("a string", lambda v: isinstance(v, str))
COUNT: Kind = ("a non-negative integer", lambda v: _is_int(v) and v >= 0)
STRINGS: Kind = ("a list of strings", _list_of(lambda v: isinstance(v, str)))
INTS: Kind = ("a list of integers", _list_of(_is_int))
FILE_DIGESTS: Kind = ("an object of file name -> SHA-256 hex digest",
                      lambda v: isinstance(v, dict) and all(isinstance(d, str) for d in v.values()))

MANIFEST_FIELDS: dict[str, Kind] = {"format": STRING, "format_version": COUNT, "files": FILE_DIGESTS,
                                    "origin": OBJECT}
CONFIG_FIELDS: dict[str, Kind] = {"model": OBJECT, "features": OBJECT, "reader": OBJECT, "data": OBJECT,
                                  "node_dim": COUNT, "edge_dim": COUNT, "weights": OBJECT}
READER_FIELDS: dict[str, Kind] = {
    "inputs": STRINGS, "targets": STRINGS,
    "node_type_field": ("a string or null", lambda v: v is None or isinstance(v, str)),
    "node_type_values": INTS, "globals": STRINGS,
    "dims": ("an object of field name -> component count",
             lambda v: isinstance(v, dict) and all(_is_int(d) and d > 0 for d in v.values()))}
DATA_FIELDS: dict[str, Kind] = {"name": STRING}
WEIGHTS_FIELDS: dict[str, Kind] = {
    "dtype": (f"one of {', '.join(WEIGHT_DTYPE_NAMES)}", lambda v: v in WEIGHT_DTYPE_NAMES),
    "pruning": ("a number in [0, 1)", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                and 0 <= v < 1)}
NORMALIZATION_KEYS = ("x", "edge_attr", "y")  # node features, edge features, targets


def check_fields(doc: Mapping[str, Any], fields: Mapping[str, Kind], file: Path, prefix: str = "") -> None:
    """Every field of `fields` present in `doc` and of its kind, or one UserError line."""
    for key, (kind, test) in fields.items():
        if key not in doc:
            raise UserError(f"{file}: has no field '{prefix}{key}' ({kind}); {REEXPORT}")
        if not test(doc[key]):
            raise UserError(f"{file}: field '{prefix}{key}' must be {kind}, not {_short(doc[key])}; {REEXPORT}")


def check_config(config: Mapping[str, Any], file: Path) -> None:
    """config.json: its sections, the reader's, data's and weights' fields, and the model
    section against the training schema."""
    check_fields(config, CONFIG_FIELDS, file)
    for section, fields in (("reader", READER_FIELDS), ("data", DATA_FIELDS), ("weights", WEIGHTS_FIELDS)):
        check_fields(config[section], fields, file, f"{section}.")
    check_model(config["model"], file)


def check_model(model: Mapping[str, Any], file: Path) -> None:
    """The model section as training checks `model.*`: unknown, missing and invalid values
    (`aggregation: median`) are one line naming the key and the fix."""
    from meshgnn.config import check_group

    try:
        check_group("model", model, str(file))
    except UserError as exc:
        raise UserError(f"{exc}; or {REEXPORT}") from exc


def parse_field(file: Path, field: str, parse: Callable[[], Any]) -> Any:
    """`parse()` of a section whose inner layout belongs to another module (the feature spec):
    a missing or malformed inner value is one line naming the file and the section."""
    try:
        return parse()
    except KeyError as exc:
        raise UserError(f"{file}: field '{field}' has no {exc}; {REEXPORT}") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{file}: field '{field}' is malformed ({exc}); {REEXPORT}") from exc


def check_normalization(mean: Mapping[str, Any], std: Mapping[str, Any], node_dim: int, edge_dim: int,
                        file: Path) -> None:
    """normalization.json holds the statistics of node features, edge features and targets,
    with as many columns as config.json's node_dim and edge_dim, and positive deviations."""
    for key in NORMALIZATION_KEYS:
        if key not in mean:
            raise UserError(f"{file}: has no statistics for {key!r}; {REEXPORT}")
        if mean[key].shape != std[key].shape or mean[key].dim() != 1:
            raise UserError(f"{file}: {key!r} mean and std must be lists of one length; {REEXPORT}")
        if not (bool(mean[key].isfinite().all()) and bool((std[key] > 0).all())
                and bool(std[key].isfinite().all())):
            raise UserError(f"{file}: {key!r} needs a finite mean and a finite, positive std in every "
                            f"column; {REEXPORT}")
    for key, dim in (("x", node_dim), ("edge_attr", edge_dim)):
        if mean[key].numel() != dim:
            raise UserError(f"{file}: {key!r} has {mean[key].numel()} columns but config.json says "
                            f"{dim}; {REEXPORT}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
