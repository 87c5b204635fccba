"""The cells of one graph of a dataset, for drawing it.

Cached graphs hold edges only (what the model reads), not the mesh's cells, which a picture of
the mesh needs. So the cells come from the graph's own source again, once: a built-in generator
makes the same sample again (a sample depends only on (seed, index)), a mesh folder reads the
graph's file. The nodes found are checked against the graph's, so a picture never mixes meshes.
"""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig
from torch_geometric.data import Dataset

from meshgnn.data.folder_dataset import FileGraphDataset
from meshgnn.data.generate import sample_mesh_size
from meshgnn.data.mesh_read import read_sample
from meshgnn.data.sample import MeshSample
from meshgnn.data.sources import get_source


def graph_cells(data_cfg: DictConfig, dataset: Dataset, position: int) -> list[tuple[str, np.ndarray]]:
    """The meshio-style cells of graph `position` of `dataset` (a split of `load_datasets`);
    ValueError when its source no longer gives the graph's nodes."""
    if isinstance(dataset, FileGraphDataset):
        entry = dataset.entries[position]
        sample = read_sample(entry.mesh, dataset.convert.spec, dataset.convert.dims)
        where = str(entry.mesh)
    else:
        index = int(dataset.indices()[position])
        size = sample_mesh_size(data_cfg.mesh_size, data_cfg.seed, index)
        sample = get_source(data_cfg.name).generate(index, data_cfg.seed, size, data_cfg.max_holes, data_cfg)
        where = f"{data_cfg.name} sample {index}"
    _check_nodes(sample, dataset[position].pos.double().cpu().numpy(), where)
    return sample.cells


def _check_nodes(sample: MeshSample, pos: np.ndarray, where: str) -> None:
    points = np.asarray(sample.points, dtype=np.float64)
    if points.shape != pos.shape or not np.allclose(points, pos, rtol=1e-5, atol=1e-6):
        raise ValueError(f"{where} no longer has the nodes of its cached graph")
