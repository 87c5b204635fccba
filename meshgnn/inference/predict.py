"""Prediction on mesh files with one model or an ensemble.

A file is read with the training data's field layout (`MeshReader`), turned into a graph by
the same functions training uses (`sample_to_graph`, `add_features`, `normalize`), predicted
by every member, and written back as VTU: the file's own mesh and fields plus, per target,
`predicted_<t>` in physical units (the members' mean), `std_<t>` (the members' spread, for
ensembles) and `error_<t>` = predicted - true when the file carries the true field.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import meshio
import numpy as np
import torch
from torch import Tensor

from meshgnn.atomic import writing
from meshgnn.data.features import add_features, normalize, single_graph_store
from meshgnn.data.graph import sample_to_graph
from meshgnn.data.hierarchy import MultiScaleData
from meshgnn.data.mesh_files import mesh_extension
from meshgnn.data.mesh_read import read_file
from meshgnn.data.sample import MeshSample
from meshgnn.data.sources import get_source
from meshgnn.errors import UserError
from meshgnn.inference.outputs import Inputs, check_output_location
from meshgnn.inference.package import Package
from meshgnn.inference.precision import inference_precision
from meshgnn.training.field_errors import field_errors

log = logging.getLogger(__name__)


@dataclass
class FilePrediction:
    """One file's prediction: per target the mean [N, dim] and std over members (physical
    units), the true field when the file has it, and the errors of the mean against it."""

    path: Path
    num_nodes: int
    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    true: dict[str, np.ndarray]
    errors: dict[str, dict[str, float]]


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


def read_mesh(package: Package, path: Path, root: Path) -> tuple[MeshSample, meshio.Mesh]:
    """A mesh file as the package's training data looked; a wrong spatial dimension is an error."""
    reader = package.reader
    sample, mesh = read_file(path, reader.folder_spec(root), reader.dims)
    trained = package.features.source.spatial_dim
    if sample.points.shape[1] != trained:
        raise UserError(f"{path}: is a {sample.points.shape[1]}D mesh but {package.name} was trained on "
                        f"{trained}D meshes; predict on {trained}D meshes")
    return sample, mesh


def prepare_graph(package: Package, sample: MeshSample) -> MultiScaleData:
    """The model's input for one sample: features, coarse levels and normalisation exactly as
    in training. Targets the sample lacks are zeros (they only feed the unused `y`)."""
    features = package.features
    spec = features.source
    if spec.has_baseline and (features.residual or features.baseline_input) and not sample.baseline:
        sample = replace(sample, baseline=get_source(package.data["name"]).baseline(sample))
    targets = {f.name: sample.targets.get(f.name, np.zeros((sample.num_nodes, f.dim))) for f in spec.targets}
    graph = sample_to_graph(replace(sample, targets=targets), spec)
    store, slices = single_graph_store(graph)
    add_features(store, slices, features)
    normalize(store, slices, package.normalizer, features.residual)
    return store


@torch.no_grad()
def predict_graph(package: Package, graph: MultiScaleData, device: torch.device,
                  precision: str = "fp32") -> dict[str, Tensor]:
    """Per target [N, dim] float32 in physical units (on the CPU)."""
    model = package.model.to(device)
    with inference_precision(precision, device):
        pred, _ = model(graph.to(device))
    normalized = torch.cat([pred[name].float() for name, _ in package.targets], dim=1)
    physical = package.normalizer.denormalize("y", normalized).cpu()
    return dict(zip([n for n, _ in package.targets], physical.split([d for _, d in package.targets], dim=1)))


def predict_sample(members: list[Package], sample: MeshSample, device: torch.device,
                   precision: str = "fp32") -> list[dict[str, Tensor]]:
    """Each member's prediction of one sample (members with one preparation share a graph)."""
    graphs: dict[str, MultiScaleData] = {}
    out = []
    for member in members:
        key = repr((member.features.to_json(), member.normalizer.to_json()))
        if key not in graphs:
            graphs[key] = prepare_graph(member, sample)
        out.append(predict_graph(member, graphs[key], device, precision))
    return out


