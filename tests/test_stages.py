"""Staged training (meshgnn.stages) under the debug switch: every stage of experiment=two_stage
trains only the debug epochs, in its own folder, the second from the first's weights."""

import json

import pytest
from omegaconf import OmegaConf

from conftest import ROOT, compose_config
from meshgnn.errors import UserError
from meshgnn.experiment import run

pytestmark = pytest.mark.slow


def test_debug_switch_trains_each_stage_only_the_debug_epochs(tmp_path, data_cache):
    run_dir = tmp_path / "run"
    overrides = ["experiment=two_stage", "debug=default", "data.num_samples=12", "model.hidden_dim=8",
                 f"paths.root_dir={ROOT}", f"paths.data_dir={data_cache}", f"paths.output_dir={run_dir}"]
    run(compose_config(overrides), overrides)
    epochs = {stage: [json.loads(line)["epoch"] for line in (run_dir / stage / "metrics.jsonl").read_text().splitlines()]
              for stage in ("stage1", "stage2")}
    assert epochs == {"stage1": [1, 2], "stage2": [3, 4]}  # not 200 + 400
    run_json = json.loads((run_dir / "stage2" / "run.json").read_text())
    assert run_json["config"]["trainer"]["epochs"] == 4 and run_json["init_from"].endswith("best.ckpt")

    # Resuming it with a new rate on the command line would silently keep each stage's own:
    # refused, pointing at set-lr (which resume=<run dir> then takes). In process there is no
    # Hydra to write the launch snapshot a staged run is known by: written as Hydra would.
    snapshot = run_dir / ".hydra" / "launches" / "01" / "config.yaml"
    snapshot.parent.mkdir(parents=True)
    snapshot.write_text(OmegaConf.to_yaml(compose_config(overrides)))
    resume = [f"resume={run_dir}", "optim.lr=3e-4", f"paths.root_dir={ROOT}", f"paths.data_dir={data_cache}",
              f"paths.output_dir={run_dir}"]
    with pytest.raises(UserError, match=r"optim.lr would not reach the stage it resumes.*meshgnn ckpt set-lr"):
        run(compose_config(resume), resume)
