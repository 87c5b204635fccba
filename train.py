"""Train a mesh GNN surrogate: `python train.py [group=option] [key=value ...]`.

Hydra composes the config from conf/; everything else happens in meshgnn.experiment.run.
The returned value is what `python train.py -m hparams_search=optuna` optimises.

`torchrun --nproc_per_node=N train.py ...` trains with DistributedDataParallel: before Hydra
starts (and creates the run directory), the N processes form a process group and agree on
one run directory (meshgnn.distributed.launch).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from meshgnn.config import register_configs
from meshgnn.distributed import finish, launch

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    # Imported here so `--help`, `--cfg` and config errors answer without loading torch.
    from meshgnn.experiment import main_task

    return main_task(cfg)


if __name__ == "__main__":
    sys.argv = launch(sys.argv, Path(__file__).resolve().parent / "conf")
    try:
        main()
    finally:
        finish()
