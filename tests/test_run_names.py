"""Readable run directory names (meshgnn.run_names through conf/hydra/default.yaml): date,
time, task_name and a short, filesystem-safe tag of the overrides; resume reuses the run's
own directory and torchrun's ranks agree on the same name."""

import re

from hydra._internal.utils import get_args_parser
from omegaconf import OmegaConf

from conftest import CONF
from meshgnn.distributed import _decide_run_dir
from meshgnn.prelaunch import check_launch
from meshgnn.run_names import MAX_TAG_CHARS, override_tag, run_name

STAMP = r"outputs/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d"
SAFE = re.compile(r"^[A-Za-z0-9._+-]+$")


def composed(*argv: str):
    return check_launch(get_args_parser().parse_args(list(argv)), CONF, "train")


def test_run_dir_is_time_task_name_and_the_overrides():
    cfg = composed("model.hidden_dim=64", "optim.lr=1e-3")
    assert re.fullmatch(rf"{STAMP}_train_hidden_dim-64_lr-1e-3", cfg.hydra.run.dir), cfg.hydra.run.dir
    assert re.fullmatch(rf"{STAMP}_train", composed().hydra.run.dir)
    named = composed("task_name=baseline", "tags=[coarse,heat]", "debug=default", "paths.data_dir=/scratch/cache")
    assert re.fullmatch(rf"{STAMP}_baseline_debug-default", named.hydra.run.dir)  # no paths, tags, name twice
    assert list(named.tags) == ["coarse", "heat"] and named.task_name == "baseline"  # stored for the loggers


def test_long_and_unsafe_overrides_make_a_short_safe_name():
    overrides = ["data=mesh_folder", "data.path=/home/me/sim results/", "data.inputs=[load,heat_source]",
                 "data.targets=[temperature,heat_flux,von_mises,displacement]", "data.pattern='**/*.vtu'",
                 "optim.lr=tag(log, interval(1e-4, 1e-1))", "model.hidden_dim=128", "+loss.target_weights.t=2"]
    tag = override_tag(overrides)
    assert len(tag) <= MAX_TAG_CHARS and SAFE.match(tag), tag
    assert tag == "data-mesh_folder_path-simresults_+6more", tag
    assert override_tag(overrides[2:4]) == "inputs-load+heat_source_+1more"  # a long list cut to 40, then left out
    assert SAFE.match(run_name("my task/../x", overrides)) and "/" not in run_name("a/b", [])
    assert override_tag(["resume=auto", "init_from=/runs/x", "hydra.run.dir=y", "paths.root_dir=z"]) == ""


def test_resume_reuses_the_run_dir_and_ranks_agree_on_the_name(tmp_path):
    """resume=<that dir>, as meshgnn prints it and a shell completes it (unquoted), is one path."""
    staged = tmp_path / run_name("train", ["model.hidden_dim=64", "optim.lr=1e-3", "data.inputs=[a,b]"])  # a staged run's directory is a resumable run without checkpoints/
    (staged / ".hydra" / "launches" / "01").mkdir(parents=True)
    (staged / ".hydra" / "launches" / "01" / "config.yaml").write_text("stages:\n  stage1: {}\n")
    assert composed(f"resume={staged}", "trainer.epochs=9").hydra.run.dir == str(staged)
    kind, run_dir = _decide_run_dir(get_args_parser().parse_args(["model.hidden_dim=8"]), CONF, "train")
    assert kind == "run_dir" and re.fullmatch(rf"{STAMP}_train_hidden_dim-8", run_dir)


def test_sweep_dir_is_time_and_task_name_with_numbered_trials():
    cfg = composed("-m", "model.hidden_dim=8,16", "task_name=width")
    assert re.fullmatch(r"multirun/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d_width", cfg.hydra.sweep.dir), cfg.hydra.sweep.dir
    assert OmegaConf.to_container(cfg.hydra.sweep)["subdir"] == "${hydra.job.num}"
