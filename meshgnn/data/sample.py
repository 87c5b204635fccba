"""The solver-independent record every data source produces.

Generators and mesh-file readers both emit `MeshSample`s, so the graph builder, the cache and
the baselines never need to know where a mesh came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FieldSpec:
    """Name and number of components of one node field (1 = scalar, 2/3 = vector)."""

    name: str
    dim: int


@dataclass(frozen=True)
class SourceSpec:
    """What every sample of a data source carries, in a fixed order.

    The order of `inputs`, `targets` and `global_names` is the column order of the feature
    and target matrices, so it is part of a trained model's contract.
    """

    node_types: tuple[str, ...]  # index 0 is always "interior"; others are boundary kinds
    inputs: tuple[FieldSpec, ...]
    targets: tuple[FieldSpec, ...]
    global_names: tuple[str, ...]
    spatial_dim: int = 2
    has_baseline: bool = True  # samples carry an analytic `baseline` of every target


@dataclass
class MeshSample:
    """One solved mesh in physical units.

    points:    [N, spatial_dim] float64 node coordinates.
    cells:     meshio-style list of (cell type, [C, nodes per cell] int64 connectivity).
    node_type: [N] int64 index into `SourceSpec.node_types`.
    inputs:    field name -> [N, dim] float64, known before solving (boundary values, loads).
    targets:   field name -> [N, dim] float64, the solver's answer.
    globals:   [G] float64 sample-level parameters in `SourceSpec.global_names` order.
    baseline:  field name -> [N, dim] float64, a cheap analytic guess of each target that a
               trained network must beat (e.g. boundary data interpolated into the interior).
    """

    points: np.ndarray
    cells: list[tuple[str, np.ndarray]]
    node_type: np.ndarray
    inputs: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]
    globals: np.ndarray
    baseline: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_nodes(self) -> int:
        return int(self.points.shape[0])
