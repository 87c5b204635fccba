"""Batches of an in-memory dataset assembled with one gather per attribute, where its store is.

PyG's collation takes a batch's graphs one by one: a Data object per graph, then for every
attribute a concatenation, and for every index attribute one addition per graph of an offset
it copies to the device. On a store held on the GPU each of those copies waits for the device
(a pageable host-to-device copy synchronises), a hundred or so per batch of a multi-scale
model, and the Python work per graph costs more than the training step it feeds.

Here the slices (host offsets, as PyG keeps them) give every row a batch needs: the row
indices of each attribute kind, the offset each index attribute adds per row, the batch
vector and `ptr` are computed on the host with numpy, copied to the device in one
non-blocking transfer from pinned memory, and each attribute is one `index_select` (plus one
addition for an index attribute). Nothing waits for the device. The batch is the one PyG
builds from the same graphs, attribute for attribute, with its `_slice_dict` and `_inc_dict`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Batch, Data, InMemoryDataset


class StoreBatches:
    """`batch(indices)`: the dataset's graphs `indices` as one Batch, built on the store's device."""

    def __init__(self, dataset: InMemoryDataset) -> None:
        store, slices = dataset._data, dataset.slices
        self.store, self.graph_ids = store, np.asarray(dataset.indices(), dtype=np.int64)
        self.keys = [key for key in slices if isinstance(store[key], Tensor)]
        self.bounds = {key: slices[key].numpy().astype(np.int64) for key in self.keys}
        self.cat_dim = {}
        for key in self.keys:
            value = store[key]
            dim = store.__cat_dim__(key, value)
            if dim is None or value.dim() == 0:
                raise ValueError(f"store attribute {key} is stacked, not concatenated: use PyG's collation")
            self.cat_dim[key] = dim + value.dim() if dim < 0 else dim
        kinds: dict[bytes, int] = {}  # attributes with the same slices share one gather index
        self.kind = {key: kinds.setdefault(self.bounds[key].tobytes(), len(kinds)) for key in self.keys}
        node_key = "x" if "x" in self.keys else self.keys[0]
        self.node_bounds = self.bounds[node_key]
        # index attributes: what their values index, as per-graph row counts (see `__inc__`)
        self.index_counts: dict[str, np.ndarray] = {}
        for key in self.keys:
            if store.__inc__(key, store[key]) == 0:
                continue
            rows = store.index_rows(key) if hasattr(store, "index_rows") else None
            self.index_counts[key] = np.diff(self.bounds[rows] if rows is not None else self.node_bounds)
        self.graph_nodes = getattr(store._store, "_num_nodes", None)  # per-graph num_nodes, as PyG keeps it

    def batch(self, indices: list[int]) -> Batch:
        graphs = self.graph_ids[np.asarray(indices, dtype=np.int64)]
        parts, layout = [], {}
        row_index: dict[int, tuple[int, int]] = {}
        for key in self.keys:
            bounds = self.bounds[key]
            starts, counts = bounds[graphs], bounds[graphs + 1] - bounds[graphs]
            kind = self.kind[key]
            if kind not in row_index:
                row_index[kind] = _append(parts, _ranges(starts, counts))
            if key in self.index_counts:
                offsets = _exclusive_cumsum(self.index_counts[key][graphs])
                layout[key] = (row_index[kind], _append(parts, np.repeat(offsets, counts)), counts, offsets)
            else:
                layout[key] = (row_index[kind], None, counts, None)
        node_counts = self.node_bounds[graphs + 1] - self.node_bounds[graphs]
        batch_vector = _append(parts, np.repeat(np.arange(len(graphs)), node_counts))
        ptr = _append(parts, np.concatenate([[0], np.cumsum(node_counts)]))
        device = self.store[self.keys[0]].device
        packed = torch.from_numpy(np.concatenate(parts))
        if device.type == "cuda":
            packed = packed.pin_memory().to(device, non_blocking=True)

        def view(span: tuple[int, int]) -> Tensor:
            return packed[span[0]:span[1]]

        out = Batch(_base_cls=type(self.store))
        slice_dict, inc_dict = {}, {}
        for key in self.keys:
            rows, increments, counts, offsets = layout[key]
            value = self.store[key].index_select(self.cat_dim[key], view(rows))
            if increments is not None:
                value = value + view(increments)
            out[key] = value
            slice_dict[key] = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]))
            inc_dict[key] = torch.from_numpy(offsets if offsets is not None else np.zeros(len(graphs), np.int64))
        out.batch, out.ptr = view(batch_vector), view(ptr)
        if self.graph_nodes is not None:
            out._store._num_nodes = [self.graph_nodes[g] for g in graphs]
        out.num_nodes = int(node_counts.sum())
        out._num_graphs, out._slice_dict, out._inc_dict = len(graphs), slice_dict, inc_dict
        return out


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The concatenation of arange(start, start + count) for each pair."""
    total = int(counts.sum())
    shift = np.repeat(starts - _exclusive_cumsum(counts), counts)
    return shift + np.arange(total, dtype=np.int64)


def _exclusive_cumsum(values: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(values)[:-1]]).astype(np.int64)


def _append(parts: list[np.ndarray], values: np.ndarray) -> tuple[int, int]:
    """Add `values` to the host buffer; their (start, end) in it."""
    start = sum(len(part) for part in parts)
    parts.append(np.asarray(values, dtype=np.int64))
    return start, start + len(values)


def as_batch(batch: Batch) -> Batch:
    """The DataLoader's collate function for a dataset that returns whole batches."""
    return batch


class BatchedDataset(torch.utils.data.Dataset):
    """A map-style dataset whose batch of indices is fetched as one Batch (`__getitems__`,
    which torch's DataLoader calls with a batch sampler's indices)."""

    def __init__(self, dataset: InMemoryDataset) -> None:
        self.dataset = dataset
        self._batches: StoreBatches | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Data:
        return self.dataset[index]

    def __getitems__(self, indices: list[int]) -> Batch:
        if self._batches is None:  # made where it is used (a worker process has its own)
            self._batches = StoreBatches(self.dataset)
        return self._batches.batch(indices)

    def __getstate__(self) -> dict:
        return {"dataset": self.dataset, "_batches": None}
