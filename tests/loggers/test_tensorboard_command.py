"""`meshgnn tensorboard`: runs and sweeps in one TensorBoard, as TensorBoard parses it."""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.data_ingester import _parse_event_files_spec

from meshgnn.errors import UserError
from meshgnn.loggers.tensorboard_command import run_folders, tensorboard_argv


def test_outputs_and_multirun_are_both_served(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    (tmp_path / "multirun").mkdir()
    argv = tensorboard_argv(run_folders([]), ["--port", "6007"])
    spec = argv[argv.index("--logdir_spec") + 1]
    assert _parse_event_files_spec(spec) == {str(tmp_path / "outputs"): "outputs",
                                             str(tmp_path / "multirun"): "multirun"}
    assert argv[-2:] == ["--port", "6007"]


def test_one_folder_is_a_plain_logdir_and_none_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="no outputs/ or multirun/ here"):
        run_folders([])
    (tmp_path / "outputs").mkdir()
    assert tensorboard_argv(run_folders([]), [])[-2:] == ["--logdir", "outputs"]
    with pytest.raises(UserError, match="elsewhere: no such folder"):
        run_folders(["elsewhere"])
