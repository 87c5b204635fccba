"""Every option of every config group composes and validates; bad values fail early and clearly."""

import pytest
from hydra.errors import ConfigCompositionException as HydraCompositionError

from omegaconf import OmegaConf

from conftest import CONF, compose_config
from meshgnn.config import validate
from meshgnn.errors import UserError

GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("hydra", "hparams_search", "experiment"))


def options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


# Options that cannot work without the user's own settings, and the settings that complete them.
REQUIRED = {("data", "mesh_folder"): ["data.path=results", "data.targets=[temperature]"]}


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_validates(group, option):
    cfg = compose_config([f"{group}={option}", *REQUIRED.get((group, option), [])])
    if group != "paths":
        validate(cfg)


def test_mesh_folder_without_its_required_keys_names_them():
    with pytest.raises(UserError, match="data.path"):
        validate(compose_config(["data=mesh_folder"]))
    with pytest.raises(UserError, match="data.targets"):
        validate(compose_config(["data=mesh_folder", "data.path=results"]))
    with pytest.raises(UserError, match="node_type_values"):
        validate(compose_config(["data=mesh_folder", "data.path=results", "data.targets=[t]",
                                 "data.node_type_field=kind"]))
    with pytest.raises(UserError, match="split_globs"):
        validate(compose_config(["data=mesh_folder", "data.path=results", "data.targets=[t]",
                                 "data.split_globs.train=train/*"]))


def test_data_options_have_only_their_own_keys():
    """A generator key on a folder (or a folder key on a generator) is a typo, caught at composition."""
    with pytest.raises(Exception, match="path"):
        compose_config(["data=heat2d", "data.path=results"])
    with pytest.raises(Exception, match="mesh_size"):
        compose_config(["data=mesh_folder", "data.mesh_size=0.1"])


def test_loss_stage_weights_match_the_documented_values():
    s1 = compose_config(["loss=stage1"]).loss
    s2 = compose_config(["loss=stage2"]).loss
    assert (s1.l1_weight, s1.relative_l1_weight, s1.smoothness_weight, s1.gradient_consistency_weight,
            s1.curvature_weight) == (2.0, 0.8, 0.08, 0.0, 0.05)
    assert (s2.l1_weight, s2.relative_l1_weight, s2.smoothness_weight, s2.gradient_consistency_weight,
            s2.curvature_weight) == (1.5, 0.6, 0.10, 0.25, 0.08)


@pytest.mark.parametrize("data", options("data"))
def test_debug_switch_shrinks_every_data_option(data):
    """debug=default comes last in the defaults list: it composes with every data option (a
    mesh folder has no num_samples/mesh_size) and shrinks every one that generates data."""
    full = compose_config([f"data={data}", *REQUIRED.get(("data", data), [])])
    cfg = compose_config([f"data={data}", *REQUIRED.get(("data", data), []), "debug=default"])
    validate(cfg)
    assert (cfg.trainer.epochs, cfg.model.hidden_dim, cfg.trainer.image_every) == (2, 16, 0)
    if "num_samples" in full.data:  # generated: a debug/data/default/<data>.yaml shrinks it
        def coarsest(size):  # a number, or the coarse end of a [min, max] range
            return max(size) if OmegaConf.is_list(size) else size

        assert cfg.data.num_samples <= 40 < full.data.num_samples
        assert coarsest(cfg.data.mesh_size) >= coarsest(full.data.mesh_size)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_debug_switch_shrinks_every_experiment_and_stage(experiment):
    """Applied after experiment=: its epochs, and each stage's, are the debug epochs."""
    from meshgnn.config import stage_config

    cfg = compose_config([f"experiment={experiment}", "debug=default"])
    validate(cfg)
    assert cfg.trainer.epochs == 2 and cfg.data.num_samples == 40
    ends = [stage_config(cfg, name).trainer.epochs for name in cfg.stages]
    assert ends == [2 * (i + 1) for i in range(len(ends))]  # each stage trains 2 epochs more
    longer = compose_config([f"experiment={experiment}", "debug=default", "max_epochs_per_stage=3"])
    assert [stage_config(longer, name).trainer.epochs for name in longer.stages] == [3 * (i + 1) for i in range(len(ends))]
    full = compose_config([f"experiment={experiment}"])
    assert [stage_config(full, n).trainer.epochs for n in full.stages] == [s.trainer.epochs for s in full.stages.values()]


def test_old_trainer_debug_composed_in_process_keeps_its_meaning():
    """trainer=debug on the command line becomes debug=default (test_prelaunch); composed
    in-process (old checkpoints' recorded choices, hydra.compose) it still shrinks heat2d."""
    cfg = compose_config(["trainer=debug"])
    assert cfg.trainer.epochs == 2 and cfg.data.num_samples < 100
    assert cfg.trainer.grad_clip == compose_config().trainer.grad_clip


