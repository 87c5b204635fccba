"""Field images: the mesh's own triangles are recovered from its edges, and drawn."""

import numpy as np
import torch

from meshgnn.data.graph import edges_from_cells
from meshgnn.data.sources import get_source
from meshgnn.training.field_images import mesh_triangles, render
from meshgnn.training.trainer import oscillation


def test_triangles_from_edges_are_the_mesh_triangles_and_keep_holes_empty():
    sample = get_source("heat2d").generate(3, 0, 0.1, 3)
    (_, cells), = sample.cells
    edges = edges_from_cells(sample.cells, sample.num_nodes).numpy()
    found = mesh_triangles(sample.points, edges)
    mesh = {tuple(sorted(t)) for t in cells.tolist()}
    recovered = {tuple(sorted(t)) for t in found.tolist()}
    assert recovered <= mesh  # nothing across a hole or outside the domain
    assert len(recovered) >= 0.95 * len(mesh)


def test_render_draws_true_predicted_and_error():
    sample = get_source("heat2d").generate(0, 0, 0.12, 1)
    edges = edges_from_cells(sample.cells, sample.num_nodes).numpy()
    flux = sample.targets["heat_flux"]
    image = render(sample.points, mesh_triangles(sample.points, edges), flux, 0.9 * flux, "heat_flux")
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[1] > 2 * image.shape[0] and (image < 250).any()


def test_oscillation_measures_scatter_around_the_trend_not_the_trend():
    steady = torch.linspace(2.0, 1.0, 50).tolist()
    assert oscillation(steady) < 1e-6
    noisy = (torch.linspace(2.0, 1.0, 50) + 0.3 * torch.tensor([(-1.0) ** i for i in range(50)])).tolist()
    assert 0.15 < oscillation(noisy) < 0.25  # 0.3 scatter over a mean loss of 1.5
    assert oscillation([1.0, 2.0]) == 0.0
