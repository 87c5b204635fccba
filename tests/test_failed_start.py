"""A launch refused after Hydra made its run directory removes that directory, and only that:
never a resumed run's, a user's folder, or a run that wrote anything (real folders)."""

from pathlib import Path

from meshgnn.failed_start import NewRunDir


def hydra_start(run_dir: Path) -> Path:
    """What Hydra writes before the task starts: its snapshot and the job log."""
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (run_dir / ".hydra" / name).write_text("x: 1\n")
    (run_dir / "train.log").write_text("[meshgnn][ERROR] - no mesh files\n")
    return run_dir


def launch_snapshot(run_dir: Path) -> Path:
    """What the task writes first (meshgnn.run_records.snapshot_launch): the launch's copy."""
    (run_dir / ".hydra" / "launches" / "01").mkdir(parents=True)
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (run_dir / ".hydra" / "launches" / "01" / name).write_text("x: 1\n")
    return run_dir


def test_a_new_run_dir_and_its_empty_parents_go_the_launch_dir_stays(tmp_path):
    (tmp_path / "outputs" / "2026-12-01" / "09-00-00_train").mkdir(parents=True)  # an earlier day's run stays
    run_dir = tmp_path / "outputs" / "2026-12-02" / "13-05-22_train"
    seen = NewRunDir.at_start(hydra_start(run_dir))
    launch_snapshot(run_dir)
    (run_dir / "stage1").mkdir()  # a staged run's first stage folder, still empty
    assert seen.started_here and seen.remove_if_unused(keep=tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "outputs", "outputs/2026-12-01", "outputs/2026-12-01/09-00-00_train"]
    alone = hydra_start(tmp_path / "elsewhere" / "run")
    assert NewRunDir.at_start(alone).remove_if_unused(keep=tmp_path / "cwd")  # keep is not above it
    assert (tmp_path / "elsewhere").is_dir() and not alone.exists()


def test_resumed_runs_user_folders_and_runs_that_wrote_something_are_kept(tmp_path):
    resumed = launch_snapshot(hydra_start(tmp_path / "resumed"))  # an earlier launch's copy
    assert not NewRunDir.at_start(resumed).started_here
    assert not NewRunDir.at_start(resumed).remove_if_unused(keep=tmp_path) and (resumed / "train.log").is_file()

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert not NewRunDir.at_start(mine).remove_if_unused(keep=tmp_path) and (mine / "notes.txt").is_file()

    started = tmp_path / "started"
    seen = NewRunDir.at_start(hydra_start(started))
    launch_snapshot(started)
    (started / "run.json").write_text("{}")  # the launch got as far as its records
    assert seen.started_here and not seen.remove_if_unused(keep=tmp_path) and (started / "run.json").is_file()
