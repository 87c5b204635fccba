"""Reading one mesh file: every problem of the file at once, then a `MeshSample`.

Every file holds one solved mesh: points, cells of the types in `graph.CELL_EDGES` (mixed
types are fine; 'vertex' blocks are ignored) and point_data fields named by a `FolderSpec`
(see `mesh_fields` for the fields and `mesh_geometry` for the geometry checks). `parse_file`
is shared by the folder check and by `read_file`, so that the check and training (and
prediction) judge a file by the same rules.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import meshio
import numpy as np
from meshio import _helpers as meshio_helpers

from meshgnn.data.folder_spec import FolderSpec
from meshgnn.data.graph import CELL_EDGES
from meshgnn.data.mesh_fields import node_type_values, one_line, point_field, read_globals
from meshgnn.data.mesh_files import mesh_extension
from meshgnn.data.mesh_geometry import CELL_DIM, Finding, check_geometry
from meshgnn.data.sample import MeshSample
from meshgnn.errors import UserError

MAX_LISTED_PROBLEMS = 50  # lines of one error message; the rest are counted
IGNORED_CELL_TYPES = frozenset({"vertex"})
_HIGHER_ORDER = re.compile(r"(line|triangle|quad|tetra|hexahedron|wedge|pyramid)(\d+)")
_MESHIO_ROWS = re.compile(r'len\(points\) = (\d+), but len\(point_data\["(.*)"\]\) = (\d+)')


@dataclass
class ParsedFile:
    """One file read and checked: arrays for `read_file`, problems, warnings and summary
    numbers."""

    name: str
    problems: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    points: np.ndarray | None = None
    cells: list[tuple[str, np.ndarray]] = field(default_factory=list)
    fields: dict[str, np.ndarray] = field(default_factory=dict)  # [N, k] float64, right rows
    node_type: np.ndarray | None = None  # raw integer values of the node-type field
    globals: dict[str, np.ndarray] = field(default_factory=dict)  # 1D float64
    ignored_fields: tuple[str, ...] = ()
    mesh: meshio.Mesh | None = None

    def problem(self, what: str, message: str, fix: str) -> None:
        self.problems.append(Finding(what, message, fix))

    def problem_lines(self) -> list[str]:
        """"FILE: WHAT: problem; fix: FIX" for every problem."""
        return [problem_line(self.name, p) for p in self.problems]


def problem_line(name: str, finding: Finding) -> str:
    return f"{name}: {finding.what}: {finding.message}; fix: {finding.fix}"


def problems_message(where: Path, problems: list[str]) -> str:
    """"N problem(s) in WHERE:" and the problem lines, at most MAX_LISTED_PROBLEMS of them."""
    shown = problems[:MAX_LISTED_PROBLEMS]
    lines = [f"{len(problems)} problem(s) in {where}:", *(f"  {p}" for p in shown)]
    if len(problems) > len(shown):
        lines.append(f"  ... and {len(problems) - len(shown)} more")
    return "\n".join(lines)


def meshio_read(path: Path) -> meshio.Mesh:
    """meshio.read, but raising ReadError where meshio.read prints and calls sys.exit (which
    would kill a worker process) when no reader accepts the file."""
    errors = []
    for file_format in meshio_helpers._filetypes_from_path(path):
        try:
            return meshio_helpers.reader_map[file_format](str(path))
        except meshio.ReadError as exc:
            errors.append(f"as {file_format}: {exc}" if str(exc) else f"not a valid {file_format} file")
    raise meshio.ReadError("; ".join(errors) or f"no meshio reader for {path.name}")


def parse_file(path: Path, spec: FolderSpec) -> ParsedFile:
    """Read one file and check everything about it that needs no other file."""
    out = ParsedFile(spec.display_name(path))
    try:
        mesh = meshio_read(path)
    except (Exception, SystemExit) as exc:  # readers raise anything from ReadError to KeyError
        rows = _MESHIO_ROWS.search(str(exc))
        if rows:
            out.problem(f"field {rows.group(2)!r}", f"has {rows.group(3)} rows but the mesh has "
                        f"{rows.group(1)} points", "write it as point data, one row per point")
        elif isinstance(exc, ImportError):
            package = exc.name or "the missing package"
            out.problem("file", f"meshio needs {package} to read it ({one_line(exc)})",
                        f"install it (pip install {package}) or convert the file, e.g. to VTU")
        else:
            ext = (mesh_extension(path) or path.suffix).lstrip(".").upper()
            out.problem("file", f"cannot be read by meshio ({type(exc).__name__}: {one_line(exc)})",
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
        for finding in check_geometry(points, out.cells):
            (out.warnings if finding.warning else out.problems).append(finding)
    for role, field_name in spec.roles():
        if role == "target" and not spec.targets_required and field_name not in mesh.point_data:
            continue
        values = point_field(mesh, field_name, role, len(points), out.problem)
        if values is None:
            continue
        if role == "node-type":
            out.node_type = node_type_values(values, spec, out.problem)
        else:
            out.fields[field_name] = _flat_vector(values, points)
    if spec.globals:
        out.globals = read_globals(path, mesh, spec, out.problem)
    named = {n for _, n in spec.roles()}
    out.ignored_fields = tuple(sorted(k for k in mesh.point_data if k not in named))
    return out


def _flat_vector(values: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A flat mesh's 3-component field whose z is 0 everywhere is its 2D vector, as its points
    are (ParaView, pyvista and meshgnn's own VTU output write 2D vectors that way)."""
    if points.shape[1] != 2 or values.ndim != 2 or values.shape[1] != 3:
        return values
    # z is 0 in every row, except rows whose x or y is NaN/Inf too (reported as such after this);
    # the per-row test only when some z is not 0 (np.any is one flat pass; NaN counts as set)
    z = values[:, 2]
    if np.any(z) and not np.all((z == 0) | ~np.isfinite(values[:, :2]).all(axis=1)):
        return values
    return np.ascontiguousarray(values[:, :2])


