"""Write built-in generated samples as a mesh folder (VTU + sidecar JSON), so users can try
the folder workflow (`meshgnn data check`, `data=mesh_folder`) on known-good data."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import meshio
import numpy as np

from meshgnn.data.generate import MeshSizeSpec, describe_mesh_size, generate_samples
from meshgnn.data.sample import MeshSample, SourceSpec
from meshgnn.data.sources import get_source
from meshgnn.errors import UserError

NODE_TYPE_FIELD = "node_type"
_OURS = re.compile(r"sample_\d{5,}\.(vtu|json)|README\.txt")


def as_vtu_vector(field: np.ndarray) -> np.ndarray:
    """A 2D mesh's 2-component vectors ([N, 2]) padded with a zero z, so ParaView and pyvista
    show them as vectors (glyphs) beside our 3-component ones; anything else as it is. Reading
    folds them back (data.mesh_read: a flat mesh's z = 0 components)."""
    return np.pad(field, ((0, 0), (0, 1))) if field.ndim == 2 and field.shape[1] == 2 else field


def sample_to_meshio(sample: MeshSample, spec: SourceSpec) -> meshio.Mesh:
    """The sample as a meshio mesh: 2D points and vectors padded with z = 0, scalar fields as [N]."""
    points = np.asarray(sample.points, dtype=np.float64)
    if points.shape[1] == 2:
        points = np.pad(points, ((0, 0), (0, 1)))
    point_data: dict[str, np.ndarray] = {}
    for fields in (sample.inputs, sample.targets):
        for name, values in fields.items():
            values = np.asarray(values, dtype=np.float64).reshape(sample.num_nodes, -1)
            point_data[name] = values[:, 0] if values.shape[1] == 1 else as_vtu_vector(values)
    point_data[NODE_TYPE_FIELD] = np.asarray(sample.node_type, dtype=np.int64)
    cells = [(t, np.asarray(c, dtype=np.int64)) for t, c in sample.cells]
    return meshio.Mesh(points, cells, point_data=point_data)


def folder_commands(source_name: str, out_dir: Path) -> tuple[str, str]:
    """(`meshgnn data check ...`, `python train.py data=mesh_folder ...`) for an exported folder."""
    spec = get_source(source_name).spec
    folder = shlex.quote(str(Path(out_dir).resolve()))
    inputs = [f.name for f in spec.inputs]
    targets = [f.name for f in spec.targets]
    values = [str(v) for v in range(len(spec.node_types))]
    check = ["meshgnn data check", folder, "--inputs", *inputs, "--targets", *targets,
             "--node-type-field", NODE_TYPE_FIELD, "--node-type-values", *values]
    if spec.global_names:
        check += ["--globals", *spec.global_names]

    def listing(key: str, items: list[str]) -> str:
        return shlex.quote(f"{key}=[{','.join(items)}]")

    train = ["python train.py data=mesh_folder", f"data.path={folder}", listing("data.inputs", inputs),
             listing("data.targets", targets), f"data.node_type_field={NODE_TYPE_FIELD}",
             listing("data.node_type_values", values), listing("data.globals", list(spec.global_names))]
    return " ".join(check), " ".join(train)


def _prepare(out_dir: Path) -> None:
    """Create `out_dir`, or empty it of an earlier export; refuse to mix with other files."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"export folder {out_dir} is a file; pass a folder to --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = sorted(out_dir.iterdir())
    foreign = [p.name for p in entries if not (p.is_file() and _OURS.fullmatch(p.name))]
    if foreign:
        raise UserError(f"export folder {out_dir} already holds {', '.join(foreign[:5])}"
                        f"{', ...' if len(foreign) > 5 else ''}, which `meshgnn data export` did not "
                        "write; pass a new or empty folder to --out")
    for path in entries:
        path.unlink()


def export_samples(source_name: str, out_dir: str | Path, num_samples: int, seed: int, mesh_size: MeshSizeSpec,
                   max_holes: int, workers: int) -> list[Path]:
    """Generate samples 0..num_samples-1 of a built-in source and write `sample_00000.vtu`
    (inputs, targets and an integer "node_type" as point_data), `sample_00000.json` (the
    globals by name) and a README.txt with the check and train command lines; `mesh_size` as
    data.mesh_size (a range is drawn per sample), the other generator keys are
    conf/data/<name>.yaml's. Returns the VTU paths."""
    source = get_source(source_name)
    if num_samples < 1:
        raise UserError(f"--num-samples must be >= 1, got {num_samples}")
    out_dir = Path(out_dir)
    _prepare(out_dir)
    samples = generate_samples(source, num_samples, seed, mesh_size, max_holes, workers)
    written = []
    for index, sample in enumerate(samples):
        path = out_dir / f"sample_{index:05d}.vtu"
        meshio.write(path, sample_to_meshio(sample, source.spec), file_format="vtu")
        globals_ = dict(zip(source.spec.global_names, np.asarray(sample.globals, dtype=np.float64).tolist()))
        path.with_suffix(".json").write_text(json.dumps(globals_, indent=1) + "\n")
        written.append(path)
    readme = _readme(source_name, out_dir, num_samples, seed, mesh_size, max_holes)
    (out_dir / "README.txt").write_text(readme)
    return written


def _readme(source_name: str, out_dir: Path, num_samples: int, seed: int, mesh_size: MeshSizeSpec,
            max_holes: int) -> str:
    spec = get_source(source_name).spec
    check, train = folder_commands(source_name, out_dir)

    def fields(items) -> str:
        return ", ".join(f"{f.name} ({f.dim} component{'s' * (f.dim != 1)})" for f in items)

    kinds = ", ".join(f"{i} = {name}" for i, name in enumerate(spec.node_types))
    return "\n".join([
        f"{num_samples} samples of the built-in {source_name!r} source (seed {seed}, mesh size "
        f"{describe_mesh_size(mesh_size)}, max holes {max_holes}), written by `meshgnn data export`.",
        "",
        "sample_NNNNN.vtu   mesh and point_data fields (2D meshes have z = 0)",
        "sample_NNNNN.json  the sample's global parameters by name",
        "",
        f"inputs:      {fields(spec.inputs)}",
        f"targets:     {fields(spec.targets)}",
        f"node types:  point_data field {NODE_TYPE_FIELD!r}: {kinds} (the first is the interior kind)",
        f"globals:     {', '.join(spec.global_names) or 'none'}",
        "",
        "Check the folder:",
        f"  {check}",
        "",
        "Train on it:",
        f"  {train}",
        "",
    ])
