"""Where the Hydra config folder (conf/) is, for training and for every tool that reads it.

The repository keeps conf/ at its top level, next to the meshgnn package; a wheel carries the
same files as package data inside the package, as meshgnn/conf/ (see setup.py). One function
answers for both, so `python train.py`, `meshgnn train`, `python -m meshgnn.train` and the
`--conf` defaults of `meshgnn` read the same folder in a checkout (editable install included)
and in an installed wheel.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def conf_dir() -> Path:
    """The packaged meshgnn/conf of an installed wheel, else the checkout's top-level conf/.

    The packaged folder is looked at first: in site-packages the folder next to the package is
    site-packages/conf, which another distribution could own.
    """
    packaged = PACKAGE_DIR / "conf"
    return packaged if (packaged / "config.yaml").is_file() else PACKAGE_DIR.parent / "conf"
