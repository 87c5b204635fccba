"""Staged training (meshgnn.stages) under the debug switch: every stage of experiment=two_stage
trains only the debug epochs, in its own folder, the second from the first's weights."""

import json

import pytest

from conftest import ROOT, compose_config
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
