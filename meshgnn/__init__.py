"""meshgnn: graph neural network surrogates for fields on simulation meshes.

`meshgnn.load(path)` returns a model that predicts fields on meshes (`meshgnn.inference.api`);
torch and the rest load on that first call, so `import meshgnn` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from meshgnn.inference.api import Model

__version__ = "0.1.0"


def load(path: "str | Path", device: str = "auto", prune: float = 0.0) -> "Model":
    """A package folder, run directory or .ckpt file as a `Model`: `model.predict(mesh)`."""
    from meshgnn.inference.api import load as load_model

    return load_model(path, device, prune)
