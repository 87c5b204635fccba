"""Mesh folders: train on a folder of meshio-readable files (VTU, VTK, MSH, XDMF, ...).

Every file holds one solved mesh: points, cells of the types in `graph.CELL_EDGES` (mixed
types are fine; 'vertex' blocks are ignored) and point_data fields named by a `FolderSpec`:
input fields (node features), target fields, an optional integer node-type field whose
declared values are one-hot encoded in the declared order (the first one is the interior
kind), and optional global parameters, read from the file's field_data or from a sidecar
JSON `<file stem>.json` beside it holding {"name": number or list of numbers}.

`check_folder` validates a whole folder before any training and reports every problem of
every file at once ("FILE: WHAT: problem; fix"), together with the field component counts
it inferred; `read_sample` then turns one file into a `MeshSample`.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import meshio
import numpy as np
from meshio import _helpers as meshio_helpers
from scipy.spatial import cKDTree

from meshgnn.data.graph import CELL_EDGES
from meshgnn.data.parallel import parallel_map
from meshgnn.data.sample import FieldSpec, MeshSample, SourceSpec
from meshgnn.errors import UserError

MAX_LISTED_PROBLEMS = 50  # lines of one error message; the rest are counted
DUPLICATE_TOLERANCE = 1e-12  # points closer than this times the bounding box are duplicates
MEASURE_TOLERANCE = 1e-12  # cells smaller than this times bbox^cell_dim have zero measure
IGNORED_CELL_TYPES = frozenset({"vertex"})

# Topological dimension and the faces (2D cells: the boundary polygon; 3D cells: polygons
# with the nodes in order) of every cell type whose measure is checked.
_CELL_DIM = {"line": 1, "triangle": 2, "quad": 2, "tetra": 3, "hexahedron": 3, "wedge": 3, "pyramid": 3}
_FACES: dict[str, tuple[tuple[int, ...], ...]] = {
    "triangle": ((0, 1, 2),),
    "quad": ((0, 1, 2, 3),),
    "tetra": ((0, 1, 2), (0, 1, 3), (1, 2, 3), (0, 2, 3)),
    "hexahedron": ((0, 1, 2, 3), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)),
    "wedge": ((0, 1, 2), (3, 4, 5), (0, 1, 4, 3), (1, 2, 5, 4), (2, 0, 3, 5)),
    "pyramid": ((0, 1, 2, 3), (0, 1, 4), (1, 2, 4), (2, 3, 4), (3, 0, 4)),
}
_MEASURE_NAME = {1: "length", 2: "area", 3: "volume"}
_HIGHER_ORDER = re.compile(r"(line|triangle|quad|tetra|hexahedron|wedge|pyramid)(\d+)")
_MESHIO_ROWS = re.compile(r'len\(points\) = (\d+), but len\(point_data\["(.*)"\]\) = (\d+)')

# Where each kind of name is configured, for the fixes in messages.
_OPTION = {"input": "data.inputs / --inputs", "target": "data.targets / --targets",
           "node-type": "data.node_type_field / --node-type-field", "global": "data.globals / --globals"}


@dataclass(frozen=True)
class FolderSpec:
    """Which files of a folder to read and which of their fields mean what.

    path:             the folder.
    pattern:          glob relative to `path` ("*", "**/*.vtu", ...).
    inputs, targets:  point_data field names, in feature/target column order.
    node_type_field:  an integer point_data field of node kinds, or None (all nodes alike).
    node_type_values: the field's values in one-hot order; the first is the interior kind.
                      Non-empty exactly when `node_type_field` is set.
    globals:          sample-level parameters, from field_data or the sidecar `<stem>.json`.
    targets_required: False when reading meshes to predict on: a target field that is absent
                      is left out of the sample instead of being a problem.
    """

    path: Path
    pattern: str = "*"
    inputs: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    node_type_field: str | None = None
    node_type_values: tuple[int, ...] = ()
    globals: tuple[str, ...] = ()
    targets_required: bool = True

    def __post_init__(self) -> None:
        # Accept lists (argparse, OmegaConf ListConfig) and strings for paths.
        object.__setattr__(self, "path", Path(self.path))
        for name in ("inputs", "targets", "globals"):
            object.__setattr__(self, name, tuple(str(v) for v in getattr(self, name)))
        object.__setattr__(self, "node_type_field", self.node_type_field or None)
        try:
            values = tuple(int(v) for v in self.node_type_values)
        except (TypeError, ValueError):
            raise UserError(f"node_type_values {list(self.node_type_values)} must be integers "
                            "(data.node_type_values / --node-type-values)") from None
        object.__setattr__(self, "node_type_values", values)

        if not self.pattern:
            raise UserError("the file pattern is empty; use e.g. '*' or '**/*.vtu' "
                            "(data.pattern / --pattern)")
        if not self.targets:
            raise UserError(f"no target fields named for {self.path}; name the point_data fields "
                            f"to predict ({_OPTION['target']})")
        if self.node_type_field and not values:
            raise UserError(f"node_type_field={self.node_type_field!r} is set but node_type_values is "
                            "empty; declare the field's values in one-hot order, interior kind first "
                            "(data.node_type_values / --node-type-values)")
        if values and not self.node_type_field:
            raise UserError(f"node_type_values {list(values)} are declared but node_type_field is not "
                            f"set; name the node-type field ({_OPTION['node-type']}) or drop the values")
        repeated = sorted(v for v, n in Counter(values).items() if n > 1)
        if repeated:
            raise UserError(f"node_type_values list {', '.join(map(str, repeated))} more than once; "
                            "declare each value once (data.node_type_values / --node-type-values)")
        names = [*self.inputs, *self.targets, *([self.node_type_field] if self.node_type_field else []),
                 *self.globals]
        repeated_names = sorted(n for n, k in Counter(names).items() if k > 1)
        if repeated_names:
            raise UserError(f"{', '.join(map(repr, repeated_names))} named more than once among the "
                            "inputs, targets, node-type field and globals; give each name one role")

    def roles(self) -> Iterator[tuple[str, str]]:
        """(role, name) of every point field: inputs, targets, then the node-type field."""
        yield from (("input", n) for n in self.inputs)
        yield from (("target", n) for n in self.targets)
        if self.node_type_field:
            yield "node-type", self.node_type_field


# --------------------------------------------------------------------------------- files


@lru_cache(maxsize=1)
def readable_extensions() -> tuple[str, ...]:
    """File extensions meshio has a reader for, longest first (".vol.gz" before ".gz")."""
    exts = {ext.lower() for ext, types in meshio.extension_to_filetypes.items()
            if any(t in meshio_helpers.reader_map for t in types)}
    return tuple(sorted(exts, key=lambda e: (-len(e), e)))


def _mesh_extension(path: Path) -> str | None:
    name = path.name.lower()
    return next((ext for ext in readable_extensions() if name.endswith(ext) and len(name) > len(ext)), None)


def sidecar_path(path: Path) -> Path:
    """`<file stem>.json` beside a mesh file (the stem without the whole mesh extension)."""
    ext = _mesh_extension(path)
    stem = path.name[: -len(ext)] if ext else path.stem
    return path.with_name(stem + ".json")


def list_mesh_files(spec: FolderSpec) -> list[Path]:
    """Sorted files under `spec.path` matching `spec.pattern` that meshio can read."""
    folder = spec.path
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise UserError(f"mesh folder {folder} {what}; point data.path / the FOLDER argument at the "
                        "folder holding the mesh files")
    matched = [p for p in folder.glob(spec.pattern) if p.is_file()]
    files = sorted(p for p in matched if p.suffix.lower() != ".json" and _mesh_extension(p))
    if not files:
        others = sorted({p.suffix or p.name for p in matched})
        found = (f"; the pattern matched only {', '.join(others[:10])} files" if others
                 else "; nothing matched the pattern")
        raise UserError(f"no mesh files matching {spec.pattern!r} in {folder}{found}; put meshio-readable "
                        f"files there ({', '.join(sorted(readable_extensions()))}) or change the pattern "
                        "(data.pattern / --pattern, e.g. '**/*.vtu' for subfolders)")
    return files


# ------------------------------------------------------------------------ reading a file


@dataclass
class _Parsed:
    """One file read and checked: arrays for `read_sample`, problems and summary numbers."""

    name: str
    problems: list[str] = field(default_factory=list)
    points: np.ndarray | None = None
    cells: list[tuple[str, np.ndarray]] = field(default_factory=list)
    fields: dict[str, np.ndarray] = field(default_factory=dict)  # [N, k] float64, right rows
    node_type: np.ndarray | None = None  # raw integer values of the node-type field
    globals: dict[str, np.ndarray] = field(default_factory=dict)  # 1D float64
    ignored_fields: tuple[str, ...] = ()
    mesh: meshio.Mesh | None = None

    def problem(self, what: str, message: str, fix: str) -> None:
        self.problems.append(f"{self.name}: {what}: {message}; fix: {fix}")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no message"
    return text if len(text) <= 200 else text[:197] + "..."


def _meshio_read(path: Path) -> meshio.Mesh:
    """meshio.read, but raising ReadError where meshio.read prints and calls sys.exit (which
    would kill a worker process) when no reader accepts the file."""
    errors = []
    for file_format in meshio_helpers._filetypes_from_path(path):
        try:
            return meshio_helpers.reader_map[file_format](str(path))
        except meshio.ReadError as exc:
            errors.append(f"as {file_format}: {exc}" if str(exc) else f"not a valid {file_format} file")
    raise meshio.ReadError("; ".join(errors) or f"no meshio reader for {path.name}")


def _parse(path: Path, spec: FolderSpec, name: str) -> _Parsed:
    out = _Parsed(name)
    try:
        mesh = _meshio_read(path)
    except (Exception, SystemExit) as exc:  # readers raise anything from ReadError to KeyError
        rows = _MESHIO_ROWS.search(str(exc))
        if rows:
            out.problem(f"field {rows.group(2)!r}", f"has {rows.group(3)} rows but the mesh has "
                        f"{rows.group(1)} points", "write it as point data, one row per point")
        elif isinstance(exc, ImportError):
            package = exc.name or "the missing package"
            out.problem("file", f"meshio needs {package} to read it ({_one_line(exc)})",
                        f"install it (pip install {package}) or convert the file, e.g. to VTU")
        else:
            ext = (_mesh_extension(path) or path.suffix).lstrip(".").upper()
            out.problem("file", f"cannot be read by meshio ({type(exc).__name__}: {_one_line(exc)})",
                        f"check that it is a complete, valid {ext} file (re-export it), or leave it "
                        "out with data.pattern / --pattern")
        return out

    points = _check_points(mesh, out)
    if points is None:
        return out
    out.points, out.mesh = points, mesh
    geometry_ok = bool(np.isfinite(points).all())
    geometry_ok &= _collect_cells(mesh, len(points), out)
    if out.cells and geometry_ok:
        _check_geometry(out)
    for role, field_name in spec.roles():
        if role == "target" and not spec.targets_required and field_name not in mesh.point_data:
            continue
        values = _point_field(mesh, field_name, role, len(points), out)
        if values is None:
            continue
        if role == "node-type":
            _check_node_type(values, spec, out)
        else:
            out.fields[field_name] = values
    if spec.globals:
        _read_globals(path, mesh, spec, out)
    named = {n for _, n in spec.roles()}
    out.ignored_fields = tuple(sorted(k for k in mesh.point_data if k not in named))
    return out


def _check_points(mesh: meshio.Mesh, out: _Parsed) -> np.ndarray | None:
    try:
        points = np.asarray(mesh.points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        out.problem("points", f"coordinates are not numbers ({_one_line(exc)})", "re-export the mesh")
        return None
    if points.ndim != 2 or points.shape[1] not in (2, 3):
        out.problem("points", f"coordinates have shape {list(points.shape)}, expected [N, 2] or [N, 3]",
                    "write 2D or 3D point coordinates")
        return None
    if len(points) == 0:
        out.problem("mesh", "empty: the file has no points",
                    "re-export the mesh (the file may be truncated) or remove it from the folder")
        return None
    if points.shape[1] == 3 and not np.any(points[:, 2]):
        points = np.ascontiguousarray(points[:, :2])  # a flat mesh written with z = 0
    bad = int((~np.isfinite(points).all(axis=1)).sum())
    if bad:
        out.problem("points", f"{bad} of {len(points)} nodes have NaN or Inf coordinates",
                    "fix or remove those nodes (and their cells) before training")
    return points


def _collect_cells(mesh: meshio.Mesh, num_points: int, out: _Parsed) -> bool:
    """Supported cell blocks into `out.cells` (same-type blocks merged); False if any cell
    references a point that does not exist."""
    blocks: dict[str, list[np.ndarray]] = {}
    unsupported: Counter[str] = Counter()
    for block in mesh.cells:
        if block.type in IGNORED_CELL_TYPES:
            continue
        if block.type not in CELL_EDGES:
            unsupported[block.type] += len(block.data)
            continue
        conn = np.asarray(block.data, dtype=np.int64)
        if len(conn):
            blocks.setdefault(block.type, []).append(conn.reshape(len(conn), -1))
    out.cells = [(t, np.concatenate(b) if len(b) > 1 else b[0]) for t, b in blocks.items()]

    supported = ", ".join(CELL_EDGES)
    for cell_type, count in unsupported.items():
        linear = _HIGHER_ORDER.fullmatch(cell_type)
        if linear:
            out.problem("cells", f"{count} {cell_type} cells: quadratic/higher-order cells are not "
                        f"supported", f"convert to linear {linear.group(1)!r} cells (export with "
                        "first-order elements, e.g. gmsh -order 1)")
        else:
            out.problem("cells", f"{count} cells of unsupported type {cell_type!r}",
                        f"convert them to supported cell types ({supported}), e.g. triangulate polygons")
    if not any(_CELL_DIM.get(t, 2) >= 2 for t, _ in out.cells) and not unsupported:
        found = sorted({b.type for b in mesh.cells})
        out.problem("mesh", "empty: no 2D or 3D cells" + (f" (only {', '.join(found)})" if found else ""),
                    f"write the mesh's cells ({supported}) into the file, or remove it from the folder")

    ok = True
    for cell_type, conn in out.cells:
        bad = int(((conn < 0) | (conn >= num_points)).any(axis=1).sum())
        if bad:
            ok = False
            out.problem("cells", f"{bad} {cell_type} cells reference points that do not exist (indices "
                        f"{int(conn.min())}..{int(conn.max())}, but the mesh has {num_points} points)",
                        "re-export the mesh; its connectivity does not match its points")
    return ok


def cell_measures(points: np.ndarray, cell_type: str, conn: np.ndarray) -> np.ndarray:
    """Area (2D cells) or volume (3D cells) of every cell, from the fan of triangles or
    tetrahedra joining the cell's centroid to its boundary (exact for convex cells, and zero
    for any degenerate cell, whatever the node orientation)."""
    pts = points if points.shape[1] == 3 else np.pad(points, ((0, 0), (0, 1)))
    corners = pts[conn]  # [C, nodes, 3]
    centre = corners.mean(axis=1)
    total = np.zeros(len(conn))
    for face in _FACES[cell_type]:
        ring = corners[:, list(face)] - centre[:, None]
        for i in range(len(face)):
            a, b = ring[:, i], ring[:, (i + 1) % len(face)]
            if _CELL_DIM[cell_type] == 2:
                total += 0.5 * np.linalg.norm(np.cross(a, b), axis=1)
            elif 0 < i < len(face) - 1:  # fan triangle (0, i, i+1) of the face, apex at the centre
                total += np.abs(np.einsum("ij,ij->i", ring[:, 0], np.cross(a, b))) / 6.0
    return total


def _check_geometry(out: _Parsed) -> None:
    points = out.points
    extent = float(np.ptp(points, axis=0).max())
    if extent == 0.0:
        if len(points) > 1:
            out.problem("points", f"all {len(points)} points coincide",
                        "re-export the mesh; its coordinates are missing")
        return
    pairs = cKDTree(points).query_pairs(DUPLICATE_TOLERANCE * extent, output_type="ndarray")
    duplicates = len(np.unique(pairs[:, 1])) if len(pairs) else 0
    if duplicates:
        out.problem("points", f"{duplicates} duplicate points (same coordinates as another point, "
                    f"within {DUPLICATE_TOLERANCE:g} of the mesh size)",
                    "merge duplicate points, e.g. pyvista.read(f).clean().save(f), or mesh without "
                    "seams (gmsh: Coherence)")
    dim = points.shape[1]
    for cell_type, conn in out.cells:
        cell_dim = _CELL_DIM.get(cell_type)
        if cell_type not in _FACES or cell_dim is None:
            continue
        if cell_dim > dim:
            out.problem("cells", f"{len(conn)} {cell_type} cells in a flat mesh (all z = 0)",
                        "write the 3D coordinates, or use 2D cells for a 2D mesh")
            continue
        small = int((cell_measures(points, cell_type, conn) < MEASURE_TOLERANCE * extent**cell_dim).sum())
        if small:
            out.problem("cells", f"{small} of {len(conn)} {cell_type} cells have zero "
                        f"{_MEASURE_NAME[cell_dim]} (below {MEASURE_TOLERANCE:g} of the bounding box"
                        f"{'^' + str(cell_dim) if cell_dim > 1 else ''})",
                        "remove the degenerate cells or re-mesh")


def _point_field(mesh: meshio.Mesh, name: str, role: str, num_points: int,
                 out: _Parsed) -> np.ndarray | None:
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
            hints.append(f"did you mean {lowered[close[0]]!r}? correct the name ({_OPTION[role]})")
        listed = ", ".join(available[:12]) + (", ..." if len(available) > 12 else "") or "none"
        out.problem(what, f"missing from point_data (point_data fields: {listed})",
                    "; ".join(hints) or f"add it to the file or correct the name ({_OPTION[role]})")
        return None
    try:
        values = np.asarray(mesh.point_data[name], dtype=np.float64)
    except (TypeError, ValueError):
        out.problem(what, f"values are not numbers (dtype {np.asarray(mesh.point_data[name]).dtype})",
                    "write numeric point data")
        return None
    if values.ndim == 0 or values.shape[0] != num_points:
        rows = values.shape[0] if values.ndim else 0
        out.problem(what, f"has {rows} rows but the mesh has {num_points} points",
                    "write it as point data, one row per point")
        return None
    values = values.reshape(num_points, -1)
    if values.shape[1] == 0:
        out.problem(what, "has 0 components", "write at least one value per point")
        return None
    bad_rows = ~np.isfinite(values).all(axis=1)
    if bad_rows.any():
        nan = int(np.isnan(values).any(axis=1).sum())
        inf = int(np.isinf(values).any(axis=1).sum())
        out.problem(what, f"{int(bad_rows.sum())} of {num_points} nodes have NaN or Inf values "
                    f"({nan} with NaN, {inf} with Inf)",
                    "fill in or remove those nodes' values before training")
    return values


def _check_node_type(values: np.ndarray, spec: FolderSpec, out: _Parsed) -> None:
    what = f"node-type field {spec.node_type_field!r}"
    if values.shape[1] != 1:
        out.problem(what, f"has {values.shape[1]} components", "write one integer per point")
        return
    raw = values[:, 0]
    finite = raw[np.isfinite(raw)]
    if len(finite) < len(raw):
        return  # already reported as NaN/Inf
    non_integer = finite != np.round(finite)
    if non_integer.any():
        examples = ", ".join(f"{v:g}" for v in np.unique(finite[non_integer])[:5])
        out.problem(what, f"{int(non_integer.sum())} nodes have non-integer values (e.g. {examples})",
                    "write integer node kinds")
        return
    ints = raw.astype(np.int64)
    undeclared = np.setdiff1d(np.unique(ints), np.asarray(spec.node_type_values, dtype=np.int64))
    if len(undeclared):
        listed = ", ".join(map(str, undeclared[:10])) + (", ..." if len(undeclared) > 10 else "")
        out.problem(what, f"values {listed} are not declared (declared: "
                    f"{', '.join(map(str, spec.node_type_values))}; {int(np.isin(ints, undeclared).sum())} "
                    "nodes)", "add them to data.node_type_values / --node-type-values, or correct the file")
        return
    out.node_type = ints


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


def _read_globals(path: Path, mesh: meshio.Mesh, spec: FolderSpec, out: _Parsed) -> None:
    sidecar = sidecar_path(path)
    side: dict[str, Any] = {}
    if sidecar.is_file():
        try:
            loaded = json.loads(sidecar.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            out.problem(f"sidecar {sidecar.name}", f"is not valid JSON ({_one_line(exc)})",
                        'write an object {"name": number or list of numbers}')
            return
        if not isinstance(loaded, dict):
            out.problem(f"sidecar {sidecar.name}", f"holds a JSON {type(loaded).__name__}, not an object",
                        'write an object {"name": number or list of numbers}')
            return
        side = loaded
    for name in spec.globals:
        what = f"global {name!r}"
        found: list[tuple[str, np.ndarray]] = []
        if name in mesh.field_data:
            values = _global_values(np.asarray(mesh.field_data[name]))
            if values is None:
                out.problem(what, "field_data value is not numeric", "write a number or list of numbers")
                continue
            found.append(("field_data", values))
        if name in side:
            values = _global_values(side[name])
            if values is None:
                out.problem(what, f"{sidecar.name} gives {json.dumps(side[name])[:60]}, not a number or "
                            "flat list of numbers", f'write "{name}": number or [numbers] in {sidecar.name}')
                continue
            found.append((sidecar.name, values))
        if not found:
            out.problem(what, f"not in the file's field_data nor in a sidecar {sidecar.name}",
                        f'add "{name}": value to {sidecar.name} beside the file, or drop it from '
                        f"{_OPTION['global']}")
            continue
        if len(found) == 2 and not np.array_equal(found[0][1], found[1][1]):
            out.problem(what, f"field_data gives {found[0][1].tolist()} but {sidecar.name} gives "
                        f"{found[1][1].tolist()}", "keep one of the two values")
            continue
        values = found[0][1]
        if not np.isfinite(values).all():
            out.problem(what, f"is not finite ({values.tolist()})", "give it a finite value")
        out.globals[name] = values


# ------------------------------------------------------------------------- whole folders


@dataclass
class _FileSummary:
    """What a worker sends back about one file (no mesh arrays)."""

    name: str
    problems: list[str]
    num_points: int | None
    spatial_dim: int | None
    cell_counts: dict[str, int]
    dims: dict[str, int]  # fields and globals -> components
    ranges: dict[str, tuple[float, float]]  # finite min/max of fields and globals
    node_type_counts: dict[int, int]
    ignored_fields: tuple[str, ...]


def _summarise_file(spec: FolderSpec, path: Path) -> _FileSummary:
    parsed = _parse(path, spec, _display_name(path, spec))
    arrays = {**parsed.fields, **{k: v[None, :] for k, v in parsed.globals.items()}}
    ranges = {}
    for name, values in arrays.items():
        finite = values[np.isfinite(values)]
        if len(finite):
            ranges[name] = (float(finite.min()), float(finite.max()))
    node_types = {}
    if parsed.node_type is not None:
        uniq, counts = np.unique(parsed.node_type, return_counts=True)
        node_types = dict(zip(uniq.tolist(), counts.tolist()))
    return _FileSummary(
        name=parsed.name, problems=parsed.problems,
        num_points=None if parsed.points is None else len(parsed.points),
        spatial_dim=None if parsed.points is None else parsed.points.shape[1],
        cell_counts={t: len(c) for t, c in parsed.cells},
        dims={name: values.shape[1] for name, values in arrays.items()},
        ranges=ranges, node_type_counts=node_types, ignored_fields=parsed.ignored_fields)


def _display_name(path: Path, spec: FolderSpec) -> str:
    try:
        return str(path.relative_to(spec.path))
    except ValueError:
        return str(path)


@dataclass
class FolderReport:
    """The outcome of `check_folder`: every problem, the inferred field component counts
    (`dims`, fields and globals -> components, the majority over the files) and summary
    numbers over the files that could be read."""

    spec: FolderSpec
    files: list[Path]
    problems: list[str]
    dims: dict[str, int]
    spatial_dim: int | None
    num_nodes: list[int]  # per readable file
    cell_counts: dict[str, int]  # cell type -> cells over all files
    cell_files: dict[str, int]  # cell type -> files holding it
    ranges: dict[str, tuple[float, float]]  # field or global -> finite (min, max) over all files
    node_type_counts: dict[int, int]  # declared node-type value -> nodes over all files
    ignored_fields: dict[str, int]  # point_data fields not named in the spec -> files

    @property
    def ok(self) -> bool:
        return not self.problems

    def node_stats(self) -> tuple[int, float, int] | None:
        """(min, median, max) nodes per file, None if no file could be read."""
        if not self.num_nodes:
            return None
        return min(self.num_nodes), float(np.median(self.num_nodes)), max(self.num_nodes)

    def summary_lines(self) -> list[str]:
        spec = self.spec
        lines = [f"folder       {spec.path} (pattern {spec.pattern!r})",
                 f"files        {len(self.files)} ({len(self.num_nodes)} readable)"]
        stats = self.node_stats()
        if stats:
            lines.append(f"nodes        min {stats[0]}, median {stats[1]:g}, max {stats[2]}, "
                         f"total {sum(self.num_nodes)}")
        if self.spatial_dim:
            lines.append(f"spatial dim  {self.spatial_dim}")
        if self.cell_counts:
            lines.append("cells        " + ", ".join(
                f"{t} {n} ({self.cell_files[t]} file{'s' * (self.cell_files[t] != 1)})"
                for t, n in self.cell_counts.items()))
        if spec.node_type_field:
            kinds = [f"{v}: {self.node_type_counts.get(v, 0)}" + (" (interior)" if i == 0 else "")
                     for i, v in enumerate(spec.node_type_values)]
            lines.append(f"node types   {spec.node_type_field} = " + ", ".join(kinds) + " nodes")
        rows = [(n, r) for r, names in (("input", spec.inputs), ("target", spec.targets),
                                        ("global", spec.globals)) for n in names]
        if rows:
            width = max(len("field"), *(len(n) for n, _ in rows))
            lines.append(f"{'field':<{width}}  role    components  {'min':>12}  {'max':>12}")
            for name, role in rows:
                dim = self.dims.get(name, "-")
                lo, hi = (f"{v:.6g}" for v in self.ranges[name]) if name in self.ranges else ("-", "-")
                lines.append(f"{name:<{width}}  {role:<6}  {dim:<10}  {lo:>12}  {hi:>12}")
        if self.ignored_fields:
            lines.append("ignored      point_data fields not named: " + ", ".join(
                f"{n} ({k} file{'s' * (k != 1)})" for n, k in sorted(self.ignored_fields.items())))
        return lines

    def error_message(self) -> str:
        return _problems_message(self.spec.path, self.problems)

    def raise_if_problems(self) -> None:
        if self.problems:
            raise UserError(self.error_message())


def _problems_message(where: Path, problems: list[str]) -> str:
    """"N problem(s) in WHERE:" and the problem lines, at most MAX_LISTED_PROBLEMS of them."""
    shown = problems[:MAX_LISTED_PROBLEMS]
    lines = [f"{len(problems)} problem(s) in {where}:", *(f"  {p}" for p in shown)]
    if len(problems) > len(shown):
        lines.append(f"  ... and {len(problems) - len(shown)} more")
    return "\n".join(lines)


def _majority(values: Mapping[str, int]) -> tuple[int, int]:
    """(most common value, how many files have it); ties go to the first file's value."""
    return Counter(values.values()).most_common(1)[0]


