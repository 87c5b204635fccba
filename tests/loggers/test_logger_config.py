"""The logger group at launch: its options compose, its keys are checked, a setting of a
backend that is not chosen is one line naming the fix (checked as train.py checks a launch)."""

from __future__ import annotations

import pytest
from hydra._internal.utils import get_args_parser

from conftest import CONF
from meshgnn.errors import UserError
from meshgnn.prelaunch import check_launch


def check(*argv: str):
    return check_launch(get_args_parser().parse_args(list(argv)), CONF, "train")


@pytest.mark.parametrize("argv, chosen", [
    ((), {"tensorboard"}),
    (("logger=csv",), {"csv"}),
    (("logger=[tensorboard,csv,mlflow]",), {"tensorboard", "csv", "mlflow"}),
    (("logger=many_loggers",), {"tensorboard", "csv", "mlflow", "wandb"}),
    (("logger=[]",), set()),
])
def test_logger_options_choose_their_backends(argv, chosen):
    cfg = check(*argv)
    assert {name for name, section in cfg.logger.items() if section is not None} == chosen


@pytest.mark.parametrize("argv, needle", [
    (("logger.wandb.mode=offline",), "logger.wandb.mode=offline sets logger.wandb, which is not chosen: choose "
                                     "it too, e.g. logger=wandb or 'logger=[tensorboard,wandb]'"),
    (("logger=csv", "logger.mlflow.tracking_uri=http://x:5000"), "logger=mlflow or 'logger=[tensorboard,mlflow]'"),
    (("logger=wandb", "logger.wandb.mode=offlin"), "logger.wandb.mode='offlin' is not one of online, offline"),
    (("logger=mlflow", "logger.mlflow.tracking_uri="), "logger.mlflow.tracking_uri"),
    (("logger=neptune",), "logger=neptune: no such option of logger"),
])
def test_logger_mistakes_are_one_line_naming_the_fix(argv, needle):
    with pytest.raises(UserError) as info:
        check(*argv)
    assert needle in str(info.value) and "\n" not in str(info.value)
