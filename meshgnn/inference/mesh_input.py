"""Meshes as a package's training data looked: files and folders of them, in-memory meshes,
globals given once for all files, and the one line for a mesh of the wrong dimension.

Every mesh goes through the folder reader (`read_file`), so prediction judges a file by the
same rules as the folder check and training; an in-memory `meshio.Mesh` is written to a
temporary VTU first, so it is judged by them too.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import meshio
import numpy as np

from meshgnn.data.mesh_files import mesh_extension, sidecar_path
from meshgnn.data.mesh_read import meshio_read, read_file
from meshgnn.data.sample import MeshSample
from meshgnn.errors import UserError
from meshgnn.inference.package import Package

Globals = Mapping[str, np.ndarray]  # global name -> its 1D float64 values
IN_MEMORY = "in-memory"  # the temporary folder of an in-memory mesh (it has no sidecar to fix)


def mesh_files(paths: list[Path]) -> list[tuple[Path, Path]]:
    """(file, root) pairs: files as given, folders searched recursively for meshio-readable
    files; `root` names outputs (the file's path relative to it). A mesh-named path in a
    folder that is no readable file (a dangling symlink, a folder) is refused, not skipped."""
    found: list[tuple[Path, Path]] = []
    for path in map(Path, paths):
        if path.is_dir():
            named = sorted(p for p in path.rglob("*") if p.suffix.lower() != ".json" and mesh_extension(p))
            unfollowed = [p for p in named if not p.is_file()]
            if unfollowed:
                what = "a symlink to a missing file" if unfollowed[0].is_symlink() else "not a file"
                more = f" (and {len(unfollowed) - 1} more such paths)" if len(unfollowed) > 1 else ""
                raise UserError(f"{unfollowed[0]}: {what}{more}; repair or remove it, or pass the files to "
                                "predict one by one")
            if not named:
                raise UserError(f"{path}: no mesh files in this folder (readable: VTU, VTK, MSH, XDMF, ...)")
            found.extend((f, path) for f in named)
        elif path.is_file():
            found.append((path, path.parent))
        else:
            raise UserError(f"{path}: no such mesh file or folder")
    return found


def parse_globals(items: Sequence[str], package: Package) -> dict[str, np.ndarray]:
    """`--globals NAME=VALUE ...` (VALUE a number, or comma-separated numbers for a list-valued
    global) as `given_globals`, checked against the model's globals and their sizes."""
    values: dict[str, object] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name or not text:
            raise UserError(f"--globals {item!r}: write NAME=VALUE (e.g. k=1.5, or v=1,2 for a list)")
        try:
            values[name] = [float(v) for v in text.split(",")]
        except ValueError:
            raise UserError(f"--globals {item!r}: {text!r} is not a number or comma-separated numbers") from None
    return check_globals(values, package, "--globals")


def check_globals(given: Mapping[str, object], package: Package, option: str) -> dict[str, np.ndarray]:
    """Given globals (a number or list of numbers each) as 1D float64 arrays: names the model
    reads, with its component counts, finite."""
    reader, out = package.reader, {}
    for name, value in given.items():
        if name not in reader.globals:
            known = ", ".join(reader.globals) or "none"
            raise UserError(f"{option}: {package.name} has no global {name!r} (its globals: {known})")
        try:
            array = np.asarray(value, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise UserError(f"{option}: global {name!r} must be a number or a list of numbers, not "
                            f"{value!r}") from None
        dim = reader.dims.get(name, 1)
        if array.size != dim or not np.isfinite(array).all():
            raise UserError(f"{option}: global {name!r} needs {dim} finite number(s), got {array.tolist()}")
        out[name] = array
    return out


def read_mesh(package: Package, path: Path, root: Path, given_globals: Globals | None = None,
              option: str = "--globals") -> tuple[MeshSample, meshio.Mesh]:
    """A mesh file as the package's training data looked. A mesh of another spatial dimension
    is one line, whatever else it lacks; so are globals neither the file nor `given_globals`
    has (naming --globals)."""
    reader, given = package.reader, dict(given_globals or {})
    from_file = tuple(g for g in reader.globals if g not in given)
    spec = replace(reader.folder_spec(root), globals=from_file)
    try:
        sample, mesh = read_file(path, spec, reader.dims)
    except UserError:
        _explain_unreadable(package, Path(path), from_file, option)
        raise
    _check_dimension(package, path, sample.points.shape[1])
    if reader.globals:
        parts = dict(zip(from_file, np.split(sample.globals, np.cumsum([reader.dims.get(g, 1)
                                                                        for g in from_file])[:-1])))
        sample = replace(sample, globals=np.concatenate([given[g] if g in given else parts[g]
                                                         for g in reader.globals]))
    return sample, mesh


def _check_dimension(package: Package, path: Path, dim: int) -> None:
    trained = package.features.source.spatial_dim
    if dim != trained:
        raise UserError(f"{path}: is a {dim}D mesh but {package.name} was trained on {trained}D meshes; "
                        f"predict on {trained}D meshes")


def _explain_unreadable(package: Package, path: Path, from_file: tuple[str, ...], option: str) -> None:
    """After a file failed to read: the one cause that makes its other problems moot, if any
    (another spatial dimension; globals it has nowhere), as one UserError line."""
    try:
        mesh = meshio_read(path)
        points = np.asarray(mesh.points, dtype=np.float64)
    except Exception:  # unreadable or malformed: the reader's own message says so
        return
    if points.ndim == 2 and points.shape[1] in (2, 3):
        flat = points.shape[1] == 3 and not np.any(points[:, 2])  # a 2D mesh written with z = 0
        _check_dimension(package, path, 2 if flat else points.shape[1])
    sidecar = sidecar_path(path)
    try:
        side = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    except (OSError, UnicodeDecodeError, ValueError):
        return  # the reader reports the malformed sidecar
    absent = [g for g in from_file if g not in mesh.field_data and not (isinstance(side, dict) and g in side)]
    if absent:
        example = (" " + " ".join(f"{g}=VALUE" for g in absent) if option.startswith("--")
                   else "{" + ", ".join(f"{g!r}: VALUE" for g in absent) + "}")
        where = (f"field_data nor in a sidecar {sidecar.name}); add them to {sidecar.name} beside the file, or "
                 "give them for every mesh with" if sidecar.parent.name != IN_MEMORY else "field_data); give them with")
        raise UserError(f"{path}: no value for global(s) {', '.join(absent)} (not in its {where} {option}{example}")


def read_meshio(package: Package, mesh: meshio.Mesh, given_globals: Globals | None = None,
                name: str = "mesh") -> MeshSample:
    """An in-memory mesh (its point_data named as the package's files are) as a sample, judged
    like a file (through a temporary VTU; messages name it `name`, and globals= for globals)."""
    with tempfile.TemporaryDirectory(prefix="meshgnn-") as folder:
        path = Path(folder) / IN_MEMORY / "mesh.vtu"
        path.parent.mkdir()
        meshio.write(path, mesh, file_format="vtu")
        try:
            return read_mesh(package, path, path.parent, given_globals, option="globals=")[0]
        except UserError as exc:  # name the mesh, not the temporary file
            raise UserError(str(exc).replace(str(path), name).replace(path.name, name)) from None
