"""Checks before any work (meshgnn.prelaunch): every bad value, sweep value, sweeper key and
resume=/init_from= path refused in one line naming the key, before Hydra creates anything.
In-process: the same function train.py calls, with the command line as Hydra parses it."""

from pathlib import Path

import pytest
from hydra._internal.utils import get_args_parser

from conftest import CONF
from meshgnn.config import register_configs
from meshgnn.errors import UserError
from meshgnn.prelaunch import check_launch, renamed_overrides

register_configs()


def check(*argv: str):
    return check_launch(get_args_parser().parse_args(list(argv)), CONF, "train")


ALL_TERMS_ZERO = [f"loss.{t}_weight=0" for t in ("l1", "relative_l1", "smoothness", "curvature")]


@pytest.mark.parametrize("argv,needle", [
    (["seed=-1"], "seed=-1 must be in [0, "),
    (["data.seed=-1"], "data.seed=-1"),
    (["data.num_samples=1"], "data.num_samples=1 is too few for the train/val/test splits (ratios 0.8/0.1/0.1 "
                             "need at least 3); set data.num_samples=3 or more"),
    (["trainer.log_every_steps=0"], "trainer.log_every_steps=0 must be >= 1"),
    (["optim.betas=[0.9]"], "optim.betas=[0.9] must have exactly 2 values"),
    (["optim.betas=[1.5,0.999]"], "optim.betas=[1.5, 0.999] item 0 (1.5) must be in [0, 1)"),
    (["optim.warmup_epochs=nan"], "optim.warmup_epochs=nan must be a finite number"),
    (["trainer.grad_clip=nan"], "trainer.grad_clip=nan must be a finite number"),
    (["trainer.max_time=inf"], "trainer.max_time=inf must be a finite number"),
    (ALL_TERMS_ZERO, "every loss term weight is 0"),
    (["loss.eps=-1"], "loss.eps=-1.0 must be > 0"),
    (["optim.min_lr=0.1"], "optim.min_lr=0.1 is above optim.lr=0.001"),
    (["trainer.threads=-1"], "trainer.threads=-1 must be >= 0"),
    (["trainer.cuda_graphs=true", "trainer.precision=fp16"],
     "trainer.cuda_graphs=true cannot run with trainer.precision=fp16"),
    (["trainer.bucket_growth=1"], "trainer.bucket_growth=1.0 must be > 1 (padding adds at most this factor of rows)"),
    (["data.split.train=0.5"], "data.split ratios"),
    (["experiment=two_stage", "stages.stage2.optim.lr=-1"], "stages.stage2: optim.lr=-1.0 must be > 0"),
    (["experiment=two_stage", "+stages.stage2.trainer.log_every_steps=0"], "stages.stage2: trainer.log_every_steps=0"),
    (["model.hidden_dim=["], "override 'model.hidden_dim=[' (key model.hidden_dim) cannot be parsed"),
    (["model.hiden_dim=3"], "model has no key 'hiden_dim'; did you mean model.hidden_dim? e.g. model.hidden_dim=3"),
    (["optim.lr=fast"], "optim.lr=fast"),
    (["model=median"], "model=median: no such option of model; choose one of edge_gnn, meshgraphnet"),
    (["model.hidden_dim=16,32"], "is a sweep; add -m"),
    (["hparams_search=optuna", "hydra.sweeper.pruner.name=bogus"],
     "hydra.sweeper.pruner.name='bogus' is not one of none, median, hyperband"),
    (["hparams_search=optuna", "hydra.sweeper.pruner.reduction_factor=1"], "hydra.sweeper.pruner.reduction_factor=1"),
    (["hparams_search=optuna", "hydra.sweeper.storage=bogus://x"],
     "hydra.sweeper.storage='bogus://x' is not a database URL SQLAlchemy can open"),
    (["hparams_search=optuna", "hydra.sweeper.n_jobs=0"], "hydra.sweeper.n_jobs=0 must be >= 1"),
    (["hparams_search=optuna", "hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0 must be >= 1"),
    (["hparams_search=optuna", "hydra.sweeper.max_failure_rate=2"], "hydra.sweeper.max_failure_rate=2.0"),
    (["hparams_search=optuna", "+hydra.sweeper.params.model.dropout=interval(0.1, 1.5)"],
     "sweep value model.dropout=1.5: model.dropout=1.5 must be in [0, 1)"),
    (["hparams_search=optuna", "model.hidden_dim=choice(16, 0)"], "sweep value model.hidden_dim=0"),
    (["-m", "model.hidden_dim=16,0"], "sweep value model.hidden_dim=0: model.hidden_dim=0 must be >= 1"),
    (["-m", "model=edge_gnn,meshgraphnet", "model.dropout=0.1,2"], "sweep value model.dropout=2"),
    (["-m", "model=edge_gnn,bogus"], "model=bogus: no such option"),
    (["resume=x", "init_from=y"], "set either resume="),
])
def test_bad_launches_are_refused_in_one_line_naming_the_key(argv, needle):
    with pytest.raises(UserError) as caught:
        check(*argv)
    message = str(caught.value)
    assert needle in message and "\n" not in message, message


@pytest.mark.parametrize("argv", [["trainer=debug"], ["experiment=two_stage"], ["hparams_search=optuna"],
                                  ["hparams_search=grid"], ["-m", "model=edge_gnn,meshgraphnet", "seed=1,2"],
                                  ["data=mesh_folder", "data.path=results", "data.targets=[t]"]])
def test_good_launches_pass(argv):
    check(*argv)


def test_resume_and_init_from_paths_are_checked_without_reading_them_twice(tmp_path):
    not_a_run = tmp_path / "notes"
    not_a_run.mkdir()
    text = tmp_path / "model.ckpt"
    text.write_text("not a checkpoint")
    for argv, needle in ((f"resume={not_a_run}", "not a meshgnn run directory (no checkpoints/last.ckpt)"),
                         (f"init_from={not_a_run}", "no checkpoints/best.ckpt or last.ckpt"),
                         (f"resume={text}", "not a meshgnn checkpoint"),
                         (f"init_from={tmp_path / 'missing'}", "no such run directory or checkpoint file")):
        with pytest.raises(UserError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            check(argv)
    staged = tmp_path / "staged"
    (staged / ".hydra" / "launches" / "01").mkdir(parents=True)
    (staged / ".hydra" / "launches" / "01" / "config.yaml").write_text("stages:\n  stage1: {}\n")
    check(f"resume={staged}")  # a staged run directory has no checkpoints/ of its own
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt", "notes", "staged"]
    assert not list(not_a_run.iterdir())


@pytest.mark.parametrize("argv,needle", [
    (["+model.hiden_dim=3"], "override '+model.hiden_dim=3': model has no key 'hiden_dim' (`+` cannot add keys"),
    (["++model.hiden_dim=3"], "did you mean model.hidden_dim? e.g. model.hidden_dim=3"),
    (["+data.num_sample=20"], "data has no key 'num_sample'"),
    (["+data.split.trian=0.8"], "did you mean data.split.train?"),
    (["+trainer.epoch=3"], "did you mean trainer.epochs?"),
    (["+optim.lrr=0.1"], "did you mean optim.lr?"),
    (["+loss.l1_weigth=2"], "did you mean loss.l1_weight?"),
    (["+paths.data_cache=x"], "paths has no key 'data_cache'"),
    (["+sed=1"], "the config has no top-level key 'sed'"),
    (["++task=x"], "the config has no top-level key 'task'"),
    (["data=mesh_folder", "data.path=r", "data.targets=[t]", "+data.num_samples=5"], "data has no key 'num_samples'"),
    (["experiment=two_stage", "+stages.stage1.loss.l1_wieght=1"], "stages.stage1.loss has no key 'l1_wieght'"),
    (["-m", "+model.hiden_dim=8,16"], "model has no key 'hiden_dim'"),
])
def test_plus_cannot_add_a_key_the_schema_lacks(argv, needle):
    """Hydra's hint for a typo is `+key=`, which would train with the typo stored."""
    with pytest.raises(UserError) as caught:
        check(*argv)
    message = str(caught.value)
    assert needle in message and "\n" not in message, message


@pytest.mark.parametrize("argv", [["++model.hidden_dim=8"], ["+loss.target_weights.temperature=2"],
                                  ["experiment=two_stage", "+stages.stage2.trainer.log_every_steps=1"],
                                  ["+hydra.job.env_set.OMP_NUM_THREADS=1"], ["debug=default", "data=mesh_folder",
                                                                             "data.path=r", "data.targets=[t]"]])
def test_plus_still_adds_to_open_mappings_hydra_keys_and_groups(argv):
    check(*argv)


def test_trainer_debug_on_the_command_line_is_the_debug_switch(capsys):
    assert renamed_overrides(["train.py", "trainer=debug", "seed=1"]) == ["train.py", "debug=default", "seed=1"]
    assert "note: trainer=debug is now debug=default" in capsys.readouterr().out
    assert renamed_overrides(["train.py", "trainer=debug", "--cfg", "job"], printing=True)[1] == "debug=default"
    assert capsys.readouterr().out == ""  # printed config stays YAML
    cfg = check("trainer=debug", "data=mesh_folder", "data.path=r", "data.targets=[t]", "experiment=two_stage")
    assert cfg.hydra.runtime.choices.debug == "default" and cfg.trainer.epochs == 2  # after experiment=
