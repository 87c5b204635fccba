"""Data-parallel training under torchrun: the process group, who writes, and the collectives.

`python train.py` is one process: `Dist()` is rank 0 of 1 and every collective is the
identity. `torchrun --nproc_per_node=N train.py ...` starts N processes; `launch(argv)`,
called by train.py before Hydra parses the command line, joins them into one process group
(NCCL for GPU tensors and gloo for CPU ones, or gloo alone without CUDA) and makes them agree
on one run directory. Hydra creates the run directory before the task function runs, so the
agreement cannot wait for the config: rank 0 composes and checks it (meshgnn.prelaunch, the
same checks every launch gets), resolves `hydra.run.dir` (an
explicit `hydra.run.dir=`, `resume=<run dir>`, or outputs/<date>/<time>) and broadcasts the
result; every rank then runs Hydra with `hydra.run.dir=<that>`, and the other ranks with
Hydra's own outputs switched off (no .hydra/, no train.log), so they write nothing there.

Several nodes (one torchrun agent per node, docs/multinode.md) change three things: global
RANK decides who writes and LOCAL_RANK which GPU a process takes; the agreed directory is a
relative path unless the user gave an absolute one, so every process must have started in the
same directory (checked: rank 0 refuses a launch whose processes did not); and the resume hint
names the node count, since the same command must run on every node again.

Import-light at module level: train.py imports it before `--help` answers; torch is loaded
only when torchrun's environment is present.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

# What torchrun (or srun exporting the same names) sets for every process it starts.
TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# Command-line flags that only print something (help, config, version): every rank answers
# on its own and nothing is trained, so no process group is formed.
PRINT_ONLY = ("help", "hydra_help", "version", "cfg", "info", "shell_completion")
# Overrides the launch replaces: the agreed run directory on every rank, and Hydra's own
# outputs on ranks other than 0.
_RUN_DIR = re.compile(r"^[+~]{0,2}hydra\.run\.dir(=|$)")
_RANK_OUTPUTS = re.compile(r"^[+~]{0,2}(hydra\.output_subdir|hydra/job_logging)(=|$)")
QUIET_RANK_OVERRIDES = ("hydra.output_subdir=null", "hydra/job_logging=disabled",
                        "~hydra.job_logging.handlers", "~hydra.job_logging.formatters")
EXIT_USER_ERROR = 2
SWEEP_REFUSAL = ("error: sweeps (-m, or a config with hydra.mode=MULTIRUN such as hparams_search=) are "
                 "not supported under torchrun; run the sweep with `python train.py -m`, or launch each "
                 "configuration as its own torchrun")


def torchrun_world_size() -> int:
    """WORLD_SIZE when torchrun started this process, else 1."""
    if not all(name in os.environ for name in TORCHRUN_VARIABLES):
        return 1
    return int(os.environ["WORLD_SIZE"])


@dataclass(frozen=True)
class Dist:
    """This process's place among the data-parallel ranks, and the collectives the training
    loop needs. Every method works unchanged in a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def current(cls) -> "Dist":
        """The initialised process group's view, or a single process."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
        return cls()

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, logs and reports."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's `obj` (picklable), in rank order; `[obj]` in a single process."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over ranks of a few floats (float64, through the CPU backend)."""
        if not self.enabled:
            return [float(v) for v in values]
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(list(values), dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()


# ------------------------------------------------------------------ launch (before Hydra)
def launch(argv: list[str], config_dir: Path) -> list[str]:
    """The command line this process hands to Hydra, once the launch passed every check
    (meshgnn.prelaunch.check_launch: the config, each stage, the sweep, resume=/init_from=).

    Old spellings (prelaunch.RENAMED_OVERRIDES: trainer=debug) are replaced first, with a note.
    In a single process a refused launch raises UserError (train.py prints its one line) and
    `argv` is returned otherwise. Under torchrun rank 0 checks and decides the run
    directory, every rank gets `hydra.run.dir=<agreed dir>`, and a refusal (or a sweep) ends
    every rank here, with rank 0 saying why in one line.
    """
    from hydra._internal.utils import get_args_parser

    from meshgnn.errors import UserError
    from meshgnn.prelaunch import renamed_overrides

    args = get_args_parser().parse_args(argv[1:])
    printing = any(getattr(args, flag, None) for flag in PRINT_ONLY)
    argv = renamed_overrides(argv, printing)
    args = get_args_parser().parse_args(argv[1:])
    if printing and args.multirun and (args.cfg or args.info):  # else Hydra's ValueError, a traceback
        raise UserError("-m cannot go with --cfg/--info (they print one launch's config); drop -m: hparams_search=... "
                        "still makes it a sweep, e.g. python train.py hparams_search=optuna --cfg hydra")
    if printing:
        return argv
    job_name = Path(argv[0]).stem
    if torchrun_world_size() <= 1:
        from meshgnn.prelaunch import check_launch

        check_launch(args, config_dir, job_name)
        return argv
    rank = _init_process_group()
    import torch.distributed as dist

    # Relative paths (outputs/, paths.data_dir, resume=) mean one place only if every process,
    # on every node, started in the same directory.
    places = Dist.current().all_gather_object((socket.gethostname(), os.getcwd()))
    decision: list[Any] = [None]
    if rank == 0:
        apart = different_directories(places)
        decision = [("refused", apart) if apart else _decide_run_dir(args, config_dir, job_name)]
    dist.broadcast_object_list(decision)
    kind, value = decision[0]
    if kind != "run_dir":
        if rank == 0:
            print(value, file=sys.stderr, flush=True)
        dist.barrier()  # nobody exits (and gets rank 0 killed by torchrun) before it has spoken
        dist.destroy_process_group()
        sys.exit(EXIT_USER_ERROR)
    return rank_argv(argv, value, rank)


def _init_process_group() -> int:
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ["LOCAL_RANK"])
    cuda = torch.cuda.is_available()
    if cuda and local_rank < torch.cuda.device_count():
        torch.cuda.set_device(local_rank)
    # GPU tensors (DDP's gradient buckets) go through NCCL, CPU tensors (metrics, stop flags,
    # objects) through gloo; without CUDA everything is gloo.
    backend = "cpu:gloo,cuda:nccl" if cuda and dist.is_nccl_available() else "gloo"
    dist.init_process_group(backend=backend, init_method="env://")
    return dist.get_rank()