def combine(predictions: list[dict[str, Tensor]]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Members' mean and (population) standard deviation per target, in physical units."""
    names = predictions[0].keys()
    stacked = {n: torch.stack([p[n].double() for p in predictions]) for n in names}
    return ({n: s.mean(0) for n, s in stacked.items()},
            {n: s.std(0, unbiased=False) for n, s in stacked.items()})


def errors_against(mean: dict[str, Tensor], true: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """rel_l2, mae, max_abs of each target the file has (the same formulas as the test metrics)."""
    out = {}
    for name, values in true.items():
        truth = torch.from_numpy(np.asarray(values, dtype=np.float64))
        nodes = torch.zeros(len(truth), dtype=torch.long)
        out[name] = {k: float(v[0]) for k, v in field_errors(mean[name], truth, nodes, 1).items()}
    return out


def plan_outputs(members: list[Package], paths: list[Path], out_dir: Path) -> list[tuple[Path, Path, Path]]:
    """(mesh file, its root, output file) of every input, or one UserError before anything is
    written: an output folder at or around the inputs or the members (`check_output_location`,
    symlinked files followed to where they are), an output file that resolves into an input,
    or two inputs that would write the same output file (the second would replace the first)."""
    files = mesh_files(paths)
    inputs = Inputs([*(m.path for m in members if m.path is not None), *paths, *(path for path, _ in files)])
    check_output_location(out_dir, inputs, "--out")
    plan, written_by = [], {}
    for path, root in files:
        target = Path(out_dir) / path.relative_to(root)
        target = target.with_name(_stem(target) + ".vtu")
        resolved = target.resolve()
        problem = inputs.overlap(resolved, contains=False) or ("is a folder" if resolved.is_dir() else None)
        if problem:
            raise UserError(f"{target}: the prediction of {path} would go there, but it {problem}; pass "
                            "a folder outside the inputs for --out")
        if resolved in written_by:
            raise UserError(f"{written_by[resolved]} and {path} would both be written to {target}; "
                            "predict them into separate --out folders, or rename one")
        written_by[resolved] = path
        plan.append((path, root, target))
    return plan


def predict_files(members: list[Package], paths: list[Path], out_dir: Path, device: torch.device,
                  precision: str = "fp32") -> list[FilePrediction]:
    """Predict every mesh file (or folder of them) and write `<out_dir>/<relative path>.vtu`
    (`plan_outputs` checks every output location first)."""
    check_compatible(members)
    plan = plan_outputs(members, paths, out_dir)
    results = []
    for index, (path, root, target) in enumerate(plan, start=1):
        sample, mesh = read_mesh(members[0], path, root)
        mean, std = combine(predict_sample(members, sample, device, precision))
        true = {n: sample.targets[n] for n, _ in members[0].targets if n in sample.targets}
        result = FilePrediction(path, sample.num_nodes, {n: v.numpy() for n, v in mean.items()},
                                {n: v.numpy() for n, v in std.items()}, true, errors_against(mean, true))
        write_vtu(mesh, result, target, ensemble=len(members) > 1)
        log.info("predicted %s (%d/%d, %d nodes)", path, index, len(plan), sample.num_nodes)
        results.append(result)
    return results


def _stem(path: Path) -> str:
    ext = mesh_extension(path) or path.suffix
    return path.name[: len(path.name) - len(ext)] if ext else path.name


def write_vtu(mesh: meshio.Mesh, result: FilePrediction, path: Path, ensemble: bool) -> None:
    """The input mesh with the predicted (and std, error) fields added, written atomically."""
    point_data = dict(mesh.point_data)
    for name, values in result.mean.items():
        fields = {f"predicted_{name}": values}
        if ensemble:
            fields[f"std_{name}"] = result.std[name]
        if name in result.true:
            fields[f"error_{name}"] = values - np.asarray(result.true[name], dtype=np.float64)
        for key, field in fields.items():
            field = np.asarray(field, dtype=np.float64)
            point_data[key] = field[:, 0] if field.shape[1] == 1 else _as_3d(field)
    out = meshio.Mesh(mesh.points, mesh.cells, point_data=point_data, cell_data=mesh.cell_data,
                      field_data=mesh.field_data)
    tmp = path.with_name(f".{path.name}.tmp.vtu")
    with writing(path):  # a full disk or lost permission: one StorageError line naming the file
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            meshio.write(tmp, out, file_format="vtu")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def _as_3d(field: np.ndarray) -> np.ndarray:
    """2-component vectors padded with a zero z, so ParaView shows them as vectors (glyphs)."""
    return np.pad(field, ((0, 0), (0, 1))) if field.shape[1] == 2 else field


def check_compatible(members: list[Package]) -> None:
    """Members must agree on what a file holds and what they predict (fields, components,
    node types, globals, spatial dimension); how each derives its features may differ."""
    first = members[0]
    for other in members[1:]:
        for what, mine, theirs in (
                ("targets", first.targets, other.targets),
                ("input fields", first.reader.inputs, other.reader.inputs),
                ("field components", first.reader.dims, other.reader.dims),
                ("node types", first.features.source.node_types, other.features.source.node_types),
                ("node-type field", (first.reader.node_type_field, first.reader.node_type_values),
                 (other.reader.node_type_field, other.reader.node_type_values)),
                ("globals", first.reader.globals, other.reader.globals),
                ("spatial dimension", first.features.source.spatial_dim, other.features.source.spatial_dim)):
            if mine != theirs:
                raise UserError(f"{other.name} cannot join an ensemble with {first.name}: its {what} "
                                f"differ ({_short(theirs)} vs {_short(mine)}); ensemble models trained "
                                "on the same kind of data")


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."
