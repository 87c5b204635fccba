"""Train a mesh GNN surrogate: `meshgnn train [group=option] [key=value ...]`, also run as
`python -m meshgnn.train ...` or, in a checkout, `python train.py ...`.

Hydra composes the config from conf/ (meshgnn.conf_location: the checkout's, or the one an
installed wheel carries); everything else happens in meshgnn.experiment.run. Outputs go to
outputs/ and multirun/ under the current directory. The returned value is what
`-m hparams_search=optuna` optimises.

Before Hydra starts (and creates a run directory), meshgnn.distributed.launch composes the
same config and checks it (every value, every stage, the sweep, resume=/init_from=): a bad
launch ends in one `error:` line with exit 2 and writes nothing. `torchrun --nproc_per_node=N
train.py ...` trains with DistributedDataParallel: there the N processes also form a process
group and agree on one run directory.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from meshgnn.boundary import guarded
from meshgnn.conf_location import conf_dir
from meshgnn.config import register_configs
from meshgnn.distributed import finish, launch

register_configs()


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def main(cfg: DictConfig) -> float:
    # Imported here so `--help`, `--cfg` and config errors answer without loading torch.
    from meshgnn.experiment import main_task

    return main_task(cfg)


def entry() -> None:
    """The checks, then Hydra (whose task function has its own boundary, main_task)."""
    sys.argv = launch(sys.argv, conf_dir())
    try:
        main()
    finally:
        finish()


def run(args: list[str]) -> None:
    """`meshgnn train ARGS`: the same training as `python train.py ARGS`, inside the error boundary.

    Hydra reads sys.argv; its first item names the job (Hydra's and the launch checks' job name,
    "train"), so it is this module's file whatever command started the process.
    """
    sys.argv = [__file__, *args]
    guarded(entry)


if __name__ == "__main__":
    guarded(entry)