def different_directories(places: list[tuple[str, str]]) -> str | None:
    """The refusal line when the processes (host, working directory), in rank order, did not
    all start in rank 0's directory; None when they did."""
    host, cwd = places[0]
    for rank, (other_host, other_cwd) in enumerate(places):
        if other_cwd != cwd:
            return (f"error: the torchrun processes started in different directories (rank 0 in {cwd} on "
                    f"{host}, rank {rank} in {other_cwd} on {other_host}), so relative paths (outputs/, "
                    "paths.data_dir, resume=) would name different places; start torchrun on every node in "
                    "the same directory, on a filesystem they all share (srun starts its tasks in the "
                    "submission directory)")
    return None


def relaunch_command(script_args: str) -> str:
    """The torchrun command that starts this launch's processes again with `script_args`
    ("train.py resume=<dir>"; callers may append overrides): the same per-node count, and on
    several nodes the node count and a placeholder for the rendezvous options (the agents',
    which the processes do not see) that says the command runs on every node."""
    world = torchrun_world_size()
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if per_node == world:
        return f"torchrun --nproc_per_node={per_node} {script_args}"
    nodes = os.environ.get("GROUP_WORLD_SIZE", "<nodes>")
    return (f"torchrun --nnodes={nodes} --nproc_per_node={per_node} <the same --rdzv_* options, on every node> "
            f"{script_args}")


def _decide_run_dir(args: Any, config_dir: Path, job_name: str) -> tuple[str, str]:
    """Rank 0: ("run_dir", dir) from the checked config, or ("refused", the error line).

    `${hydra:runtime...}` is not available before Hydra, so a hydra.run.dir built from it is
    refused with Hydra's message."""
    import traceback

    from meshgnn.boundary import BUG_LINE, user_caused
    from meshgnn.errors import UserError
    from meshgnn.prelaunch import check_launch, is_multirun

    if args.multirun:
        return "refused", SWEEP_REFUSAL
    try:
        cfg = check_launch(args, config_dir, job_name)
        if is_multirun(args, cfg):
            return "refused", SWEEP_REFUSAL
        return "run_dir", str(cfg.hydra.run.dir)
    except UserError as exc:
        return "refused", f"error: {exc}"
    except Exception as exc:  # an interpolation Hydra cannot resolve yet, a library's error, a bug
        known = user_caused(exc)  # said by rank 0 for all: raising here would leave the others waiting
        return "refused", f"error: {known[0]}" if known else traceback.format_exc() + BUG_LINE


def rank_argv(argv: list[str], run_dir: str, rank: int) -> list[str]:
    """`argv` with the agreed run directory; ranks other than 0 also switch off Hydra's
    outputs (config snapshot, job log)."""
    kept = [a for a in argv[1:] if not _RUN_DIR.match(a)]
    extra = [f"hydra.run.dir={hydra_quote(run_dir)}"]
    if rank != 0:
        kept = [a for a in kept if not _RANK_OUTPUTS.match(a)]
        extra += QUIET_RANK_OVERRIDES
    return [argv[0], *kept, *extra]


def hydra_quote(value: str) -> str:
    """`value` as a Hydra override value that parses back to exactly `value`."""
    if re.fullmatch(r"[\w\-+./:@%]+", value):
        return value
    out = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
    out = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, out)
    return f"'{out}'"


def finish() -> None:
    """Leave the process group at the end of a launch (also one that exits 2 or 3)."""
    if torchrun_world_size() > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
