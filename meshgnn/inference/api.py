"""The inference API for notebooks and solvers' scripts: `meshgnn.load(path)` -> `Model`.

    model = meshgnn.load("my_model")             # package folder, run directory or .ckpt
    fields = model.predict("wing.vtu")           # {"temperature": [N, 1], "heat_flux": [N, 2]}
    fields = model.predict(mesh)                 # a meshio.Mesh
    fields = model.predict(points=p, cells={"triangle": t}, fields={"conductivity": k, ...})
    many = model.predict([mesh_a, "b.vtu"])      # a list in, a list out (one batched pass)

A mesh must carry what the model's training files carried (`model.inputs`, the node-type
field `model.node_type_field`, `model.globals` in field_data or a sidecar JSON, or passed as
`globals=`); it is checked by the same rules as `meshgnn predict` (one UserError line per
problem kind). Predictions are float64 numpy arrays [N, components] in physical units, in
the order of the mesh's points.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import meshio
import numpy as np
import torch
from torch_geometric.data import Batch

from meshgnn.devices import resolve_device
from meshgnn.errors import UserError
from meshgnn.inference.mesh_input import check_globals, read_mesh, read_meshio
from meshgnn.inference.package import Package, load_model
from meshgnn.inference.predict import predict_graph, prepare_graph

MeshLike = Union[str, Path, meshio.Mesh]
Prediction = dict[str, np.ndarray]


class Model:
    """A loaded model that predicts fields on meshes (see the module doc)."""

    def __init__(self, package: Package, device: torch.device) -> None:
        self.package = package
        self.device = device

    @property
    def targets(self) -> dict[str, int]:
        """What it predicts: target name -> number of components."""
        return dict(self.package.targets)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The point_data fields a mesh must carry."""
        return self.package.reader.inputs

    @property
    def node_type_field(self) -> str | None:
        return self.package.reader.node_type_field

    @property
    def globals(self) -> tuple[str, ...]:
        return self.package.reader.globals

    def __repr__(self) -> str:
        return (f"meshgnn.Model({self.package.name!r}, targets={self.targets}, inputs={list(self.inputs)}, "
                f"globals={list(self.globals)}, device={str(self.device)!r})")

    def predict(self, mesh: MeshLike | Sequence[MeshLike] | None = None, *, points: np.ndarray | None = None,
                cells: Mapping[str, np.ndarray] | Sequence[tuple[str, np.ndarray]] | None = None,
                fields: Mapping[str, np.ndarray] | None = None, globals: Mapping[str, Any] | None = None,
                precision: str = "fp32", batch_size: int = 16) -> Prediction | list[Prediction]:
        """Fields of one mesh (a path, a meshio.Mesh, or `points`, `cells` by type and point
        `fields` by name), or a list of predictions for a list of meshes, predicted in batches
        of `batch_size` meshes. `globals` (name -> number or list) apply to every mesh and
        replace what a mesh carries; `precision` is the forward pass's arithmetic."""
        if points is not None or cells is not None or fields is not None:
            if mesh is not None or points is None or cells is None:
                raise UserError("predict(points=..., cells=..., fields=...) takes points and cells (and the "
                                "input fields) instead of a mesh, not with one")
            mesh = meshio.Mesh(np.asarray(points), cells, point_data=dict(fields or {}))
        if mesh is None:
            raise UserError("predict() needs a mesh: a path, a meshio.Mesh, a list of them, or points= and cells=")
        batch = isinstance(mesh, (list, tuple))
        meshes = list(mesh) if batch else [mesh]
        given = check_globals(globals or {}, self.package, "globals=")
        graphs = [prepare_graph(self.package, self._sample(m, i, given), self.device) for i, m in enumerate(meshes)]
        out: list[Prediction] = []
        for start in range(0, len(graphs), max(1, batch_size)):
            chunk = Batch.from_data_list(graphs[start:start + max(1, batch_size)])
            pred = predict_graph(self.package, chunk, self.device, precision)
            bounds = chunk.ptr.tolist()
            out += [{n: v[a:b].double().numpy() for n, v in pred.items()} for a, b in zip(bounds, bounds[1:])]
        return out if batch else out[0]

    def _sample(self, mesh: MeshLike, index: int, given: Mapping[str, np.ndarray]):
        if isinstance(mesh, meshio.Mesh):
            return read_meshio(self.package, mesh, given, name=f"mesh {index}")
        if isinstance(mesh, (str, Path)):
            path = Path(mesh)
            if not path.is_file():
                raise UserError(f"{path}: no such mesh file")
            return read_mesh(self.package, path, path.parent, given, option="globals=")[0]
        raise UserError(f"predict() takes paths, meshio.Mesh objects or points=/cells=, not "
                        f"{type(mesh).__name__}")


def load(path: str | Path, device: str = "auto", prune: float = 0.0) -> Model:
    """A package folder, run directory (its best checkpoint; a staged run's last finished
    stage) or .ckpt file, verified, as a Model on `device` ("auto", "cpu", "cuda[:N]")."""
    return Model(load_model(Path(path), prune), resolve_device(device, "device="))
