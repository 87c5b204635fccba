"""The evaluation sets of benchmarks/generalization.py: meshes a trained model never saw, each
drawn sample by sample from the built-in source with a changed data config.

A set is the training data config with a few keys changed, a seed and sample indices:
- `in_dist`: the training config itself, its own seed and the first test-split indices (the
  very draws of training's test set);
- `refine_2x`, `refine_4x`: the same seed and indices with `data.mesh_size` (a number or a
  range) divided by 2 / 4: every sample's size is drawn from its own random stream, so these
  are the same parts and parameters meshed 2x / 4x finer, compared file by file with in_dist;
- `family:<f>`: `data.families=[f]` for each family the training config does not hold;
- `params_low:<p>`, `params_high:<p>` for each physical parameter p (every `data.ranges` key
  but the geometry's `length` and `hole_size`): p's range collapsed to its lo / hi, every other
  draw as in training;
- `beyond_low:<p>`, `beyond_high:<p>`: p's range replaced by its 20 % extension below lo /
  above hi (width 0.2 (hi - lo)), clipped where it would leave the values data.ranges' schema
  holds valid (each clip named in the set's notes).
One parameter at a time, not all at once: heat2d with every range at its lo (no source, zero
mean and zero amplitude of the boundary temperature) has a temperature identically 0, whose
rel L2 is undefined; and one at a time shows which parameter a model fails on. A sample's
parameters come from their own random stream (meshgnn.data.sources.parts), so the params and
beyond sets all hold the same parts and differ from each other only in the parameter they move.
Every set but in_dist and the refinements uses `eval_seed` (not training's seed), so none of
its samples is a training sample. For in_dist and the refinements each sample is also solved
with `label_refinement` 2 higher (the reference fields on a mesh refined twice more,
restricted to the same nodes): the rel L2 of the set's own reference fields against those is
the truth's discretisation error, to read next to the model's; on in_dist, where that error
sits is located as the model's is (benchmarks/error_location.py).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from error_location import locate  # noqa: E402
from meshgnn.constraints import Range, check_of  # noqa: E402
from meshgnn.data.dataset import generating_keys  # noqa: E402
from meshgnn.data.features import split_indices  # noqa: E402
from meshgnn.data.generate import sample_mesh_size  # noqa: E402
from meshgnn.data.geometry import FAMILIES  # noqa: E402
from meshgnn.data.parallel import parallel_map  # noqa: E402
from meshgnn.data.sample import MeshSample  # noqa: E402
from meshgnn.data.sources import get_source  # noqa: E402
from meshgnn.data_config import Elasticity2dRanges, Heat2dRanges  # noqa: E402
from meshgnn.inference.predict import errors_against  # noqa: E402

GEOMETRY_RANGES = ("length", "hole_size")
BEYOND = 0.2  # the extension beyond a range, as a fraction of its width (issue #18's goal)
TRUTH_REFINEMENT = 2  # label_refinement steps above the set's own for the truth's error
# The schemas of data.ranges, whose checks hold each parameter's physically valid values.
RANGE_SCHEMAS = {"heat2d": Heat2dRanges, "elasticity2d": Elasticity2dRanges}


@dataclass
class EvalSet:
    """One evaluation set; `notes` says what was clipped, `truth` whether the discretisation
    error is measured, `paired` whether its files pair one to one with in_dist's."""

    name: str
    data: dict[str, Any]
    seed: int
    indices: list[int]
    truth: bool = False
    paired: bool = False
    locate: bool = False  # where each sample's error sits is measured (error_location), the truth's too
    notes: list[str] = field(default_factory=list)
    samples: list[MeshSample] = field(default_factory=list, repr=False)
    truth_errors: list[dict[str, float]] = field(default_factory=list, repr=False)
    truth_located: list[dict[str, dict[str, Any]]] = field(default_factory=list, repr=False)
    seconds: float = 0.0

    def key(self) -> str:
        """What decides the samples (the data's generating keys, seed, indices, truth): equal
        keys are the same meshes, so runs trained on the same data share their sets."""
        keys = generating_keys(OmegaConf.create(changed(self.data, seed=self.seed)))
        return json.dumps([keys, self.indices, self.truth], sort_keys=True)

    def describe(self) -> dict[str, Any]:
        return {"seed": self.seed, "indices": self.indices, "num_meshes": len(self.indices),
                "mesh_size": self.data["mesh_size"], "families": self.data["families"],
                "hole_shapes": self.data["hole_shapes"], "ranges": self.data["ranges"],
                "label_refinement": self.data["label_refinement"], "notes": self.notes,
                "generation_s": round(self.seconds, 2)}


