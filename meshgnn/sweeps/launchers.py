"""Sweep trials as submitit jobs (hydra-submitit-launcher): `hydra/launcher=slurm` (our
preset of submitit_slurm, conf/hydra/launcher/slurm.yaml) and `hydra/launcher=submitit_local`.

Each trial is one submitit job: a fresh process (on SLURM, its own allocation) that unpickles
the launcher and runs the trial in `<sweep dir>/<trial number>`. When the job is preempted or
reaches its time limit, submitit (on SIGUSR2) pickles the same call again and requeues it; SLURM
also requeues jobs on its own (node failure, `scontrol requeue`). Either way the trial starts
again with the same overrides, in the same directory, so every (unstaged) trial gets
`resume=auto`: a re-run continues from the trial's own last.ckpt (meshgnn.resume.start_point),
where without it it would train from scratch over its own checkpoints. A first run has no
checkpoint and starts fresh. The sweeper waits for the job's one final result, so the Optuna
trial is told once.

Import-light (the launch checks import it): no submitit, no torch.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from meshgnn.constraints import Range, at_least, check_values, key
from meshgnn.errors import UserError

_PLUGIN = "hydra_plugins.hydra_submitit_launcher.submitit_launcher"
SUBMITIT_LOCAL = f"{_PLUGIN}.LocalLauncher"
SUBMITIT_SLURM = f"{_PLUGIN}.SlurmLauncher"
SUBMITIT_LAUNCHERS = (SUBMITIT_LOCAL, SUBMITIT_SLURM)
REQUEUE_RESUME = "resume=auto"


def requeue_overrides(config: Any) -> list[str]:
    """What the sweeper adds to every trial's overrides (`config`: the sweep's, with its hydra
    node): `resume=auto` when a submitit launcher runs the trials, so a requeued job resumes its
    trial. Not for other launchers, which never re-run a trial (a dead worker's is FAIL "stale");
    not for a staged run (`stages`), which re-run in its directory resumes its stages by itself
    (meshgnn.stages.run_stages) and would refuse resume= with the trial's loss/optim values;
    not when the command line sets resume= itself."""
    command = list(config.hydra.overrides.task)
    if (config.hydra.launcher.get("_target_") not in SUBMITIT_LAUNCHERS or config.get("stages")
            or any(o.lstrip("+~").startswith("resume=") for o in command)):
        return []
    return [REQUEUE_RESUME]


def trials_in_flight(launcher_target: Optional[str], sweeper_jobs: int, slots: int) -> int:
    """How many trials the sweeper keeps running at once: under `hydra/launcher=slurm` n_jobs
    (each trial is its own allocation; none shares this machine's slots), else one per slot."""
    return max(1, sweeper_jobs) if launcher_target == SUBMITIT_SLURM else slots


@dataclass
class SubmititChecks:
    """The values of hydra-submitit-launcher's keys that its schema (types only) lets through
    and a sweep cannot use; the other keys are SLURM's to judge."""

    timeout_min: int = key(at_least(1, "minutes per job"))
    # One process per trial: a second task would train the same trial again in the same directory.
    tasks_per_node: int = key(Range(1, 1, meaning="one process per trial; more GPUs: gpus_per_node"))
    nodes: int = key(Range(1, 1, meaning="one node per trial; multi-node training: docs/multinode.md"))
    gpus_per_node: Optional[int] = key(at_least(0), default=None)
    cpus_per_task: Optional[int] = key(at_least(1), default=None)
    mem_gb: Optional[int] = key(at_least(1, "GB"), default=None)


@dataclass
class SlurmChecks(SubmititChecks):
    """submitit_slurm's keys with a bound."""

    signal_delay_s: int = key(at_least(0, "seconds before the time limit"))
    max_num_timeout: int = key(at_least(0, "requeues after the time limit"))
    array_parallelism: int = key(at_least(1, "jobs at once"))


def check_launcher(launcher: Mapping[str, Any]) -> None:
    """Refuse, in one line and before any trial, a submitit launcher a sweep cannot use: a bad
    value, or `hydra/launcher=slurm` on a machine without SLURM (submitit would raise a traceback
    after the study and the sweep directory were made)."""
    target = launcher.get("_target_")
    if target not in SUBMITIT_LAUNCHERS:
        return
    check_values(SlurmChecks if target == SUBMITIT_SLURM else SubmititChecks, launcher, "hydra.launcher",
                 strict=False)
    if target == SUBMITIT_SLURM and shutil.which("srun") is None:
        raise UserError("hydra/launcher=slurm submits trials to SLURM, but this machine has no SLURM (no srun "
                        "on PATH); run the sweep on the cluster's login node, or try it here with "
                        "hydra/launcher=submitit_local")
