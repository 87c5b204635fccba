"""Run names and sweep groups from run directories, as every backend shows them."""

from __future__ import annotations

from pathlib import Path

from meshgnn.loggers.base import RunInfo, run_name


def test_names_read_the_run_directory_leaf_first_and_trials_know_their_sweep(tmp_path):
    single = tmp_path / "outputs" / "2026-12-02" / "13-05-22_hidden_dim_64"
    trial = tmp_path / "multirun" / "2026-12-02" / "13-05-22_train" / "3_lr_0.001"
    assert run_name(single) == "13-05-22_hidden_dim_64 · 2026-12-02"
    assert run_name(trial) == "3_lr_0.001 · 13-05-22_train · 2026-12-02"
    assert run_name(trial / "stage2") == "stage2 · 3_lr_0.001 · 13-05-22_train · 2026-12-02"
    assert run_name(tmp_path / "elsewhere" / "my_run") == "my_run"
    assert run_name(tmp_path / "outputs") == "outputs"  # a folder named like a root is itself the run
    assert RunInfo(trial, run_name(trial)).sweep == RunInfo(trial / "stage2", "x").sweep == "2026-12-02/13-05-22_train"
    assert RunInfo(single, run_name(single)).sweep is None and RunInfo(Path("run"), "run").sweep is None
