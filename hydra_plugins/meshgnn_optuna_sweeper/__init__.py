"""Hydra plugin entry for meshgnn's Optuna sweeper: `hydra/sweeper=meshgnn_optuna`.

Hydra only instantiates sweepers whose class is defined inside the hydra_plugins package and
imports every plugin at start-up, so this class is a thin shell that loads Optuna and the
implementation (meshgnn.sweeps.sweeper) only when a sweep actually starts.
"""

from typing import Any, List

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from meshgnn.boundary import report
from meshgnn.errors import UserError
from meshgnn.sweeps.config import register_sweeper


class MeshgnnOptunaSweeper(Sweeper):
    """hydra-optuna-sweeper with study totals, robust trials and pruning (see meshgnn.sweeps)."""

    def __init__(self, **config: Any) -> None:
        from meshgnn.sweeps.sweeper import PruningOptunaSweeper

        self.sweeper = PruningOptunaSweeper(**config)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> None:
        """The sweep; a UserError it raises (e.g. a search space that does not fit the named
        study) ends in its one line here, since Hydra would print a traceback around it."""
        try:
            return self.sweeper.sweep(arguments)
        except UserError as exc:
            raise SystemExit(report(exc)) from None


register_sweeper()
