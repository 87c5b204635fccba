"""`meshgnn tensorboard`: one TensorBoard over single runs (outputs/) and sweeps (multirun/).

`tensorboard --logdir outputs` misses every sweep, and a --logdir above both folders also
walks the dataset cache and anything else there. This starts TensorBoard on the two run
folders by name (its --logdir_spec), so runs show as outputs/<date>/<time>... and sweep
trials as multirun/<date>/<time>.../<n>..., side by side in every tab, HParams included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from meshgnn.errors import UserError

RUN_FOLDERS = ("outputs", "multirun")  # Hydra's run and sweep roots (conf/hydra/default.yaml)


def tensorboard_argv(folders: list[Path], extra: list[str]) -> list[str]:
    """The TensorBoard command line for `folders` (each named by its own folder name)."""
    if len(folders) == 1:
        logdir = ["--logdir", str(folders[0])]
    else:
        if len({folder.name for folder in folders}) < len(folders) or any("," in str(f.resolve()) for f in folders):
            raise UserError(f"cannot name the folders {', '.join(map(str, folders))} apart for TensorBoard: "
                            "give folders whose names differ and contain no comma")
        logdir = ["--logdir_spec", ",".join(f"{folder.name}:{folder.resolve()}" for folder in folders)]
    return [sys.executable, "-m", "tensorboard.main", *logdir, *extra]


def run_folders(given: list[str]) -> list[Path]:
    """The folders given, or outputs/ and multirun/ of the current directory, those that exist."""
    folders = [Path(p) for p in given] or [Path(name) for name in RUN_FOLDERS if Path(name).is_dir()]
    missing = [str(p) for p in folders if not p.is_dir()]
    if missing:
        raise UserError(f"{missing[0]}: no such folder; name run folders such as outputs multirun")
    if not folders:
        raise UserError(f"no {' or '.join(f'{name}/' for name in RUN_FOLDERS)} here: run `meshgnn tensorboard` "
                        "in the directory train.py ran in, or name the folders: meshgnn tensorboard PATH...")
    return folders


def start_tensorboard(given: list[str], extra: list[str]) -> int:
    """Run TensorBoard in the foreground until Ctrl-C; its exit code."""
    argv = tensorboard_argv(run_folders(given), extra)
    print("running:", " ".join(argv[2:]), flush=True)
    try:
        return subprocess.call(argv)
    except KeyboardInterrupt:
        return 0
