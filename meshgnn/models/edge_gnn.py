"""EdgeGNN: encode-process-decode message passing on the mesh graph (MeshGraphNets family).

Edges carry latents of their own (not just messages) because on a mesh the edge geometry is
what lets the network form differences and gradients of fields.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from torch_geometric.data import Batch
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

from meshgnn.segments import destination_offsets, segment_aggregate


def mlp(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int, dropout: float = 0.0,
        layer_norm: bool = True) -> nn.Sequential:
    """`num_layers` linear layers with SiLU between them, then optional LayerNorm."""
    dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
    layers: list[nn.Module] = []
    for i in range(num_layers):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < num_layers - 1:
            layers.append(nn.SiLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    if layer_norm:
        layers.append(nn.LayerNorm(out_dim))
    return nn.Sequential(*layers)


class ProcessorBlock(MessagePassing):
    """e' = e + MLP([e, h_src, h_dst]);  h' = h + MLP([h, aggr_in(e')]).

    The edge MLP's first layer is applied in three parts, W [e, h_src, h_dst] =
    W_e e + (W_s h)[src] + (W_d h)[dst]: the node parts are computed once per node and gathered,
    instead of once per edge on a concatenation. Same function, about a third of the work of
    that layer (meshes have ~6 edges per node).

    Edges come sorted by destination (the data pipeline builds them so), so each node's
    incoming edges are one contiguous segment, delimited by `dst_ptr`: the aggregation is a
    segment reduction (see `segment_aggregate`).

    The node parts are gathered in float32. Under autocast the matmuls return bf16/fp16, and
    the gradient of a 16-bit gather is an atomic index_add that inductor does not generate for
    16-bit types: it falls back to a library kernel that took a fifth of a compiled
    million-node bf16 step on an H200 (126 ms; 101 ms with the float32 gather).
    """

    def __init__(self, hidden_dim: int, mlp_layers: int, dropout: float, aggregation: str) -> None:
        super().__init__(aggr=None)
        self.aggregation = aggregation
        self.edge_mlp = mlp(3 * hidden_dim, hidden_dim, hidden_dim, mlp_layers, dropout)
        self.node_mlp = mlp(2 * hidden_dim, hidden_dim, hidden_dim, mlp_layers, dropout)
        self.hidden_dim = hidden_dim

    def forward(self, h: Tensor, edge_index: Tensor, e: Tensor, dst_ptr: Tensor) -> tuple[Tensor, Tensor]:
        first = self.edge_mlp[0]
        w_edge, w_src, w_dst = first.weight.split(self.hidden_dim, dim=1)
        e = e + self.edge_updater(edge_index, e=e @ w_edge.t() + first.bias,
                                  src=(h @ w_src.t()).float(), dst=(h @ w_dst.t()).float())
        aggregated = self.propagate(edge_index, e=e, dst_ptr=dst_ptr, size=(h.size(0), h.size(0)))
        return h + self.node_mlp(torch.cat([h, aggregated], dim=-1)), e

    def edge_update(self, e: Tensor, src_j: Tensor, dst_i: Tensor) -> Tensor:
        # PyG convention: _j indexes the source node, _i the destination.
        return self.edge_mlp[1:](e + src_j + dst_i)

    def message(self, e: Tensor) -> Tensor:
        return e

    def aggregate(self, inputs: Tensor, edge_index: Tensor, dst_ptr: Tensor) -> Tensor:
        return segment_aggregate(inputs, edge_index, dst_ptr, self.aggregation)


class EdgeGNN(nn.Module):
    """Maps a batch to `{target name: [num_nodes, dim]}` in normalised units.

    With `num_levels` = L > 0 it is a V-cycle over the mesh and L coarse graphs of physical
    cells of one size per model, whatever the mesh's resolution (see
    `meshgnn.data.hierarchy`): `num_layers` blocks at each level on the way down, mean-pooling
    into the next level; `num_layers` blocks at the coarsest; then back up, each level adding
    to its own latents what its cluster computed (with the node's offset from the cluster's
    centroid, so it can interpolate) before another `num_layers` blocks. A node then sees the
    whole domain after O(L * num_layers) blocks, at a cost dominated by the finest level's
    2 * num_layers blocks. L = 0 is the plain single-level encode-process-decode model.

    With `residual`, each head predicts a correction that is added to `batch.prior`, the
    analytic baseline in normalised target units: an untrained model already answers with the
    baseline, and training spends its steps on what the baseline gets wrong.
    """

    def __init__(self, node_dim: int, edge_dim: int, targets: Sequence[tuple[str, int]],
                 hidden_dim: int, num_layers: int, mlp_layers: int, dropout: float,
                 aggregation: str, num_levels: int = 0, residual: bool = False) -> None:
        super().__init__()
        self.targets = [(name, int(dim)) for name, dim in targets]
        self.num_levels = num_levels
        self.checkpoint_blocks = False  # trainer.activation_checkpointing: see `_run`
        self.residual = residual
        ends = torch.tensor([dim for _, dim in self.targets]).cumsum(0).tolist()
        self.prior_columns = {name: slice(end - dim, end) for (name, dim), end in zip(self.targets, ends)}
        spatial_dim = edge_dim - 1
        self.node_encoder = mlp(node_dim, hidden_dim, hidden_dim, mlp_layers)
        self.edge_encoder = mlp(edge_dim, hidden_dim, hidden_dim, mlp_layers)

        def blocks() -> nn.ModuleList:
            return nn.ModuleList(ProcessorBlock(hidden_dim, mlp_layers, dropout, aggregation)
                                 for _ in range(num_layers))

        self.processor = blocks()  # the finest level's (and a single-level model's only) blocks
        self.down = nn.ModuleList(blocks() for _ in range(num_levels))  # down[l]: at level l+1
        self.up = nn.ModuleList(blocks() for _ in range(num_levels))  # up[l]: at level l
        self.coarse_edge_encoders = nn.ModuleList(
            mlp(edge_dim, hidden_dim, hidden_dim, mlp_layers) for _ in range(num_levels))
        self.unpool = nn.ModuleList(
            mlp(2 * hidden_dim + spatial_dim, hidden_dim, hidden_dim, mlp_layers)
            for _ in range(num_levels))
        self.decoders = nn.ModuleDict(
            {name: mlp(hidden_dim, hidden_dim, dim, mlp_layers, layer_norm=False)
             for name, dim in self.targets})

    def forward(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        pred, h = self.forward_tensors(*self.batch_inputs(batch))
        return pred, {"node_latent": h}

    def batch_inputs(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor, Tensor | None, list[LevelTensors]]:
        """`forward_tensors`' arguments from a batch (what a compiled forward is called with)."""
        prior = batch.prior if self.residual else None
        return batch.x, batch.edge_attr, batch.edge_index, prior, batch_levels(batch, self.num_levels)

    def forward_tensors(self, x: Tensor, edge_attr: Tensor, edge_index: Tensor, prior: Tensor | None,
                        levels: Sequence[LevelTensors]) -> tuple[dict[str, Tensor], Tensor]:
        """The whole model on plain tensors: (`{target: [N, dim]}`, node latents [N, hidden]).

        `forward` and the exported program (`meshgnn.inference.deploy`) both run this, so
        they compute the same function. No size here is read from a tensor's values:
        every size comes from a shape, so `torch.export` keeps node, edge and cluster counts
        symbolic and a GPU forward never waits for a device-to-host copy.

        `edge_index` and every level's edges must be sorted by destination, as the data
        pipeline builds them (`edges_from_cells`, `sort_edges_by_destination`): the blocks
        aggregate each node's incoming edges as one contiguous segment.
        """
        if len(levels) != self.num_levels:
            raise ValueError(f"the model has {self.num_levels} coarse levels, got {len(levels)}")
        graphs = [(edge_index, destination_offsets(edge_index, x.shape[0]))]  # per level: edges, offsets
        graphs += [(coarse.edge_index, destination_offsets(coarse.edge_index, coarse.nodes.shape[0]))
                   for coarse in levels]
        h = self.node_encoder(x)
        e = self.edge_encoder(edge_attr)
        h, e = self._run(self.processor, h, e, *graphs[0])
        skips = []
        for level in range(1, self.num_levels + 1):
            skips.append((h, e))
            coarse = levels[level - 1]
            h = pool_mean(h, coarse.cluster, coarse.nodes.shape[0])
            e = self.coarse_edge_encoders[level - 1](coarse.edge_attr)
            h, e = self._run(self.down[level - 1], h, e, *graphs[level])
        for level in range(self.num_levels, 0, -1):
            fine_h, fine_e = skips.pop()
            coarse = levels[level - 1]
            h = fine_h + self.unpool[level - 1](
                torch.cat([fine_h, h[coarse.cluster], coarse.offset], dim=-1))
            h, e = self._run(self.up[level - 1], h, fine_e, *graphs[level - 1])
        pred = {name: decoder(h) for name, decoder in self.decoders.items()}
        if self.residual:
            if prior is None:
                raise ValueError("a residual model needs the prior it corrects")
            for name, columns in self.prior_columns.items():
                pred[name] = pred[name] + prior[:, columns]
        return pred, h

    def _run(self, blocks: nn.ModuleList, h: Tensor, e: Tensor, edge_index: Tensor,
             dst_ptr: Tensor) -> tuple[Tensor, Tensor]:
        """The blocks in turn. With `checkpoint_blocks`, while gradients are recorded, each block
        keeps only its inputs and recomputes its activations in backward: a block's edge
        activations ([E, hidden] per MLP layer) are what fills a GPU on a large mesh."""
        for block in blocks:
            if self.checkpoint_blocks and torch.is_grad_enabled():
                h, e = checkpoint(block, h, edge_index, e, dst_ptr, use_reentrant=False)
            else:
                h, e = block(h, edge_index, e, dst_ptr)
        return h, e


class LevelTensors(NamedTuple):
    """One coarse level l of a batch (attributes `cluster_l`, ... of `attach_levels`), with
    batch-global indices: N_fine nodes of level l-1 (the mesh for l = 1), N_l clusters, E_l
    coarse edges.

    cluster:    [N_fine] int64, the cluster (node of level l) of each finer node.
    offset:     [N_fine, spatial_dim] float, the finer node's position relative to its cluster.
    edge_index: [2, E_l] int64, the level's edges, sorted by destination.
    edge_attr:  [E_l, spatial_dim + 1] float, the level's edge features.
    nodes:      [N_l, 0], only its shape is read: the level's node count, held as a shape so
                that it stays symbolic under `torch.export` and costs no host sync.
    """

    cluster: Tensor
    offset: Tensor
    edge_index: Tensor
    edge_attr: Tensor
    nodes: Tensor


def batch_levels(batch: Batch, num_levels: int) -> list[LevelTensors]:
    """The batch's coarse levels 1..num_levels, as `forward_tensors` takes them."""
    levels = []
    for level in range(1, num_levels + 1):
        nodes = batch.get(f"nodes_{level}")
        if nodes is None:  # a batch built without the placeholder: count on the host (a sync)
            nodes = batch.x.new_empty(int(batch[f"num_coarse_{level}"].sum()), 0)
        levels.append(LevelTensors(batch[f"cluster_{level}"], batch[f"offset_{level}"],
                                   batch[f"edge_index_{level}"], batch[f"edge_attr_{level}"], nodes))
    return levels


def pool_mean(h: Tensor, cluster: Tensor, num_clusters: int) -> Tensor:
    """Each cluster's latent: the mean of its members' (weights 1/|cluster|, summing to one)."""
    return scatter(h, cluster, dim=0, dim_size=num_clusters, reduce="mean")