def check_folder(spec: FolderSpec, workers: int = 0, progress: bool = True) -> FolderReport:
    """Read and validate every mesh file of the folder; see `FolderReport`."""
    files = list_mesh_files(spec)
    summaries: list[_FileSummary] = parallel_map(partial(_summarise_file, spec), files, workers,
                                              "checking meshes", progress)
    per_file: dict[str, list[str]] = {s.name: list(s.problems) for s in summaries}

    spatial = {s.name: s.spatial_dim for s in summaries if s.spatial_dim}
    spatial_dim = None
    if spatial:
        spatial_dim, agree = _majority(spatial)
        label = {2: "2D (all z = 0)", 3: "3D (z not all 0)"}
        for name, dim in spatial.items():
            if dim != spatial_dim:
                per_file[name].append(f"{name}: points: {label[dim]} coordinates but {agree} of "
                                      f"{len(spatial)} files are {label[spatial_dim]}; fix: give every "
                                      "file of the folder the same spatial dimension")

    dims: dict[str, int] = {}
    for name in [*spec.inputs, *spec.targets, *spec.globals]:
        counts = {s.name: s.dims[name] for s in summaries if name in s.dims}
        if not counts:
            continue
        dims[name], agree = _majority(counts)
        kind = "global" if name in spec.globals else "field"
        for file_name, dim in counts.items():
            if dim != dims[name]:
                per_file[file_name].append(
                    f"{file_name}: {kind} {name!r}: has {dim} component(s) but {agree} of {len(counts)} "
                    f"files have {dims[name]}; fix: write {name!r} with the same number of components "
                    "in every file")

    cell_counts: Counter[str] = Counter()
    cell_files: Counter[str] = Counter()
    ranges: dict[str, tuple[float, float]] = {}
    node_types: Counter[int] = Counter()
    ignored: Counter[str] = Counter()
    for s in summaries:
        cell_counts.update(s.cell_counts)
        cell_files.update(s.cell_counts.keys())
        node_types.update(s.node_type_counts)
        ignored.update(s.ignored_fields)
        for name, (lo, hi) in s.ranges.items():
            old = ranges.get(name, (lo, hi))
            ranges[name] = (min(old[0], lo), max(old[1], hi))
    return FolderReport(
        spec=spec, files=files, problems=[p for s in summaries for p in per_file[s.name]],
        dims=dims, spatial_dim=spatial_dim,
        num_nodes=[s.num_points for s in summaries if s.num_points is not None],
        cell_counts=dict(cell_counts), cell_files=dict(cell_files), ranges=ranges,
        node_type_counts=dict(node_types), ignored_fields=dict(ignored))


