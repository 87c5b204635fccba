"""The named fields of one mesh file: point fields, the node-type field and globals.

Each reader returns what it could read and reports every problem it found through `report`
(what, problem, fix), so that one pass over a file lists all its problems at once.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import meshio
import numpy as np

from meshgnn.data.folder_spec import OPTION, FolderSpec
from meshgnn.data.mesh_files import sidecar_path

Report = Callable[[str, str, str], None]  # (what, problem, fix)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line of at most 200 characters."""
    text = " ".join(str(exc).split()) or "no message"
    return text if len(text) <= 200 else text[:197] + "..."


def point_field(mesh: meshio.Mesh, name: str, role: str, num_points: int,
                report: Report) -> np.ndarray | None:
    """A named point_data field as [N, k] float64, or None after reporting why not."""
    what = f"{role} field {name!r}"
    if name not in mesh.point_data:
        available = sorted(mesh.point_data)
        hints = []
        if name in mesh.cell_data:
            hints.append("it is cell data: interpolate it to the points "
                         "(e.g. pyvista's cell_data_to_point_data)")
        lowered = {a.lower(): a for a in available}
        close = difflib.get_close_matches(name.lower(), list(lowered), n=1)
        if close:
            hints.append(f"did you mean {lowered[close[0]]!r}? correct the name ({OPTION[role]})")
        listed = ", ".join(available[:12]) + (", ..." if len(available) > 12 else "") or "none"
        report(what, f"missing from point_data (point_data fields: {listed})",
                    "; ".join(hints) or f"add it to the file or correct the name ({OPTION[role]})")
        return None
    try:
        values = np.asarray(mesh.point_data[name], dtype=np.float64)
    except (TypeError, ValueError):
        report(what, f"values are not numbers (dtype {np.asarray(mesh.point_data[name]).dtype})",
                    "write numeric point data")
        return None
    if values.ndim == 0 or values.shape[0] != num_points:
        rows = values.shape[0] if values.ndim else 0
        report(what, f"has {rows} rows but the mesh has {num_points} points",
                    "write it as point data, one row per point")
        return None
    values = values.reshape(num_points, -1)
    if values.shape[1] == 0:
        report(what, "has 0 components", "write at least one value per point")
        return None
    if not np.isfinite(values).all():  # one flat pass; the per-row counts only for a broken field
        bad_rows = ~np.isfinite(values).all(axis=1)
        nan = int(np.isnan(values).any(axis=1).sum())
        inf = int(np.isinf(values).any(axis=1).sum())
        report(what, f"{int(bad_rows.sum())} of {num_points} nodes have NaN or Inf values "
                    f"({nan} with NaN, {inf} with Inf)",
                    "fill in or remove those nodes' values before training")
    return values


def node_type_values(values: np.ndarray, spec: FolderSpec, report: Report) -> np.ndarray | None:
    """The node-type field's raw integer values, or None after reporting why not."""
    what = f"node-type field {spec.node_type_field!r}"
    if values.shape[1] != 1:
        report(what, f"has {values.shape[1]} components", "write one integer per point")
        return None
    raw = values[:, 0]
    finite = raw[np.isfinite(raw)]
    if len(finite) < len(raw):
        return None  # already reported as NaN/Inf
    non_integer = finite != np.round(finite)
    if non_integer.any():
        examples = ", ".join(f"{v:g}" for v in np.unique(finite[non_integer])[:5])
        report(what, f"{int(non_integer.sum())} nodes have non-integer values (e.g. {examples})",
                    "write integer node kinds")
        return None
    ints = raw.astype(np.int64)
    undeclared = np.setdiff1d(np.unique(ints), np.asarray(spec.node_type_values, dtype=np.int64))
    if len(undeclared):
        listed = ", ".join(map(str, undeclared[:10])) + (", ..." if len(undeclared) > 10 else "")
        report(what, f"values {listed} are not declared (declared: "
                    f"{', '.join(map(str, spec.node_type_values))}; {int(np.isin(ints, undeclared).sum())} "
                    "nodes)", "add them to data.node_type_values / --node-type-values, or correct the file")
        return None
    return ints


def _global_values(value: Any) -> np.ndarray | None:
    """A number or flat list of numbers (JSON) or a numeric array (field_data) as a 1D float64
    array; None if it is anything else."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iuf" or value.size == 0:
            return None
        return value.astype(np.float64).ravel()
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
        return None
    return np.asarray(items, dtype=np.float64)


def read_globals(path: Path, mesh: meshio.Mesh, spec: FolderSpec, report: Report) -> dict[str, np.ndarray]:
    """The named globals that could be read, as 1D float64 arrays; the rest are reported."""
    sidecar = sidecar_path(path)
    side: dict[str, Any] = {}
    out: dict[str, np.ndarray] = {}
    if sidecar.is_file():
        try:
            loaded = json.loads(sidecar.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            report(f"sidecar {sidecar.name}", f"is not valid JSON ({one_line(exc)})",
                        'write an object {"name": number or list of numbers}')
            return out
        if not isinstance(loaded, dict):
            report(f"sidecar {sidecar.name}", f"holds a JSON {type(loaded).__name__}, not an object",
                        'write an object {"name": number or list of numbers}')
            return out
        side = loaded
    for name in spec.globals:
        what = f"global {name!r}"
        found: list[tuple[str, np.ndarray]] = []
        if name in mesh.field_data:
            values = _global_values(np.asarray(mesh.field_data[name]))
            if values is None:
                report(what, "field_data value is not numeric", "write a number or list of numbers")
                continue
            found.append(("field_data", values))
        if name in side:
            values = _global_values(side[name])
            if values is None:
                report(what, f"{sidecar.name} gives {json.dumps(side[name])[:60]}, not a number or "
                            "flat list of numbers", f'write "{name}": number or [numbers] in {sidecar.name}')
                continue
            found.append((sidecar.name, values))
        if not found:
            report(what, f"not in the file's field_data nor in a sidecar {sidecar.name}",
                        f'add "{name}": value to {sidecar.name} beside the file, or drop it from '
                        f"{OPTION['global']}")
            continue
        if len(found) == 2 and not np.array_equal(found[0][1], found[1][1]):
            report(what, f"field_data gives {found[0][1].tolist()} but {sidecar.name} gives "
                        f"{found[1][1].tolist()}", "keep one of the two values")
            continue
        values = found[0][1]
        if not np.isfinite(values).all():
            report(what, f"is not finite ({values.tolist()})", "give it a finite value")
        out[name] = values
    return out
