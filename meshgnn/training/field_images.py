"""Images of one fixed validation mesh in TensorBoard: true field, prediction and error.

Curves say *that* a model is wrong; a picture says *where* (boundary layers, corners, one
side of a hole). Every `trainer.image_every` epochs the same validation mesh is drawn for each
target: true and predicted fields share one colour scale, the absolute error has its own.
Vector fields are drawn by magnitude. 2D meshes are drawn as their triangles (recovered from
the graph's edges); 3D meshes as the nodes of a slab through the middle of the z extent.
"""

from __future__ import annotations

from typing import Callable

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.tri import Triangulation  # noqa: E402
from scipy.spatial import Delaunay  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch_geometric.data import Data  # noqa: E402

SLAB_FRACTION = 0.1  # 3D: nodes within +-5 % of the z extent around its middle are drawn


def mesh_triangles(pos: np.ndarray, edge_index: np.ndarray) -> np.ndarray:
    """The 2D mesh's triangles: Delaunay triangles of the nodes whose three sides are mesh
    edges (holes and concave boundaries stay empty; a non-Delaunay mesh loses a few)."""
    simplices = Delaunay(pos).simplices
    n = len(pos)
    sides = np.stack([simplices[:, [0, 1]], simplices[:, [1, 2]], simplices[:, [2, 0]]], axis=1)
    keep = np.isin(sides[..., 0] * n + sides[..., 1], edge_index[0] * n + edge_index[1]).all(axis=1)
    return simplices[keep]


def render(pos: np.ndarray, triangles: np.ndarray | None, true: np.ndarray, pred: np.ndarray,
           name: str) -> np.ndarray:
    """One RGB image [H, W, 3] uint8 of true | predicted | |error| of one target."""
    true_mag = np.linalg.norm(true, axis=1)
    pred_mag = np.linalg.norm(pred, axis=1)
    error = np.linalg.norm(pred - true, axis=1)
    lo, hi = float(min(true_mag.min(), pred_mag.min())), float(max(true_mag.max(), pred_mag.max()))
    magnitude = " magnitude" if true.shape[1] > 1 else ""
    fig = Figure(figsize=(12, 3.6), dpi=80)
    FigureCanvasAgg(fig)
    for index, (values, title, limits, cmap) in enumerate((
            (true_mag, f"true {name}{magnitude}", (lo, hi), "viridis"),
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

    `physical(name, values)` maps a target's normalised values to physical units."""

    def __init__(self, model: nn.Module, graph: Data, targets: list[tuple[str, int]],
                 columns: dict[str, slice], physical: Callable[[str, Tensor], Tensor],
                 write: Callable[[str, np.ndarray, int], None], every: int, device: torch.device) -> None:
        self.model, self.graph, self.targets, self.columns = model, graph, targets, columns
        self.physical, self.write, self.every, self.device = physical, write, every, device
        pos = graph.pos.double().cpu().numpy()
        if pos.shape[1] == 2:
            self.shown = np.arange(len(pos))
            self.triangles = mesh_triangles(pos, graph.edge_index.cpu().numpy())
        else:  # a slab through the middle of the z extent, seen along z
            z = pos[:, 2]
            middle, extent = (z.min() + z.max()) / 2, max(z.max() - z.min(), 1e-12)
            self.shown = np.flatnonzero(np.abs(z - middle) <= SLAB_FRACTION * extent / 2)
            self.triangles = None
        self.pos = pos[self.shown, :2]

    @torch.no_grad()
    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.every <= 0 or epoch % self.every:
            return
        was_training = self.model.training
        self.model.eval()
        pred, _ = self.model(self.graph.to(self.device))
        self.model.train(was_training)
        for name, _dim in self.targets:
            true = self.physical(name, self.graph.y[:, self.columns[name]]).cpu().double().numpy()
            guess = self.physical(name, pred[name]).cpu().double().numpy()
            image = render(self.pos, self.triangles, true[self.shown], guess[self.shown], name)
            self.write(f"fields/{name}", image, epoch)
