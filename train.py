"""`python train.py [group=option] [key=value ...]` in a checkout: the same as `meshgnn train ...`
(meshgnn/train.py has the Hydra entry point and its documentation; `torchrun ... train.py` works too)."""

from meshgnn.boundary import guarded
from meshgnn.train import entry

if __name__ == "__main__":
    guarded(entry)