# --------------------------------------------------------------------------- samples


def _component_names(name: str, dim: int) -> tuple[str, ...]:
    return (name,) if dim == 1 else tuple(f"{name}[{i}]" for i in range(dim))


def source_spec(spec: FolderSpec, dims: Mapping[str, int], spatial_dim: int) -> SourceSpec:
    """The SourceSpec of a folder, from the component counts `check_folder` inferred.

    A global given as a list of k > 1 numbers becomes k columns named "name[0]".."name[k-1]".
    """
    missing = [n for n in (*spec.inputs, *spec.targets) if n not in dims]
    if missing:
        raise UserError(f"no component count known for field(s) {', '.join(missing)} of {spec.path}; "
                        "run `meshgnn data check` on the folder and fix the problems it reports")
    node_types = (tuple(f"{spec.node_type_field}={v}" for v in spec.node_type_values)
                  if spec.node_type_field else ("node",))
    return SourceSpec(
        node_types=node_types,
        inputs=tuple(FieldSpec(n, int(dims[n])) for n in spec.inputs),
        targets=tuple(FieldSpec(n, int(dims[n])) for n in spec.targets),
        global_names=tuple(c for n in spec.globals for c in _component_names(n, int(dims.get(n, 1)))),
        spatial_dim=int(spatial_dim),
        has_baseline=False,
    )


