"""Images of one fixed validation mesh in TensorBoard: true field, prediction and error.

Curves say *that* a model is wrong; a picture says *where* (boundary layers, corners, one
side of a hole). Every `trainer.image_every` epochs the same validation mesh is drawn for each
target: true and predicted fields share one colour scale, the absolute error has its own.
Vector fields are drawn by magnitude.

What is drawn comes from the mesh's own cells: a 2D mesh as its triangles (a quad as two), a
3D mesh as a plane cut z = const through its volume cells (each tetrahedron cut in a triangle
or a quad, values interpolated linearly along the cut edges; hexahedra, wedges and pyramids
are split into tetrahedra first). The plane lies between node heights, nearest the middle of
the z extent among the planes that cut some cell, so it is never empty.

Drawing is a side show: a failure to draw (a mesh it cannot cut, a plotting error) is logged
once and the run goes on without images.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.tri import Triangulation  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch_geometric.data import Data  # noqa: E402

log = logging.getLogger(__name__)

Cells = list[tuple[str, np.ndarray]]  # meshio-style (cell type, [C, nodes per cell])

# Each cell type as simplices of its own nodes (local indices, meshio/VTK node order).
TRIANGLES_OF = {"triangle": ((0, 1, 2),), "quad": ((0, 1, 2), (0, 2, 3))}
TETRAHEDRA_OF = {
    "tetra": ((0, 1, 2, 3),),
    "pyramid": ((0, 1, 2, 4), (0, 2, 3, 4)),
    "wedge": ((0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5)),
    "hexahedron": ((0, 1, 2, 6), (0, 2, 3, 6), (0, 3, 7, 6), (0, 7, 4, 6), (0, 4, 5, 6), (0, 5, 1, 6)),
}


def simplices(cells: Cells, table: dict[str, tuple[tuple[int, ...], ...]]) -> np.ndarray:
    """The cells of the types in `table`, each split into its simplices ([S, 3] or [S, 4]);
    other types (lines, faces of a volume mesh) are left out."""
    size = len(next(iter(table.values()))[0])
    parts = [np.asarray(conn, dtype=np.int64)[:, list(local)] for cell_type, conn in cells
             if cell_type in table for local in table[cell_type]]
    return np.concatenate(parts) if parts else np.zeros((0, size), dtype=np.int64)


@dataclass(frozen=True)
class Section:
    """What is drawn of a mesh: points in the drawing plane, triangles over them, and where each
    point's values come from: (1 - weight) * value[ends[:, 0]] + weight * value[ends[:, 1]]."""

    points: np.ndarray  # [P, 2]
    triangles: np.ndarray  # [T, 3] indices into points
    ends: np.ndarray  # [P, 2] node indices
    weight: np.ndarray  # [P]
    caption: str = ""

    def values(self, nodal: np.ndarray) -> np.ndarray:
        """[P, C] values at the section's points from [N, C] node values."""
        w = self.weight[:, None]
        return (1.0 - w) * nodal[self.ends[:, 0]] + w * nodal[self.ends[:, 1]]


def mesh_section(pos: np.ndarray, cells: Cells) -> Section:
    """The 2D mesh itself, or the plane cut of a 3D mesh (module doc)."""
    if cells and max(int(np.max(conn, initial=-1)) for _, conn in cells) >= len(pos):
        raise ValueError(f"the cells name nodes beyond the mesh's {len(pos)}")
    if pos.shape[1] == 2:
        nodes = np.arange(len(pos))
        triangles = simplices(cells, TRIANGLES_OF)
        if not len(triangles):
            raise ValueError("the 2D mesh has no triangles or quads to draw")
        return Section(pos, triangles, np.stack([nodes, nodes], axis=1), np.zeros(len(pos)))
    tets = simplices(cells, TETRAHEDRA_OF)
    return plane_cut(pos, tets, cut_height(pos[:, 2], tets))


def cut_height(z: np.ndarray, tets: np.ndarray) -> float:
    """A height strictly between node heights (so the cut has no degenerate pieces), nearest
    the middle of the z extent among those that cut at least one tetrahedron."""
    if not len(tets):
        raise ValueError("the 3D mesh has no volume cells (tetra, hexahedron, wedge, pyramid) to cut")
    levels = np.unique(z[tets])
    candidates = (levels[:-1] + levels[1:]) / 2
    low, high = np.sort(z[tets].min(axis=1)), np.sort(z[tets].max(axis=1))
    cutting = np.searchsorted(low, candidates) - np.searchsorted(high, candidates)  # tets spanning each
    candidates = candidates[cutting > 0]
    if not len(candidates):  # only when every tetrahedron is flat, which a volume cell is not
        raise ValueError("no plane z = const cuts a cell of the 3D mesh")
    middle = (z.min() + z.max()) / 2
    return float(candidates[np.argmin(np.abs(candidates - middle))])