def test_typo_and_wrong_type_fail_at_composition_naming_the_key():
    with pytest.raises(HydraCompositionError, match="hiden_dim"):
        compose_config(["model.hiden_dim=3"])
    with pytest.raises(HydraCompositionError, match="optim.lr"):
        compose_config(["optim.lr=fast"])


@pytest.mark.parametrize("override,key", [
    ("data.num_samples=0", "data.num_samples"),
    ("data.num_samples=-5", "data.num_samples"),
    ("data.split.train=0.5", "data.split"),
    ("model.aggregation=median", "model.aggregation"),
    ("optim.schedule=step", "optim.schedule"),
    ("model.dropout=1.5", "model.dropout"),
    ("+loss.target_weights.temperature=-1", "loss.target_weights.temperature"),
])
def test_semantic_errors_name_the_key(override, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        validate(compose_config([override]))


# ------------------------------------------------------------------ constraints as data
def _schemas():
    """Every schema class reachable from Config, with the data and sweeper schemas."""
    import dataclasses
    import typing

    from meshgnn import config
    from meshgnn.sweeps.config import MeshgnnSweeperConf, PrunerConf

    seen, todo = [], [config.Config, config.GeneratedDataConfig, config.Heat2dDataConfig, config.Elasticity2dDataConfig,
                      config.MeshFolderDataConfig, PrunerConf,
                      MeshgnnSweeperConf]
    while todo:
        schema = todo.pop()
        if schema in seen:
            continue
        seen.append(schema)
        for hint in typing.get_type_hints(schema).values():
            for t in (hint, *typing.get_args(hint)):
                if dataclasses.is_dataclass(t):
                    todo.append(t)
    return seen


def test_every_numeric_and_choice_key_has_a_constraint():
    """A new key without a constraint fails here (so it is caught in review): every field that
    is not a bool needs `key(<check>)` in its schema."""
    import dataclasses
    import typing

    from meshgnn.constraints import check_of

    missing = []
    for schema in _schemas():
        if not schema.__module__.startswith("meshgnn"):  # Optuna's sampler arguments: Optuna checks them
            continue
        hints = typing.get_type_hints(schema)
        for f in dataclasses.fields(schema):
            if hints[f.name] is bool:
                continue
            if check_of(f) is None:
                missing.append(f"{schema.__name__}.{f.name}")
    assert not missing, f"keys without a constraint: {missing}"


def test_check_group_names_the_bad_value_unknown_and_missing_keys():
    from meshgnn.config import check_group

    model = dict(compose_config().model)
    check_group("model", model, "pkg/config.json")
    with pytest.raises(UserError, match=r"^pkg/config.json: model.aggregation='median' is not one of sum, mean, max"):
        check_group("model", {**model, "aggregation": "median"}, "pkg/config.json")
    with pytest.raises(UserError, match=r"unknown key model\.depth"):
        check_group("model", {**model, "depth": 3}, "pkg/config.json")
    with pytest.raises(UserError, match=r"model\.residual is missing"):
        check_group("model", {k: v for k, v in model.items() if k != "residual"}, "pkg/config.json")
    with pytest.raises(UserError, match=r"model\.hidden_dim='x' must be an integer"):
        check_group("model", {**model, "hidden_dim": "x"}, "pkg/config.json")
    data = OmegaConf.to_container(compose_config().data)
    check_group("data", data, "pkg/config.json")
    with pytest.raises(UserError, match=r"data\.split\.val=1\.5"):
        check_group("data", {**data, "split": {"train": 0.8, "val": 1.5, "test": 0.1}}, "pkg/config.json")


# ------------------------------------------------------------------ recipes that work in zsh
def _unquoted_pattern_overrides(lines):
    """Overrides (key=value) with brackets, braces, parentheses or globs left unquoted: zsh
    expands or rejects them ("no matches found"), bash chokes on the parentheses."""
    import re
    import shlex

    bad = []
    for line in lines:
        for token in shlex.split(line.split(" #", 1)[0], posix=False):
            if token[0] not in "'\"" and "=" in token and "$(" not in token and re.search(r"[][*?{}()]", token):
                bad.append(token)
    return bad


def test_readme_recipes_and_help_examples_quote_list_and_glob_overrides():
    import re

    readme = (CONF.parent / "README.md").read_text()
    lines = [line for block in re.findall(r"```bash\n(.*?)```", readme, re.S)
             for line in block.replace("\\\n", " ").splitlines()]
    footer = OmegaConf.load(CONF / "hydra" / "default.yaml").help.footer
    examples = [re.split(r"\s{2,}", line.strip())[0] for line in footer.splitlines() if "train.py" in line]
    assert lines and examples and any("debug=default" in line for line in examples)
    assert not _unquoted_pattern_overrides(lines + examples)
    assert _unquoted_pattern_overrides(["python train.py data.targets=[t] 'tags=[a]'"]) == ["data.targets=[t]"]
