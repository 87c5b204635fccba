"""Checking a whole mesh folder before any training: every problem of every file at once.

`check_folder` reads every file in worker processes (through the same `parse_file` that
training's reader uses), adds what only the whole folder shows (a spatial dimension or a
field component count that differs from the majority, matched paths it could not follow),
and returns a `FolderReport`: problems ("FILE: WHAT: problem; fix: FIX"), warnings (what a
user may intend, counted over the files), the inferred component counts and summary numbers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from meshgnn.data.folder_spec import FolderSpec
from meshgnn.data.mesh_files import UNFOLLOWED_FIX, scan_folder
from meshgnn.data.mesh_geometry import Finding
from meshgnn.data.mesh_read import parse_file, problems_message
from meshgnn.data.parallel import parallel_map
from meshgnn.data.splits import require_split_sizes
from meshgnn.errors import UserError


@dataclass
class FileSummary:
    """What a worker sends back about one file (no mesh arrays)."""

    name: str
    problems: list[str]
    warnings: list[Finding]
    num_points: int | None
    spatial_dim: int | None
    cell_counts: dict[str, int]
    dims: dict[str, int]  # fields and globals -> components
    ranges: dict[str, tuple[float, float]]  # finite min/max of fields and globals
    node_type_counts: dict[int, int]
    ignored_fields: tuple[str, ...]


def _summarise_file(spec: FolderSpec, path: Path) -> FileSummary:
    parsed = parse_file(path, spec)
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
    return FileSummary(
        name=parsed.name, problems=parsed.problem_lines(), warnings=parsed.warnings,
        num_points=None if parsed.points is None else len(parsed.points),
        spatial_dim=None if parsed.points is None else parsed.points.shape[1],
        cell_counts={t: len(c) for t, c in parsed.cells},
        dims={name: values.shape[1] for name, values in arrays.items()},
        ranges=ranges, node_type_counts=node_types, ignored_fields=parsed.ignored_fields)


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
    warnings: list[str]  # what may be intended, one line per kind with the files it affects

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
        return problems_message(self.spec.path, self.problems)

    def raise_if_problems(self) -> None:
        if self.problems:
            raise UserError(self.error_message())


def _majority(values: Mapping[str, int]) -> tuple[int, int]:
    """(most common value, how many files have it); ties go to the first file's value."""
    return Counter(values.values()).most_common(1)[0]


def check_folder(spec: FolderSpec, workers: int = 0, progress: bool = True,
                 split: tuple[float, float, float] | None = None) -> FolderReport:
    """Read and validate every mesh file of the folder; see `FolderReport`. With `split`
    (train/val/test ratios) too few files for the splits are refused first, in one line, by
    the same rule training applies."""
    listing = scan_folder(spec)
    files = listing.files
    if split is not None:
        require_enough_files(spec.path, spec.pattern, len(files), split, "--split")
    summaries: list[FileSummary] = parallel_map(partial(_summarise_file, spec), files, workers,
                                                "checking meshes", progress)
    per_file: dict[str, list[str]] = {s.name: list(s.problems) for s in summaries}
    unfollowed = [f"{spec.display_name(p)}: file: {why}; fix: {UNFOLLOWED_FIX}" for p, why in listing.unfollowed]

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
        spec=spec, files=files, problems=unfollowed + [p for s in summaries for p in per_file[s.name]],
        warnings=_warning_lines(summaries),
        dims=dims, spatial_dim=spatial_dim,
        num_nodes=[s.num_points for s in summaries if s.num_points is not None],
        cell_counts=dict(cell_counts), cell_files=dict(cell_files), ranges=ranges,
        node_type_counts=dict(node_types), ignored_fields=dict(ignored))


def _warning_lines(summaries: list[FileSummary]) -> list[str]:
    """One line per kind of warning: how many files it affects, the first one's detail and
    what it means."""
    hits: dict[str, list[tuple[str, Finding]]] = {}
    for summary in summaries:
        for warning in summary.warnings:
            hits.setdefault(warning.what, []).append((summary.name, warning))
    return [f"{what}: {len(found)} of {len(summaries)} files ({found[0][0]}: {found[0][1].message}"
            f"{', ...' if len(found) > 1 else ''}); {found[0][1].fix}" for what, found in hits.items()]


def require_enough_files(folder: Path, pattern: str, count: int, ratios: tuple[float, float, float],
                         ratios_option: str) -> None:
    """One UserError line when `count` files cannot fill the train/val/test splits: the rule
    (`splits.require_split_sizes`) that `data check --split` and training's split share."""
    require_split_sizes(count, ratios, f"{count} readable mesh file(s) matching {pattern!r} in {folder}",
                        f"add mesh files to the folder, or change the ratios ({ratios_option})")