def read_sample(path: Path, spec: FolderSpec, dims: Mapping[str, int]) -> MeshSample:
    """One mesh file as a MeshSample (baseline empty). Raises UserError listing every problem
    of the file, or a component count that differs from `dims` (field or global -> count)."""
    return read_file(path, spec, dims)[0]


def read_file(path: Path, spec: FolderSpec, dims: Mapping[str, int]) -> tuple[MeshSample, meshio.Mesh]:
    """`read_sample`, and the file's meshio mesh as read (prediction writes it back with the
    predicted fields added). Targets the file lacks are left out when not `targets_required`."""
    path = Path(path)
    parsed = _parse(path, spec, _display_name(path, spec))
    problems = list(parsed.problems)
    arrays = {**parsed.fields, **{k: v[None, :] for k, v in parsed.globals.items()}}
    for name, values in arrays.items():
        if name in dims and values.shape[1] != dims[name]:
            problems.append(f"{parsed.name}: {name!r}: has {values.shape[1]} component(s) but the dataset "
                            f"has {dims[name]}; fix: write it with {dims[name]} in every file")
    if problems:
        raise UserError(problems[0] if len(problems) == 1 else _problems_message(path, problems))
    assert parsed.points is not None
    if parsed.node_type is None:
        node_type = np.zeros(len(parsed.points), dtype=np.int64)
    else:
        declared = np.asarray(spec.node_type_values, dtype=np.int64)
        order = np.argsort(declared)
        node_type = order[np.searchsorted(declared[order], parsed.node_type)].astype(np.int64)
    sample = MeshSample(
        points=parsed.points,
        cells=parsed.cells,
        node_type=node_type,
        inputs={n: parsed.fields[n] for n in spec.inputs},
        targets={n: parsed.fields[n] for n in spec.targets if n in parsed.fields},
        globals=(np.concatenate([parsed.globals[n] for n in spec.globals]) if spec.globals
                 else np.zeros(0, dtype=np.float64)),
        baseline={},
    )
    return sample, parsed.mesh


def _read_one(spec: FolderSpec, dims: dict[str, int], path: Path) -> MeshSample:
    return read_sample(path, spec, dims)