def plane_cut(pos: np.ndarray, tets: np.ndarray, height: float) -> Section:
    """The cut of the tetrahedra by the plane z = `height` (no node may lie on it): a triangle
    where one node is on its own side, a quad (two triangles) where two are on each side."""
    above = pos[tets, 2] > height
    count = above.sum(axis=1)
    crossed = (count > 0) & (count < 4)
    tets, above, count = tets[crossed], above[crossed], count[crossed]
    # Nodes reordered so the minority side comes first: a lone node is v0; with two each side,
    # v0, v1 are on one side and v2, v3 on the other.
    first = np.where(count[:, None] == 3, ~above, above)
    v = np.take_along_axis(tets, np.argsort(~first, axis=1, kind="stable"), axis=1)
    lone = count != 2
    tri = v[lone]
    quad = v[~lone]
    # Cut triangles as triples of crossed edges (node pairs); a quad's edges go round it:
    # v0-v2, v0-v3, v1-v3, v1-v2.
    pieces = [np.stack([tri[:, [0, 1]], tri[:, [0, 2]], tri[:, [0, 3]]], axis=1),
              np.stack([quad[:, [0, 2]], quad[:, [0, 3]], quad[:, [1, 3]]], axis=1),
              np.stack([quad[:, [0, 2]], quad[:, [1, 3]], quad[:, [1, 2]]], axis=1)]
    edges = np.sort(np.concatenate(pieces).reshape(-1, 2), axis=1)  # [3 * pieces, 2]
    ends, corner = np.unique(edges, axis=0, return_inverse=True)
    z = pos[:, 2]
    weight = (height - z[ends[:, 0]]) / (z[ends[:, 1]] - z[ends[:, 0]])
    points = (1.0 - weight[:, None]) * pos[ends[:, 0], :2] + weight[:, None] * pos[ends[:, 1], :2]
    return Section(points, corner.reshape(-1, 3), ends, weight, caption=f"cut z = {height:.3g}")


def render(pos: np.ndarray, triangles: np.ndarray | None, true: np.ndarray, pred: np.ndarray,
           name: str, caption: str = "") -> np.ndarray:
    """One RGB image [H, W, 3] uint8 of true | predicted | |error| of one target."""
    true_mag = np.linalg.norm(true, axis=1)
    pred_mag = np.linalg.norm(pred, axis=1)
    error = np.linalg.norm(pred - true, axis=1)
    lo, hi = float(min(true_mag.min(), pred_mag.min())), float(max(true_mag.max(), pred_mag.max()))
    magnitude = " magnitude" if true.shape[1] > 1 else ""
    where = f", {caption}" if caption else ""
    fig = Figure(figsize=(12, 3.6), dpi=80)
    FigureCanvasAgg(fig)
    for index, (values, title, limits, cmap) in enumerate((
            (true_mag, f"true {name}{magnitude}{where}", (lo, hi), "viridis"),
            (pred_mag, f"predicted {name}{magnitude}", (lo, hi), "viridis"),
            (error, f"|error| (max {error.max():.3g})", (0.0, float(error.max()) or 1.0), "magma"))):
        ax = fig.add_subplot(1, 3, index + 1)
        if triangles is not None and len(triangles):
            art = ax.tripcolor(Triangulation(pos[:, 0], pos[:, 1], triangles), values, shading="gouraud",
                               vmin=limits[0], vmax=limits[1], cmap=cmap)
        else:
            art = ax.scatter(pos[:, 0], pos[:, 1], c=values, s=6, vmin=limits[0], vmax=limits[1], cmap=cmap)
        ax.set_title(title, fontsize=9)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(art, ax=ax, fraction=0.046, pad=0.02)
    fig.tight_layout()
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


class FieldImages:
    """Epoch hook: draws `graph` (one normalised validation graph) every `every` epochs
    through `write(tag, image [H, W, 3], epoch)`.

    `cells()` gives the graph's mesh cells (asked once, at the first drawing);
    `physical(name, values)` maps a target's normalised values to physical units. The first
    failure to draw is one warning, after which the hook draws nothing more."""

    def __init__(self, model: nn.Module, graph: Data, cells: Callable[[], Cells], targets: list[tuple[str, int]],
                 columns: dict[str, slice], physical: Callable[[str, Tensor], Tensor],
                 write: Callable[[str, np.ndarray, int], None], every: int, device: torch.device) -> None:
        self.model, self.graph, self.cells, self.targets, self.columns = model, graph, cells, targets, columns
        self.physical, self.write, self.every, self.device = physical, write, every, device
        self.section: Section | None = None
        self.failed = False

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.failed or self.every <= 0 or epoch % self.every:
            return
        try:
            images = self.draw()
        except Exception as exc:  # noqa: BLE001 - any drawing failure: warn once, keep training
            self.failed = True
            log.warning("field images are off for the rest of this run: drawing the validation mesh failed "
                        "at epoch %d (%s: %s); training goes on", epoch, type(exc).__name__, exc)
            return
        for tag, image in images:  # a failed write is the run's storage problem, not a drawing one
            self.write(tag, image, epoch)

    @torch.no_grad()
    def draw(self) -> list[tuple[str, np.ndarray]]:
        """(tag, image) per target of the model's current prediction."""
        if self.section is None:
            self.section = mesh_section(self.graph.pos.double().cpu().numpy(), self.cells())
        was_training = self.model.training
        self.model.eval()
        try:
            pred, _ = self.model(self.graph.to(self.device))
        finally:
            self.model.train(was_training)
        images = []
        for name, _dim in self.targets:
            true = self.physical(name, self.graph.y[:, self.columns[name]]).cpu().double().numpy()
            guess = self.physical(name, pred[name]).cpu().double().numpy()
            images.append((f"fields/{name}", render(self.section.points, self.section.triangles,
                                                    self.section.values(true), self.section.values(guess),
                                                    name, self.section.caption)))
        return images