def _check_points(mesh: meshio.Mesh, out: ParsedFile) -> np.ndarray | None:
    try:
        points = np.asarray(mesh.points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        out.problem("points", f"coordinates are not numbers ({one_line(exc)})", "re-export the mesh")
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
    bad = 0 if np.isfinite(points).all() else int((~np.isfinite(points).all(axis=1)).sum())
    if bad:
        out.problem("points", f"{bad} of {len(points)} nodes have NaN or Inf coordinates",
                    "fix or remove those nodes (and their cells) before training")
    return points


def _collect_cells(mesh: meshio.Mesh, num_points: int, out: ParsedFile) -> bool:
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
    if not any(CELL_DIM.get(t, 2) >= 2 for t, _ in out.cells) and not unsupported:
        found = sorted({b.type for b in mesh.cells})
        out.problem("mesh", "empty: no 2D or 3D cells" + (f" (only {', '.join(found)})" if found else ""),
                    f"write the mesh's cells ({supported}) into the file, or remove it from the folder")

    ok = True
    for cell_type, conn in out.cells:
        if not conn.size or (0 <= conn.min() and conn.max() < num_points):  # flat passes; per cell only if not
            continue
        bad = int(((conn < 0) | (conn >= num_points)).any(axis=1).sum())
        if bad:
            ok = False
            out.problem("cells", f"{bad} {cell_type} cells reference points that do not exist (indices "
                        f"{int(conn.min())}..{int(conn.max())}, but the mesh has {num_points} points)",
                        "re-export the mesh; its connectivity does not match its points")
    return ok


def read_sample(path: Path, spec: FolderSpec, dims: Mapping[str, int]) -> MeshSample:
    """One mesh file as a MeshSample (baseline empty). Raises UserError listing every problem
    of the file, or a component count that differs from `dims` (field or global -> count)."""
    return read_file(path, spec, dims)[0]


def read_file(path: Path, spec: FolderSpec, dims: Mapping[str, int]) -> tuple[MeshSample, meshio.Mesh]:
    """`read_sample`, and the file's meshio mesh as read (prediction writes it back with the
    predicted fields added). Targets the file lacks are left out when not `targets_required`."""
    path = Path(path)
    parsed = parse_file(path, spec)
    problems = parsed.problem_lines()
    arrays = {**parsed.fields, **{k: v[None, :] for k, v in parsed.globals.items()}}
    for name, values in arrays.items():
        if name in dims and values.shape[1] != dims[name]:
            problems.append(f"{parsed.name}: {name!r}: has {values.shape[1]} component(s) but the dataset "
                            f"has {dims[name]}; fix: write it with {dims[name]} in every file")
    if problems:
        raise UserError(problems[0] if len(problems) == 1 else problems_message(path, problems))
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
