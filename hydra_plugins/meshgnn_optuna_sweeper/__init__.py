"""Hydra plugin entry for meshgnn's Optuna sweeper: `hydra/sweeper=meshgnn_optuna`.

Hydra only instantiates sweepers whose class is defined inside the hydra_plugins package, so
the class is declared here; its behaviour lives in meshgnn.sweeps.sweeper.
"""

from meshgnn.sweeps.sweeper import PruningOptunaSweeper, register_sweeper


class MeshgnnOptunaSweeper(PruningOptunaSweeper):
    """hydra-optuna-sweeper with study totals, robust trials and pruning (see meshgnn.sweeps)."""


register_sweeper()
