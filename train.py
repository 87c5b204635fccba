"""Train a mesh GNN surrogate: `python train.py [group=option] [key=value ...]`.

Hydra composes the config from conf/; everything else happens in meshgnn.experiment.run.
The returned value is what `python train.py -m hparams_search=optuna` optimises.

Before Hydra starts (and creates a run directory), meshgnn.distributed.launch composes the
same config and checks it (every value, every stage, the sweep, resume=/init_from=): a bad
launch ends in one `error:` line with exit 2 and writes nothing. `torchrun --nproc_per_node=N
train.py ...` trains with DistributedDataParallel: there the N processes also form a process
group and agree on one run directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from meshgnn.boundary import guarded
from meshgnn.config import register_configs
from meshgnn.distributed import finish, launch

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    # Imported here so `--help`, `--cfg` and config errors answer without loading torch.
    from meshgnn.experiment import main_task

    return main_task(cfg)


def entry() -> None:
    """The checks, then Hydra (whose task function has its own boundary, main_task)."""
    sys.argv = launch(sys.argv, Path(__file__).resolve().parent / "conf")
    try:
        main()
    finally:
        finish()


if __name__ == "__main__":
    guarded(entry)
