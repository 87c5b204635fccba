"""The vectorised graph preparation (issue #19) against the formulation it replaced.

Edges come from one torch sort of packed keys and the boundary distances from one k-d tree per
boundary kind over all graphs at once; both must give exactly what the numpy sort and the
per-graph, per-kind trees gave on the built-in samples, so every cache, checkpoint and package
keeps its inputs. The device path (the store prepared on a GPU) must equal the CPU's.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from meshgnn.data.graph import CELL_EDGES, boundary_distances, edges_from_cells, graph_extent
from meshgnn.data.sources import get_source

SIZES = {"heat2d": 0.12, "elasticity2d": 0.12, "elasticity3d": 0.3}


def _reference_edges(cells: list[tuple[str, np.ndarray]], num_nodes: int) -> np.ndarray:
    pairs = []
    for cell_type, conn in cells:
        conn = np.asarray(conn, dtype=np.int64)
        pairs += [np.stack([conn[:, a], conn[:, b]]) for a, b in CELL_EDGES[cell_type]]
    both = np.concatenate(pairs + [p[::-1] for p in pairs], axis=1)
    keys = np.unique(both[1] * num_nodes + both[0])
    return np.stack([keys % num_nodes, keys // num_nodes])


def _reference_distances(pos: torch.Tensor, node_type: torch.Tensor, graph_id: torch.Tensor, num_graphs: int,
                         num_node_types: int) -> np.ndarray:
    _, extent = graph_extent(pos, graph_id, num_graphs)
    unit = (pos.double() / extent[graph_id].double()).numpy()
    out = np.full((len(unit), num_node_types - 1), math.sqrt(pos.shape[1]))
    for g in range(num_graphs):
        rows = np.flatnonzero(graph_id.numpy() == g)
        for kind in range(1, num_node_types):
            members = unit[rows][node_type.numpy()[rows] == kind]
            if len(members):
                out[rows, kind - 1] = cKDTree(members).query(unit[rows])[0]
    return out


@pytest.fixture(scope="module", params=sorted(SIZES))
def samples(request):
    source = get_source(request.param)
    return source, [source.generate(i, 3, SIZES[request.param], 2) for i in range(3)]


def test_edges_equal_the_numpy_formulation(samples):
    _, meshes = samples
    for sample in meshes:
        np.testing.assert_array_equal(edges_from_cells(sample.cells, sample.num_nodes).numpy(),
                                      _reference_edges(sample.cells, sample.num_nodes))


def test_boundary_distances_of_a_batch_equal_per_graph_trees(samples):
    source, meshes = samples
    # far apart and of different sizes, and the middle graph without any boundary node
    pos = torch.cat([torch.from_numpy(s.points * (1 + i) + 100.0 * i).float() for i, s in enumerate(meshes)])
    node_type = torch.cat([torch.from_numpy(s.node_type) for s in meshes])
    counts = torch.tensor([s.num_nodes for s in meshes])
    node_type[counts[0]:counts[0] + counts[1]] = 0
    graph_id = torch.repeat_interleave(torch.arange(len(meshes)), counts)
    kinds = len(source.spec.node_types)
    got = boundary_distances(pos, node_type, graph_id, len(meshes), kinds).numpy()
    want = _reference_distances(pos, node_type, graph_id, len(meshes), kinds)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert np.all(got[counts[0]:counts[0] + counts[1]] == np.float32(math.sqrt(pos.shape[1])))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_features_and_levels_prepared_on_the_gpu_equal_the_cpu(samples):
    from meshgnn.data.features import FeatureSpec, ModelInputs, add_features, single_graph_store
    from meshgnn.data.graph import sample_to_graph
    from meshgnn.data.hierarchy import HierarchySpec

    source, meshes = samples
    spec = FeatureSpec(source.spec, 8, 1.0, 0, True, False, ModelInputs(True, False, HierarchySpec(2, 2.0, 0.2)))
    for sample in meshes:
        graph = sample_to_graph(sample, source.spec)
        cpu, cpu_slices = single_graph_store(graph)
        add_features(cpu, cpu_slices, spec)
        gpu, gpu_slices = single_graph_store(sample_to_graph(sample, source.spec, "cuda"))
        assert gpu.pos.is_cuda and gpu.edge_index.is_cuda
        add_features(gpu, gpu_slices, spec)
        assert set(cpu.keys()) == set(gpu.keys())
        for key in (key for key in cpu.keys() if isinstance(cpu[key], torch.Tensor)):
            np.testing.assert_allclose(gpu[key].cpu().numpy(), cpu[key].numpy(), rtol=1e-5, atol=1e-5, err_msg=key)
        for key, offsets in cpu_slices.items():
            assert torch.equal(gpu_slices[key], offsets), key