def eval_sets(data: dict[str, Any], eval_samples: int, eval_seed: int) -> list[EvalSet]:
    """Every set for a model trained on the data config `data` (module doc)."""
    if eval_seed == data["seed"]:
        raise SystemExit(f"--eval-seed {eval_seed} is the training data's seed: its sets would hold training "
                         "samples; pass another --eval-seed")
    ratios = (data["split"]["train"], data["split"]["val"], data["split"]["test"])
    test = split_indices(data["num_samples"], ratios, data["seed"])["test"][:eval_samples].tolist()
    fresh = list(range(eval_samples))
    sets = [EvalSet("in_dist", data, data["seed"], test, truth=True, locate=True)]
    for factor in (2, 4):
        sets.append(EvalSet(f"refine_{factor}x", changed(data, mesh_size=divided(data["mesh_size"], factor)),
                            data["seed"], test, truth=True, paired=True))
    for family in FAMILIES:
        if family not in data["families"]:
            sets.append(EvalSet(f"family:{family}", changed(data, families=[family]), eval_seed, fresh))
    for name, bounds in data["ranges"].items():
        if name in GEOMETRY_RANGES:
            continue
        for side, edge in (("low", bounds[0]), ("high", bounds[1])):
            sets.append(EvalSet(f"params_{side}:{name}", with_range(data, name, [edge, edge]), eval_seed, fresh))
        for side in ("low", "high"):
            beyond, note = beyond_range(data["name"], name, bounds, side)
            sets.append(EvalSet(f"beyond_{side}:{name}", with_range(data, name, beyond), eval_seed, fresh,
                                notes=[note] if note else []))
    return sets


def with_range(data: dict[str, Any], name: str, bounds: list[float]) -> dict[str, Any]:
    return changed(data, ranges={**data["ranges"], name: bounds})


def changed(data: dict[str, Any], **keys: Any) -> dict[str, Any]:
    return {**copy.deepcopy(data), **keys}


def divided(mesh_size: float | Sequence[float], factor: int) -> float | list[float]:
    """`data.mesh_size` (a number or [min, max]) divided by `factor`: every sample's size
    divided by it (meshgnn.data.generate.sample_mesh_size)."""
    if isinstance(mesh_size, (int, float)):
        return mesh_size / factor
    return [bound / factor for bound in mesh_size]


def beyond_range(source: str, name: str, bounds: list[float], side: str) -> tuple[list[float], str]:
    """The 20 % extension of `bounds` below lo (side "low") or above hi, clipped to the
    parameter's valid values (data.ranges' schema; an open bound is kept 1 % of the range's
    width away); and a note saying so when it was clipped ("" otherwise)."""
    lo, hi = bounds
    width = BEYOND * (hi - lo)
    extension = [lo - width, lo] if side == "low" else [hi, hi + width]
    valid = valid_values(source, name)
    margin = 0.01 * (hi - lo)
    low = valid.lo + margin if valid.lo_open else valid.lo
    high = valid.hi - margin if valid.hi_open else valid.hi
    clipped = [min(max(value, low), high) for value in extension]
    if clipped == extension:
        return extension, ""
    return clipped, f"{name} {_pair(extension)} clipped to {_pair(clipped)} (valid: {valid.bounds()})"


def valid_values(source: str, name: str) -> Range:
    """data.ranges.<name>'s valid values, from its schema's check."""
    schema_field = next(f for f in dataclasses.fields(RANGE_SCHEMAS[source]) if f.name == name)
    return check_of(schema_field).item


def _pair(values: list[float]) -> str:
    return f"[{values[0]:.4g}, {values[1]:.4g}]"


def generate(evalset: EvalSet, workers: int) -> None:
    """Draw the set's samples (and its truth's errors), `workers` processes (0 = every core)."""
    start = time.perf_counter()
    job = partial(_draw, data=evalset.data, seed=evalset.seed, truth=evalset.truth, located=evalset.locate)
    drawn = parallel_map(job, evalset.indices, workers, f"generating {evalset.name}", unit="samples")
    evalset.samples = [sample for sample, _, _ in drawn]
    evalset.truth_errors = [errors for _, errors, _ in drawn if errors is not None]
    evalset.truth_located = [where for _, _, where in drawn if where is not None]
    evalset.seconds = time.perf_counter() - start


def draw(data: dict[str, Any], seed: int, index: int) -> MeshSample:
    """Sample `index` of `seed` exactly as training's generation draws it from `data`."""
    source = get_source(data["name"])
    return source.generate(index, seed, sample_mesh_size(data["mesh_size"], seed, index), data["max_holes"], data)


def _draw(index: int, *, data: dict[str, Any], seed: int, truth: bool,
          located: bool) -> tuple[MeshSample, dict[str, float] | None, dict[str, dict[str, Any]] | None]:
    """The sample; with `truth` its reference fields' rel L2 against the finer solve's, and
    with `located` too where that error sits (error_location.locate), per target."""
    sample = draw(data, seed, index)
    if not truth:
        return sample, None, None
    finer = draw(changed(data, label_refinement=data["label_refinement"] + TRUTH_REFINEMENT), seed, index)
    if finer.num_nodes != sample.num_nodes or not np.array_equal(finer.points, sample.points):
        raise RuntimeError(f"sample {index}: refined labels came on other nodes than the sample's own")
    own = {name: torch.from_numpy(np.asarray(values, dtype=np.float64)) for name, values in sample.targets.items()}
    where = None
    if located:
        node_types = get_source(data["name"]).spec.node_types
        where = {name: locate(sample.points, sample.cells, sample.node_type, values, finer.targets[name], node_types)
                 for name, values in sample.targets.items()}
    return sample, {name: e["rel_l2"] for name, e in errors_against(own, finer.targets).items()}, where
