"""The Hydra task of a training launch: one run (meshgnn.model_run) or a staged one
(meshgnn.stages), inside the error boundary that turns a user's mistake into one line.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from meshgnn.boundary import BUG_LINE, EXIT_BUG, user_caused
from meshgnn.config import validate
from meshgnn.distributed import Dist
from meshgnn.errors import Interrupted, UserError
from meshgnn.failed_start import NewRunDir
from meshgnn.model_run import train
from meshgnn.resume import start_point
from meshgnn.run_records import format_results_table  # noqa: F401  (meshgnn.cli imports it from here)
from meshgnn.run_records import snapshot_launch
from meshgnn.stages import resumed_staged_config, run_stages
from meshgnn.sweeps.slots import trial_slot

log = logging.getLogger("meshgnn")


def main_task(cfg: DictConfig) -> float:
    """Hydra task: run, inside the error boundary (meshgnn.boundary): a user mistake, also one
    a library reports (Optuna, SQLAlchemy, meshio, an OSError on a path), is one line on stderr
    (exit 2, or 4 for a failed write); a stop request exits 3; a bug keeps its traceback and
    says it is one. In a sweep the trial fails with that line and the sweep goes on.

    Under torchrun a user mistake is reported by every rank that meets it (ranks other than 0
    name themselves), a stop request by rank 0 alone. A single run refused before it wrote
    anything leaves no run directory (meshgnn.failed_start); a sweep keeps its failed trials'
    folders, whose train.log the sweep report points to."""
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    in_sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    dist = Dist.current()
    new_dir = NewRunDir.at_start(Path(cfg.paths.output_dir)) if dist.is_main and not in_sweep else None
    try:
        with trial_slot(Path(cfg.paths.output_dir)):  # a parallel trial: its own GPU and share of cores
            return run(cfg, overrides)
    except Interrupted as exc:
        if dist.is_main:
            print(str(exc), file=sys.stderr, flush=True)
        dist.barrier()  # every rank stopped together; none exits before rank 0 has said so
        if in_sweep:  # the sweeper stops the whole sweep on it (an exception, not KeyboardInterrupt,
            raise  # which would make joblib kill every worker, other trials mid-checkpoint too)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # Ctrl-C before training could turn it into a stop request (start-up)
        if not in_sweep:
            raise
        raise Interrupted("stopped by SIGINT while the trial started") from None  # as above
    except Exception as exc:
        if in_sweep and _is_pruned(exc):  # the pruner's decision, not an error: the trial is PRUNED
            raise
        known = user_caused(exc)
        if known is None:
            log.exception("a bug in meshgnn stopped this run")  # the traceback, in train.log too
            if in_sweep:  # the sweeper records the trial as failed and goes on
                raise
            print(BUG_LINE, file=sys.stderr, flush=True)
            sys.exit(EXIT_BUG)
        message, code = known
        if in_sweep:  # the sweeper records the trial as failed, with this line, and goes on
            raise exc if isinstance(exc, UserError) else UserError(message) from exc
        if dist.is_main:  # the other ranks have no log file
            log.error("%s", message)
        print(f"error{'' if dist.is_main else f' (rank {dist.rank})'}: {message}", file=sys.stderr, flush=True)
        if new_dir is not None:
            new_dir.remove_if_unused(keep=Path(HydraConfig.get().runtime.cwd) if HydraConfig.initialized()
                                     else Path.cwd())
        sys.exit(code)


def _is_pruned(exc: Exception) -> bool:
    import optuna  # only in a sweep, where the sweeper has loaded it already

    return isinstance(exc, optuna.TrialPruned)


def run(cfg: DictConfig, overrides: list[str] | tuple[str, ...] = ()) -> float:
    """One launch: fresh, resumed, branched or warm-started; staged when `stages` is set."""
    validate(cfg)
    run_dir = Path(cfg.paths.output_dir)
    dist = Dist.current()
    if dist.is_main:
        snapshot_launch(run_dir)
    dist.barrier()
    cfg = resumed_staged_config(cfg, list(overrides), run_dir)
    if cfg.stages:
        return run_stages(cfg, list(overrides), run_dir)
    cfg, start = start_point(cfg, list(overrides), run_dir)
    validate(cfg)
    return train(cfg, start, run_dir)

