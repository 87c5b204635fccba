"""Writing a model package folder (the layout is in `package.py`), optionally with a
torch.export program traced on a real mesh of the training data.

Kept apart from `package.py` because tracing needs a prepared input graph (`predict.py`)
and the exporter (`deploy.py`), both of which read packages: imports point one way,
export -> predict -> package.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

import meshgnn
from meshgnn.atomic import atomic_write_bytes, atomic_write_text, writing
from meshgnn.data.generate import sample_mesh_size
from meshgnn.data.hierarchy import MultiScaleData
from meshgnn.data.sources import get_source
from meshgnn.errors import UserError
from meshgnn.inference.deploy import export_program
from meshgnn.inference.outputs import Inputs, check_output_location
from meshgnn.inference.package import (CONFIG, FORMAT, FORMAT_VERSION, MANIFEST, NORMALIZATION, PROGRAM,
                                       REQUIRED, WEIGHT_DTYPES, WEIGHTS, Package, sha256)
from meshgnn.inference.mesh_input import mesh_files, read_mesh
from meshgnn.inference.predict import prepare_graph


def store_weights_as(package: Package, weight_dtype: str) -> None:
    """Round the model's floating-point weights to `weight_dtype` (kept in float32, as loading
    the package gives them back), so what is measured before writing is what is stored."""
    dtype = WEIGHT_DTYPES[weight_dtype]
    with torch.no_grad():
        for tensor in package.model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(dtype))
    package.weight_dtype = weight_dtype


def check_package_location(package: Package, out_dir: Path) -> None:
    """Refuse, in one line, a package folder that is a file, under one, not writable, at or
    around what the package was loaded from, or a non-empty folder."""
    check_output_location(out_dir, Inputs([package.path] if package.path is not None else []), "OUT_DIR")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise UserError(f"{out_dir} already exists and is not empty; pass a new folder for the package")


def write_package(package: Package, out_dir: Path, weight_dtype: str = "fp32",
                  program: bool = False, test: dict[str, Any] | None = None) -> Path:
    """Write `package` as a new folder; weights stored as `weight_dtype`; `test` (the
    package's own test metrics, or why there are none) goes into the manifest. A location
    `check_package_location` refuses is refused before anything is written; so is --program
    without an example mesh."""
    from safetensors.torch import save

    out_dir = Path(out_dir)
    check_package_location(package, out_dir)
    example = example_graph(package) if program else None
    with writing(out_dir):  # a full disk or lost permission: one StorageError line naming the folder
        out_dir.mkdir(parents=True, exist_ok=True)
        dtype = WEIGHT_DTYPES[weight_dtype]
        state = {k: v.detach().to(dtype if v.is_floating_point() else v.dtype).contiguous().clone()
                 for k, v in package.model.state_dict().items()}
        atomic_write_bytes(out_dir / WEIGHTS, save(state, metadata={"format": FORMAT}))
        package.weight_dtype = weight_dtype
        atomic_write_text(out_dir / CONFIG, json.dumps(package.config_json(), indent=1))
        atomic_write_text(out_dir / NORMALIZATION, json.dumps(package.normalizer.to_json(), indent=1))
        files = list(REQUIRED)
        if example is not None:
            export_program(package.model, example, out_dir / PROGRAM)
            files.append(PROGRAM)
        import torch_geometric

        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "versions": {"meshgnn": meshgnn.__version__, "torch": torch.__version__,
                                 "torch_geometric": torch_geometric.__version__,
                                 "python": platform.python_version()},
                    "origin": package.origin, "weights": {"dtype": weight_dtype, "pruning": package.pruning},
                    **({"test": test} if test is not None else {}),
                    "files": {name: sha256(out_dir / name) for name in files}}
        atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=1))  # last: a package from here on
    return out_dir


def example_graph(package: Package) -> MultiScaleData:
    """A real input graph of the package's data, to trace `torch.export` with: a generated
    sample of a built-in source, or the first file of the training mesh folder."""
    data = package.data
    if package.source is not None:
        source, seed = get_source(package.source), int(data["seed"])
        sample = source.generate(0, seed, sample_mesh_size(data["mesh_size"], seed, 0), int(data["max_holes"]),
                                 source.with_generator_defaults(data))  # a package from before the knobs too
        return prepare_graph(package, sample)
    folder = Path(data["path"])
    files = mesh_files([folder]) if folder.is_dir() else []
    if not files:
        raise UserError(f"{folder}: the training mesh folder is not here to take an example mesh from; "
                        "export without --program, or where the training data is")
    return prepare_graph(package, read_mesh(package, *files[0])[0])
