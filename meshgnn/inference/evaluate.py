"""Test metrics of models (packages, run directories, checkpoints) on data they did not train on:
a data config's test split, or every file of a mesh folder.

The metrics have training's names and formulas (`test/<target>/rel_l2`, `mae`, `max_abs`,
`rel_l2_median`, per graph, in physical units, through `field_errors` and `ErrorAccumulator`),
and come with the two baselines training reports (`baseline_mean`: the training targets'
mean; `baseline_analytic`: a built-in source's analytic guess), so `meshgnn evaluate` on a
run's own data reproduces its results.json. Each model is evaluated as it is loaded: in its
stored weight dtype and pruning, with the arithmetic precision asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import Tensor

from meshgnn.data.dataset import load_datasets, make_loader
from meshgnn.data.sources import SOURCES, get_source
from meshgnn.errors import UserError
from meshgnn.inference.mesh_input import Globals, mesh_files, read_mesh
from meshgnn.inference.package import Package
from meshgnn.inference.predict import analytic_baseline, check_compatible, combine, predict_graph, predict_sample
from meshgnn.training.field_errors import ErrorAccumulator, field_errors

MODEL, MEAN, ANALYTIC = "model", "baseline_mean", "baseline_analytic"


@dataclass
class Evaluation:
    """Every member's metrics (in member order), the members' mean's (`ensemble`), the
    baselines' ({"baseline_mean": ..., "baseline_analytic": ...} where there is one) and
    how many meshes they are over."""

    members: list[dict[str, float]]
    ensemble: dict[str, float]
    baselines: dict[str, dict[str, float]]
    num_meshes: int

    def results(self) -> dict[str, dict[str, float]]:
        """A single model's metrics laid out as training's results.json: model and baselines."""
        return {MODEL: self.members[0], **self.baselines}


def evaluate_split(members: list[Package], data: dict[str, Any], data_dir: Path, device: torch.device,
                   precision: str = "fp32", batch_size: int = 8) -> Evaluation:
    """The test split of the data config `data` (generated or read from the cache in
    `data_dir`), each member's graphs built with its own features and normaliser; the
    members must see the same meshes in the same order (checked batch by batch)."""
    check_compatible(members)
    loaders = []
    for member in members:
        split = load_datasets(OmegaConf.create(data), data_dir, member.features.model_inputs,
                              normalizer=member.normalizer).splits["test"]
        if len(split) == 0:
            raise UserError(f"the test split of {data['name']} is empty; raise data.num_samples or "
                            "data.split.test")
        loaders.append(make_loader(split, batch_size, False, 0, 0))
    first_member = members[0]
    targets = first_member.targets
    accumulators = [ErrorAccumulator() for _ in range(len(members) + 1)]
    baselines = {MEAN: ErrorAccumulator(), ANALYTIC: ErrorAccumulator()}
    graphs = 0
    with torch.no_grad():
        for batches in zip(*loaders, strict=True):
            first = batches[0]
            if any(b.pos.shape != first.pos.shape or not torch.equal(b.pos, first.pos) for b in batches[1:]):
                raise UserError("the members' test splits hold different meshes: they were trained on "
                                "different data (data.* or split settings); ensemble models trained on the "
                                "same data")
            truth = _by_target(first_member.normalizer.denormalize("y", first.y.double()), targets)
            guesses = {MEAN: _by_target(first_member.normalizer.denormalize(
                "y", torch.zeros_like(first.y, dtype=torch.float64)), targets)}
            if getattr(first, "baseline", None) is not None:
                guesses[ANALYTIC] = _by_target(first.baseline, targets)
            node_graph, num_graphs = first.batch, first.num_graphs  # on the CPU (`.to` moves in place)
            predictions = [predict_graph(m, b, device, precision) for m, b in zip(members, batches)]
            mean, _ = combine(predictions)
            for accumulator, pred in zip(accumulators, [*predictions, mean]):
                _add(accumulator, pred, truth, node_graph, num_graphs)
            for who, guess in guesses.items():
                _add(baselines[who], guess, truth, node_graph, num_graphs)
            graphs += num_graphs
    return _evaluation(accumulators, baselines, graphs)


def evaluate_files(members: list[Package], paths: list[Path], device: torch.device, precision: str = "fp32",
                   given_globals: Globals | None = None) -> Evaluation:
    """Every mesh file of `paths` (files, folders searched recursively), each one graph; every
    file must carry the true fields of every target."""
    check_compatible(members)
    files = mesh_files(paths)
    first = members[0]
    accumulators = [ErrorAccumulator() for _ in range(len(members) + 1)]
    baselines = {MEAN: ErrorAccumulator(), ANALYTIC: ErrorAccumulator()}
    for path, root in files:
        sample, _ = read_mesh(first, path, root, given_globals)
        missing = [name for name, _ in first.targets if name not in sample.targets]
        if missing:
            raise UserError(f"{path}: has no true {', '.join(missing)} to evaluate against; evaluate on files "
                            "that carry the target fields (predict the others with `meshgnn predict`)")
        truth = {n: torch.as_tensor(sample.targets[n], dtype=torch.float64) for n, _ in first.targets}
        nodes = torch.zeros(sample.num_nodes, dtype=torch.long)
        predictions = predict_sample(members, sample, device, precision)
        for accumulator, pred in zip(accumulators, [*predictions, combine(predictions)[0]]):
            _add(accumulator, pred, truth, nodes, 1)
        zeros = torch.zeros(sample.num_nodes, first.normalizer.mean["y"].numel(), dtype=torch.float64)
        _add(baselines[MEAN], _by_target(first.normalizer.denormalize("y", zeros), first.targets), truth, nodes, 1)
        guess = analytic_baseline(first, sample)
        if guess is not None:
            _add(baselines[ANALYTIC], {n: torch.as_tensor(v, dtype=torch.float64) for n, v in guess.items()},
                 truth, nodes, 1)
    return _evaluation(accumulators, baselines, len(files))


def _by_target(values: Tensor, targets: list[tuple[str, int]]) -> dict[str, Tensor]:
    return dict(zip([n for n, _ in targets], values.split([d for _, d in targets], dim=1)))


def _add(accumulator: ErrorAccumulator, pred: dict[str, Tensor], truth: dict[str, Tensor], node_graph: Tensor,
         num_graphs: int) -> None:
    for name, true in truth.items():
        accumulator.add(f"test/{name}", field_errors(pred[name], true, node_graph, num_graphs))


def _evaluation(accumulators: list[ErrorAccumulator], baselines: dict[str, ErrorAccumulator],
                graphs: int) -> Evaluation:
    results = [a.result(graphs) for a in accumulators]
    return Evaluation(results[:-1], results[-1],
                      {who: a.result(graphs) for who, a in baselines.items() if a.sums}, graphs)


def package_test(package: Package, data_dir: Path | None, device: torch.device) -> dict[str, Any]:
    """The test record a package's manifest carries (`meshgnn export`): its own metrics on the
    run's test split, measured in its stored weight dtype and pruning; or, when the weights are
    the run's best.ckpt unchanged, the run's results.json numbers; or, when the training data
    cannot be had, why not, with the run's numbers labelled as the unchanged run's.

    {"of": "package" | "run", "metrics": {...} | None, "num_meshes": N, "reason": str}"""
    run_metrics = package.origin.get("test_metrics")
    unchanged = package.weight_dtype == "fp32" and not package.pruning
    if unchanged and run_metrics:
        return {"of": "run", "metrics": run_metrics, "reason": "the run's best.ckpt weights, unchanged"}
    data = package.data
    if data["name"] == "mesh_folder" and not Path(data["path"]).is_dir():
        unmeasured = f"not measured: the training mesh folder {data['path']} is not here"
        return {"of": "run", "metrics": run_metrics,
                "reason": unmeasured + ("; these are the run's numbers, of its fp32 unpruned best.ckpt, not "
                                        "of this package" if run_metrics else "")}
    folder = Path(data_dir or package.origin.get("data_dir") or "data_cache")
    result = evaluate_split([package], data, folder, device)
    return {"of": "package", "metrics": result.members[0], "num_meshes": result.num_meshes,
            "reason": f"measured on the run's test split ({result.num_meshes} meshes) with these weights"}


def evaluate_target(package: Package, data: str, overrides: list[str], data_dir: Path | None,
                    device: torch.device, precision: str = "fp32",
                    globals_: Sequence[str] = ()) -> dict[str, Any]:
    """`meshgnn evaluate MODEL DATA [KEY=VALUE ...]`: DATA is a mesh file or folder (every file),
    or the name of the model's data config: its training data config (so the default is its
    own test split) with `[data.]KEY=VALUE` overrides, checked like training's. Returns
    results.json's layout plus "evaluated" (what, on what, how)."""
    from meshgnn.inference.mesh_input import parse_globals

    given = parse_globals(globals_, package)
    if Path(data).exists():
        if overrides:
            raise UserError(f"{' '.join(overrides)}: KEY=VALUE overrides change a data config; DATA {data} is "
                            "a mesh path, whose files are evaluated as they are")
        result = evaluate_files([package], [Path(data)], device, precision, given)
        on: Any = {"files": str(data)}
    else:
        config = data_config(package, data, overrides)
        folder = Path(data_dir or package.origin.get("data_dir") or "data_cache")
        result = evaluate_split([package], config, folder, device, precision)
        on = {"data": config}
    label = f"the files of {data}" if "files" in on else f"the test split of {data}" + (
        f" ({' '.join(overrides)})" if overrides else "")
    return {**result.results(), "evaluated": {
        "model": str(package.path), "checkpoint": package.origin.get("checkpoint"), "on": label, **on,
        "num_meshes": result.num_meshes, "precision": precision,
        "weights": {"dtype": package.weight_dtype, "pruning": package.pruning}}}


def data_config(package: Package, name: str, overrides: list[str]) -> dict[str, Any]:
    """The model's training data config named `name`, with `[data.]KEY=VALUE` overrides."""
    from meshgnn.config import check_group

    trained = package.data["name"]
    if name != trained:
        raise UserError(f"{name!r}: {package.name} was trained on {trained!r} data and predicts its targets; "
                        f"evaluate it on {trained} (with overrides, e.g. `{trained} data.mesh_size=0.05`) or on "
                        "a mesh file or folder (no such path: " + name + ")")
    items = []
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or not key:
            raise UserError(f"{item!r}: write overrides as KEY=VALUE, e.g. data.num_samples=40")
        items.append(item if key.startswith("data.") else f"data.{item}")
    trained_data = (get_source(trained).with_generator_defaults(package.data) if trained in SOURCES
                    else package.data)
    merged = OmegaConf.merge(OmegaConf.create({"data": trained_data}), OmegaConf.from_dotlist(items))
    config = OmegaConf.to_container(merged.data, resolve=True)
    check_group("data", config, "meshgnn evaluate")
    return config
