"""Models that map a mesh graph to predicted node fields."""

from meshgnn.models.build import build_model
from meshgnn.models.edge_gnn import EdgeGNN

__all__ = ["EdgeGNN", "build_model"]
