"""Prediction on mesh files with one model or an ensemble.

A file is read with the training data's field layout (`MeshReader`), turned into a graph by
the same functions training uses (`sample_to_graph`, `add_features`, `normalize`), predicted
by every member, and written back as VTU: the file's own mesh and fields plus, per target,
`predicted_<t>` in physical units (the members' mean), `std_<t>` (the members' spread, for
ensembles) and `error_<t>` = predicted - true when the file carries the true field. Every
2-component vector of a 2D mesh is written with 3 components (z = 0), the file's own fields
too, so ParaView and pyvista draw true and predicted vectors side by side.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import meshio
import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.data.collate import collate

from meshgnn.atomic import writing
from meshgnn.data.features import GraphDataset, add_features, normalize, single_graph_store
from meshgnn.data.graph import sample_to_graph
from meshgnn.data.hierarchy import MultiScaleData
from meshgnn.data.export import as_vtu_vector
from meshgnn.data.interrupt import interruptible
from meshgnn.data.mesh_files import mesh_extension
from meshgnn.data.sample import MeshSample
from meshgnn.data.sources import get_source
from meshgnn.errors import UserError
from meshgnn.inference.folder_defaults import BATCH_NODES
from meshgnn.inference.folder_predict import FileReader, ReadFile, Writer, batches
from meshgnn.inference.mesh_input import Globals, mesh_files, read_mesh
from meshgnn.inference.outputs import Inputs, check_output_location
from meshgnn.inference.package import Package
from meshgnn.inference.precision import inference_precision
from meshgnn.training.field_errors import field_errors

log = logging.getLogger(__name__)

# read_mesh is re-exported: tests and benchmarks read files for prepare_graph through this module
__all__ = ["FilePrediction", "model_graph", "prepare_graph", "prepare_batch", "predict_graph", "predict_sample",
           "predict_batch", "preparation_key", "combine", "errors_against", "plan_outputs", "predict_files",
           "predict_group", "file_prediction", "baseline_errors", "analytic_baseline", "output_relative",
           "write_vtu", "check_compatible", "read_mesh"]


@dataclass
class FilePrediction:
    """One file's prediction: per target the mean [N, dim] and std over members (physical
    units), the true field when the file has it, and the errors of the mean (and of the
    source's analytic baseline, for built-in sources) against it. `name` is the file's path
    relative to the folder (or the file's own folder) it was given as, `output` that of its
    VTU relative to the output folder."""

    path: Path
    name: str
    output: str
    num_nodes: int
    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    true: dict[str, np.ndarray]
    errors: dict[str, dict[str, float]]
    baseline_errors: dict[str, dict[str, float]] = field(default_factory=dict)


def model_graph(package: Package, sample: MeshSample, device: torch.device | str = "cpu") -> Data:
    """One sample's feature-free graph as the model's preparation starts from it, on `device`:
    with the analytic baseline when the model uses it, and zeros for targets the sample lacks
    (they only feed the unused `y`)."""
    features = package.features
    spec = features.source
    if spec.has_baseline and (features.residual or features.baseline_input) and not sample.baseline:
        sample = replace(sample, baseline=get_source(package.data["name"]).baseline(sample, package.data))
    targets = {f.name: sample.targets.get(f.name, np.zeros((sample.num_nodes, f.dim))) for f in spec.targets}
    return sample_to_graph(replace(sample, targets=targets), spec, device)


def prepare_graph(package: Package, sample: MeshSample, device: torch.device | str = "cpu") -> MultiScaleData:
    """The model's input for one sample: features, coarse levels and normalisation exactly as
    in training, computed on `device` (the prediction device: no copy of the prepared graph)."""
    store, slices = single_graph_store(model_graph(package, sample, device))
    add_features(store, slices, package.features)
    normalize(store, slices, package.normalizer, package.features.residual)
    return store


def prepare_batch(package: Package, samples: list[MeshSample], device: torch.device | str = "cpu") -> Batch:
    """The model's input for several samples at once, as one batch: collated like the training
    data (features, levels and normalisation run once on the whole store, per graph: extents,
    boundary distances and coarse cells never mix meshes), then batched like a training step."""
    graphs = [MultiScaleData(**dict(model_graph(package, s, device).items())) for s in samples]
    store, slices, _ = collate(MultiScaleData, graphs, increment=False, add_batch=False)  # InMemoryDataset's layout
    add_features(store, slices, package.features)
    normalize(store, slices, package.normalizer, package.features.residual)
    dataset = GraphDataset(store, slices)
    return Batch.from_data_list([dataset[i] for i in range(len(samples))])


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
    return [pred for _, pred in _predict_members(members, lambda m: prepare_graph(m, sample, device), device,
                                                 precision)]


def predict_batch(members: list[Package], samples: list[MeshSample], device: torch.device,
                  precision: str = "fp32") -> list[list[dict[str, Tensor]]]:
    """Per sample, each member's prediction: the samples prepared as one batch (once per
    preparation the members share) and predicted in one forward pass per member."""
    per_member = []
    for batch, pred in _predict_members(members, lambda m: prepare_batch(m, samples, device), device, precision):
        bounds = batch.ptr.tolist()
        per_member.append([{n: v[a:b] for n, v in pred.items()} for a, b in zip(bounds, bounds[1:])])
    return [list(predictions) for predictions in zip(*per_member)]


def _predict_members(members: list[Package], prepare: Callable[[Package], MultiScaleData], device: torch.device,
                     precision: str) -> Iterator[tuple[MultiScaleData, dict[str, Tensor]]]:
    """(its input, its prediction) for each member; members with one `preparation_key` share
    one `prepare`d input."""
    prepared: dict[str, MultiScaleData] = {}
    for member in members:
        key = preparation_key(member)
        if key not in prepared:
            prepared[key] = prepare(member)
        yield prepared[key], predict_graph(member, prepared[key], device, precision)


def preparation_key(member: Package) -> str:
    """Members with equal keys derive the same input graph from a mesh (they share one)."""
    return repr((member.features.to_json(), member.normalizer.to_json()))


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
        target = Path(out_dir) / output_relative(path, root)
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
                  precision: str = "fp32", given_globals: Globals | None = None,
                  failures: list[tuple[str, str]] | None = None, workers: int = 0,
                  batch_nodes: int = BATCH_NODES) -> list[FilePrediction]:
    """Predict every mesh file (or folder of them) and write `<out_dir>/<relative path>.vtu`
    (`plan_outputs` checks every output location first). With a `failures` list, a file the
    model cannot take (wrong dimension, missing fields or globals) is recorded there as
    (relative path, reason) and the others are still predicted: one bad file in a folder of
    hundreds must not cost the rest; without one, it raises.

    `workers` processes read the files ahead (0: the main process reads them), meshes are
    predicted in batches of up to `batch_nodes` nodes, and written by a thread while the
    next batch is predicted (`folder_predict`); the results are those of one file at a time.
    With `workers`, a script calling this needs the `if __name__ == "__main__":` guard of
    every multiprocessing program (the readers import the main module)."""
    check_compatible(members)
    plan = plan_outputs(members, paths, out_dir)
    results: list[FilePrediction] = []

    def refused(read: ReadFile, exc: UserError) -> None:
        if failures is None:
            raise exc
        failures.append((read.name, str(exc)))

    def write_job(read: ReadFile, result: FilePrediction) -> Callable[[], None]:
        def job() -> None:
            write_vtu(read.mesh, result, read.target, ensemble=len(members) > 1)
            results.append(result)
            log.info("predicted %s (%d/%d, %d nodes)", read.path, len(results), len(plan), result.num_nodes)
        return job

    # one file has nothing to read ahead of, and a reader process costs more than reading it
    readers = min(workers, len(plan) - 1) if workers > 0 else workers

    def kept(stop: object) -> str:
        return f"{len(results)} of {len(plan)} file(s) were written to {out_dir}; run again to predict them all"

    with interruptible(f"predicting {len(plan)} mesh file(s)", kept), \
            FileReader(members[0], given_globals, readers) as reader, Writer() as writer:
        for group in batches(reader.read(plan), batch_nodes, lambda read: refused(read, read.error)):
            done = []
            for read, predictions in predict_group(members, group, device, precision, refused):
                done.append(write_job(read, file_prediction(members, read, predictions)))
            writer.write(done)
    return results


def predict_group(members: list[Package], group: list[ReadFile], device: torch.device, precision: str,
                  refused: Callable[[ReadFile, UserError], None]) -> list[tuple[ReadFile, list[dict[str, Tensor]]]]:
    """Each file's member predictions, the group as one batch; when preparing the batch
    refuses a mesh, file by file, so only the bad file goes to `refused`."""
    try:
        return list(zip(group, predict_batch(members, [r.sample for r in group], device, precision)))
    except UserError as exc:
        if len(group) == 1:
            refused(group[0], exc)
            return []
    return [pair for read in group for pair in predict_group(members, [read], device, precision, refused)]


def file_prediction(members: list[Package], read: ReadFile, predictions: list[dict[str, Tensor]]) -> FilePrediction:
    """One file's prediction (members' mean and spread, errors where it has true fields)."""
    sample = read.sample
    mean, std = combine(predictions)
    true = {n: sample.targets[n] for n, _ in members[0].targets if n in sample.targets}
    return FilePrediction(read.path, read.name, output_relative(read.path, read.root).as_posix(), sample.num_nodes,
                          {n: v.numpy() for n, v in mean.items()}, {n: v.numpy() for n, v in std.items()},
                          true, errors_against(mean, true), baseline_errors(members[0], sample, true))


def baseline_errors(package: Package, sample: MeshSample,
                    true: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """The errors of the built-in source's analytic baseline on the true fields the file has
    (what the model has to beat); {} for a mesh-folder model, which has no baseline."""
    guess = analytic_baseline(package, sample) if true else None
    if guess is None:
        return {}
    return errors_against({n: torch.from_numpy(np.asarray(guess[n], dtype=np.float64)) for n in true}, true)


def analytic_baseline(package: Package, sample: MeshSample) -> dict[str, np.ndarray] | None:
    """The built-in source's analytic guess of every target (physical units, from the mesh's
    inputs alone), or None for a mesh-folder model."""
    if package.source is None or not package.features.source.has_baseline:
        return None
    return sample.baseline or get_source(package.source).baseline(sample, package.data)


def output_relative(path: Path, root: Path) -> Path:
    """Where a mesh file's prediction goes, relative to the output folder: its path relative
    to `root`, its mesh extension replaced by .vtu."""
    relative = path.relative_to(root)
    ext = mesh_extension(relative) or relative.suffix
    return relative.with_name((relative.name[: len(relative.name) - len(ext)] if ext else relative.name) + ".vtu")


def write_vtu(mesh: meshio.Mesh, result: FilePrediction, path: Path, ensemble: bool) -> None:
    """The input mesh with the predicted (and std, error) fields added, written atomically;
    vectors of a 2D mesh (its own fields too) with 3 components."""
    flat = np.asarray(mesh.points).shape[1] == 2 or not np.any(np.asarray(mesh.points)[:, 2])
    point_data = {k: as_vtu_vector(np.asarray(v)) if flat else v for k, v in mesh.point_data.items()}
    for name, values in result.mean.items():
        fields = {f"predicted_{name}": values}
        if ensemble:
            fields[f"std_{name}"] = result.std[name]
        if name in result.true:
            fields[f"error_{name}"] = values - np.asarray(result.true[name], dtype=np.float64)
        for key, field in fields.items():
            field = np.asarray(field, dtype=np.float64)
            point_data[key] = field[:, 0] if field.shape[1] == 1 else (as_vtu_vector(field) if flat else field)
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
