"""Train a mesh GNN surrogate: `python train.py [group=option] [key=value ...]`.

Hydra composes the config from conf/; everything else happens in meshgnn.experiment.run.
The returned value is what `python train.py -m hparams_search=optuna` optimises.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from meshgnn.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    # Imported here so `--help`, `--cfg` and config errors answer without loading torch.
    from meshgnn.experiment import main_task

    return main_task(cfg)


if __name__ == "__main__":
    main()
