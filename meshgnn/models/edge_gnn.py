"""EdgeGNN: encode-process-decode message passing on the mesh graph (MeshGraphNets family).

Edges carry latents of their own (not just messages) because on a mesh the edge geometry is
what lets the network form differences and gradients of fields.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.nn import MessagePassing


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
    """

    def __init__(self, hidden_dim: int, mlp_layers: int, dropout: float, aggregation: str) -> None:
        super().__init__(aggr=aggregation)
        self.edge_mlp = mlp(3 * hidden_dim, hidden_dim, hidden_dim, mlp_layers, dropout)
        self.node_mlp = mlp(2 * hidden_dim, hidden_dim, hidden_dim, mlp_layers, dropout)
        self.hidden_dim = hidden_dim

    def forward(self, h: Tensor, edge_index: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
        first = self.edge_mlp[0]
        w_edge, w_src, w_dst = first.weight.split(self.hidden_dim, dim=1)
        e = e + self.edge_updater(edge_index, e=e @ w_edge.t() + first.bias,
                                  src=h @ w_src.t(), dst=h @ w_dst.t())
        aggregated = self.propagate(edge_index, e=e, size=(h.size(0), h.size(0)))
        return h + self.node_mlp(torch.cat([h, aggregated], dim=-1)), e

    def edge_update(self, e: Tensor, src_j: Tensor, dst_i: Tensor) -> Tensor:
        # PyG convention: _j indexes the source node, _i the destination.
        return self.edge_mlp[1:](e + src_j + dst_i)

    def message(self, e: Tensor) -> Tensor:
        return e


class EdgeGNN(nn.Module):
    """Maps a batch to `{target name: [num_nodes, dim]}` in normalised units."""

    def __init__(self, node_dim: int, edge_dim: int, targets: Sequence[tuple[str, int]],
                 hidden_dim: int, num_layers: int, mlp_layers: int, dropout: float,
                 aggregation: str) -> None:
        super().__init__()
        self.targets = [(name, int(dim)) for name, dim in targets]
        self.node_encoder = mlp(node_dim, hidden_dim, hidden_dim, mlp_layers)
        self.edge_encoder = mlp(edge_dim, hidden_dim, hidden_dim, mlp_layers)
        self.processor = nn.ModuleList(
            ProcessorBlock(hidden_dim, mlp_layers, dropout, aggregation) for _ in range(num_layers))
        self.decoders = nn.ModuleDict(
            {name: mlp(hidden_dim, hidden_dim, dim, mlp_layers, layer_norm=False)
             for name, dim in self.targets})

    def forward(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        h = self.node_encoder(batch.x)
        e = self.edge_encoder(batch.edge_attr)
        for block in self.processor:
            h, e = block(h, batch.edge_index, e)
        pred = {name: decoder(h) for name, decoder in self.decoders.items()}
        return pred, {"node_latent": h}
