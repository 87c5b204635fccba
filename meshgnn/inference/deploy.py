"""A trained EdgeGNN as a self-contained `torch.export` program (a .pt2 file).

The file holds the model's graph of ATen operations and its weights; running it needs PyTorch
alone, not meshgnn or PyG: in Python, `torch.export.load(path).module()(*inputs)`; elsewhere,
lower the program further (e.g. `run_decompositions()` for core ATen, or AOTInductor). It was
traced in float32 on the CPU. Node and edge counts, and every coarse level's node and edge
counts, are dynamic (any value >= 0): one program serves any mesh, and any batch of meshes.

Input contract: positional tensors, in this order (`program_inputs` builds them from a batch)
-------------------------------------------------------------------------------------------
N nodes and E directed edges of the mesh (a batch of meshes is one disconnected graph with
global node indices, as a PyG `Batch` has them); F node features, D spatial dimensions,
T = sum of the targets' widths. Floats are float32, indices int64 and zero-based.

    x           [N, F]      float32  node features, normalised (`Normalizer`, key "x")
    edge_attr   [E, D + 1]  float32  (pos[dst] - pos[src], length), normalised ("edge_attr")
    edge_index  [2, E]      int64    row 0 the source node, row 1 the destination; columns
                                     sorted by destination (the aggregation reads each
                                     node's incoming edges as one contiguous run)
    prior       [N, T]      float32  only if the model is residual: the analytic baseline in
                                     normalised target units, targets in the model's order

then, for each coarse level l = 1 .. L (L = the model's `num_levels`; nothing when L = 0),
with N_0 = N, N_l the level's node (cluster) count and E_l its edge count, five tensors:

    cluster_l     [N_{l-1}]     int64    the level-l node (cluster) of each level-(l-1) node
    offset_l      [N_{l-1}, D]  float32  that node's position minus its cluster's centroid,
                                         over the level's cell size (below)
    edge_index_l  [2, E_l]      int64    the level's edges, indices in 0 .. N_l - 1, sorted
                                         by destination
    edge_attr_l   [E_l, D + 1]  float32  (relative centroid position, length) / cell size
    nodes_l       [N_l, 0]      float32  empty: only its row count N_l is read

so 3 (+1 with prior) + 5 L inputs in all; `input_names` lists them. The coarse levels are
what `meshgnn.data.hierarchy.attach_levels` builds with the model's `num_levels`,
`coarsening` and `cell_size`: data computed from the mesh, not part of the program. Level l's
cells have side `cell_size * coarsening ** (l - 1)` in the mesh's length units, on a grid
anchored at the mesh's bounding-box corner; `cell_size` is fixed by training and recorded in
the package's config.json (`features.model_inputs.hierarchy`; a package without `layout`
there sized each mesh's cells by its own mean edge length instead, see
`meshgnn.data.hierarchy`). N_l travels as the shape
of `nodes_l` rather than as a number because the program never reads a value to size a
tensor (a data-dependent size could not stay symbolic, and costs a host sync on a GPU).

Output: a tuple of one [N, dim] float32 tensor per target, in the model's target order, in
normalised target units (`Normalizer.denormalize("y", ...)` of their concatenation along
dim 1 gives physical units).

The .pt2 also carries `meshgnn.json` (read it with `torch.export.load(path,
extra_files={"meshgnn.json": ""})`): the targets with their widths, `num_levels`,
`residual` and the input names, so a deployer need not guess them.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.export import Dim, ExportedProgram
from torch_geometric.data import Batch

from meshgnn.errors import UserError
from meshgnn.models.edge_gnn import EdgeGNN, LevelTensors, batch_levels

METADATA = "meshgnn.json"
FORMAT = 1
LEVEL_INPUTS = LevelTensors._fields  # each coarse level's five tensors, in input order


def input_names(num_levels: int, residual: bool) -> list[str]:
    """The program's inputs, in order (the names of the module docstring's contract)."""
    names = ["x", "edge_attr", "edge_index"] + (["prior"] if residual else [])
    return names + [f"{name}_{level}" for level in range(1, num_levels + 1) for name in LEVEL_INPUTS]


def program_inputs(batch: Batch, num_levels: int, residual: bool) -> tuple[Tensor, ...]:
    """A batch as the program's positional inputs, in `input_names` order (read the same way
    `EdgeGNN.forward` reads the batch)."""
    inputs = [batch.x, batch.edge_attr, batch.edge_index] + ([batch.prior] if residual else [])
    for level in batch_levels(batch, num_levels):
        inputs.extend(level)
    return tuple(inputs)


class ProgramModule(nn.Module):
    """The model on positional tensors, returning a tuple of predictions: what is exported."""

    def __init__(self, model: EdgeGNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        model = self.model
        first = 4 if model.residual else 3
        prior = inputs[3] if model.residual else None
        size = len(LEVEL_INPUTS)
        levels = [LevelTensors(*inputs[first + size * i: first + size * (i + 1)])
                  for i in range(model.num_levels)]
        pred, _ = model.forward_tensors(inputs[0], inputs[1], inputs[2], prior, levels)
        return tuple(pred[name] for name, _ in model.targets)


def dynamic_shapes(num_levels: int, residual: bool) -> tuple[dict[int, Dim], ...]:
    """One symbolic size per level's node count and edge count, shared by every input it
    sizes (that sharing is what tells export that, e.g., `cluster_1` has a row per node)."""
    nodes = [Dim("num_nodes")] + [Dim(f"num_nodes_{level}") for level in range(1, num_levels + 1)]
    edges = [Dim("num_edges")] + [Dim(f"num_edges_{level}") for level in range(1, num_levels + 1)]
    shapes: list[dict[int, Dim]] = [{0: nodes[0]}, {0: edges[0]}, {1: edges[0]}]
    if residual:
        shapes.append({0: nodes[0]})
    for level in range(1, num_levels + 1):
        # cluster, offset, edge_index, edge_attr, nodes (LevelTensors order)
        shapes += [{0: nodes[level - 1]}, {0: nodes[level - 1]}, {1: edges[level]},
                   {0: edges[level]}, {0: nodes[level]}]
    return tuple(shapes)


def export_program(model: EdgeGNN, example_batch: Batch, path: str | Path) -> Path:
    """Export `model` traced on `example_batch` and save it to `path` (a .pt2 file).

    Exports a copy in eval mode, on the CPU, in float32 (`model` itself is left as it was),
    with every node and edge count dynamic (`dynamic_shapes`). Trace on a batch whose counts
    are all >= 2; the program then takes any counts, including a coarse level of one node
    and no edges (which small meshes have).
    """
    path = Path(path)
    module = ProgramModule(copy.deepcopy(model).float().cpu().eval())
    example = _cpu_float(program_inputs(example_batch, model.num_levels, model.residual))
    with torch.no_grad():
        # `*inputs` is one argument to export: its dynamic shapes are one tuple, one per tensor
        program = torch.export.export(module, example,
                                      dynamic_shapes=(dynamic_shapes(model.num_levels, model.residual),))
    metadata = {"format": FORMAT, "targets": [[name, dim] for name, dim in model.targets],
                "num_levels": model.num_levels, "residual": model.residual,
                "inputs": input_names(model.num_levels, model.residual)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, path, extra_files={METADATA: json.dumps(metadata)})
    return path


@dataclass(frozen=True)
class DeployedProgram:
    """A loaded .pt2 with what is needed to feed it a batch and name its outputs."""

    program: ExportedProgram
    module: nn.Module  # program.module(), built once
    targets: list[tuple[str, int]]
    num_levels: int
    residual: bool

    @property
    def input_names(self) -> list[str]:
        return input_names(self.num_levels, self.residual)


def load_program(path: str | Path) -> DeployedProgram:
    extra = {METADATA: ""}
    program = torch.export.load(Path(path), extra_files=extra)
    if not extra[METADATA]:
        raise UserError(f"{path}: not a program saved by `meshgnn export --program` (no {METADATA}); "
                        "export it again")
    meta = json.loads(extra[METADATA])
    if meta.get("format") != FORMAT:
        raise UserError(f"{path}: program format {meta.get('format')}, this meshgnn reads {FORMAT}; "
                        "export it again with this meshgnn")
    return DeployedProgram(program, program.module(), [(name, int(dim)) for name, dim in meta["targets"]],
                           int(meta["num_levels"]), bool(meta["residual"]))


def run_program(program: DeployedProgram, batch: Batch) -> dict[str, Tensor]:
    """`{target: [N, dim]}` (normalised units, on the CPU) of the program on a batch that
    `EdgeGNN.forward` would take."""
    inputs = _cpu_float(program_inputs(batch, program.num_levels, program.residual))
    with torch.no_grad():
        outputs = program.module(*inputs)
    return {name: out for (name, _), out in zip(program.targets, outputs)}


def _cpu_float(tensors: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return tuple(t.cpu().float() if t.is_floating_point() else t.cpu() for t in tensors)
