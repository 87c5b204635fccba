"""Which layout a run directory has, and which stage the tools read by default."""

import pytest

from meshgnn.run_layout import final_stage_dir, is_staged, stage_dirs, stage_names


def make_run(root, stages_yaml, stage_files=None):
    """A run directory with its first launch's config; stage_files: stage -> files it holds."""
    (root / ".hydra" / "launches" / "01").mkdir(parents=True)
    (root / ".hydra" / "launches" / "01" / "config.yaml").write_text(stages_yaml)
    for stage, files in (stage_files or {}).items():
        (root / stage).mkdir()
        for name in files:
            (root / stage / name).mkdir() if name == "checkpoints" else (root / stage / name).write_text("{}")
    return root


def test_a_plain_run_keeps_its_launch_snapshot_but_is_not_staged(tmp_path):
    run = make_run(tmp_path / "plain", "stages: {}\nseed: 1\n")
    (run / "metrics.jsonl").write_text("")
    assert not is_staged(run) and stage_names(run) == [] and stage_dirs(run) == []
    assert final_stage_dir(run) == run


def test_stages_come_in_training_order_not_by_name(tmp_path):
    run = make_run(tmp_path / "run", "stages:\n  warm: {}\n  fine: {}\n  extra: {}\n",
                   {"warm": ["results.json", "checkpoints"], "fine": []})
    assert is_staged(run) and stage_names(run) == ["warm", "fine", "extra"]
    assert stage_dirs(run) == [run / "warm", run / "fine"]  # extra has not started: no folder


@pytest.mark.parametrize("files, expected", [
    ({"stage1": ["results.json", "checkpoints"], "stage2": ["results.json", "checkpoints"]}, "stage2"),
    ({"stage1": ["results.json", "checkpoints"], "stage2": ["checkpoints"]}, "stage1"),  # last finished
    ({"stage1": ["checkpoints"], "stage2": []}, "stage1"),                              # last with a checkpoint
    ({"stage1": []}, "stage1"),                                                         # else the first
])
def test_the_final_stage_a_tool_reads(tmp_path, files, expected):
    run = make_run(tmp_path / "run", "stages:\n  stage1: {}\n  stage2: {}\n", files)
    assert final_stage_dir(run) == run / expected


@pytest.mark.parametrize("text", ["stages: [unclosed\n", "\x00\x01 not yaml: : :\n"])
def test_an_unreadable_snapshot_is_no_staged_layout(tmp_path, text):
    assert not is_staged(make_run(tmp_path / "run", text))
