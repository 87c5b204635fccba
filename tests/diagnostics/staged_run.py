"""A real staged run for the tools that read run directories: one tiny `experiment=two_stage`
run (2 + 2 epochs, through train.py) per test session, whichever test module asks first."""

from pathlib import Path

from conftest import run_train

STAGE_EPOCHS = {"stage1": 2, "stage2": 4}  # trainer.epochs is the total: stage 2 trains epochs 3-4
_RUNS: dict[Path, Path] = {}  # by the session's dataset cache: one run per session


def two_stage_run_dir(tmp_path_factory, data_cache: Path) -> Path:
    """A finished two_stage run directory (<run>/stage1, <run>/stage2), under an outputs/ folder
    as Hydra lays runs out. Read it, never write into it: copy it first (shutil.copytree)."""
    if data_cache not in _RUNS:
        _RUNS[data_cache] = _train_two_stage(tmp_path_factory, data_cache)
    return _RUNS[data_cache]


def _train_two_stage(tmp_path_factory, data_cache: Path) -> Path:
    cwd = tmp_path_factory.mktemp("two_stage")
    run_dir = cwd / "outputs" / "2026-12-02" / "10-00-00"
    proc = run_train(["trainer=debug", "data.num_samples=20", "experiment=two_stage",
                      *(f"stages.{name}.trainer.epochs={n}" for name, n in STAGE_EPOCHS.items()),
                      f"hydra.run.dir={run_dir}", f"paths.data_dir={data_cache}"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir
