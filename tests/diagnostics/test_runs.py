"""`meshgnn diagnose` on a real staged run: every stage diagnosed, in order, labelled."""

import json
import shutil

import pytest

from meshgnn.cli import main as meshgnn
from meshgnn.diagnostics.diagnose import SYMPTOMS
from meshgnn.diagnostics.runs import diagnose_path

from staged_run import two_stage_run_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_stage_run(tmp_path_factory, data_cache):
    return two_stage_run_dir(tmp_path_factory, data_cache)


def test_a_staged_run_is_diagnosed_stage_by_stage(two_stage_run, capsys):
    meshgnn(["diagnose", str(two_stage_run)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"diagnosis of staged run {two_stage_run} (stage1, stage2): stage1: ")
    assert "; stage2: " in lines[0]
    stage_of = [line.split("]")[0].lstrip("[") for line in lines[1:-1]]
    assert stage_of == ["stage1"] * (len(SYMPTOMS) + 1) + ["stage2"] * (len(SYMPTOMS) + 1)  # header + findings
    assert lines[1] == f"[stage1] diagnosis of {two_stage_run / 'stage1'} (2 epochs): " + lines[1].split(": ", 1)[1]
    assert lines[-1] == f"written to {two_stage_run / 'diagnosis.json'}"

    doc = json.loads((two_stage_run / "diagnosis.json").read_text())
    assert doc["staged"] is True and [s["stage"] for s in doc["stages"]] == ["stage1", "stage2"]
    assert [s["epochs"] for s in doc["stages"]] == [2, 2]
    assert all([f["symptom"] for f in s["findings"]] == list(SYMPTOMS) for s in doc["stages"])
    for stage in doc["stages"]:  # each stage's own diagnosis.json says the same
        assert json.loads((two_stage_run / stage["stage"] / "diagnosis.json").read_text())["findings"] == stage["findings"]


def test_advice_for_a_stage_names_the_stage_keys(two_stage_run, tmp_path):
    """A stage's optim/trainer/loss entries win over the top-level ones: advice must set those.
    Stage 2's real records with its training loss made flat: not_decreasing, advice on optim.lr."""
    run = tmp_path / "run"
    shutil.copytree(two_stage_run, run)
    metrics = run / "stage2" / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    metrics.write_text("".join(json.dumps({**r, "train/loss/total": 1.5}) + "\n" for r in records))
    lines = diagnose_path(run)
    problem = next(line for line in lines if line.startswith("[stage2] PROBLEM not_decreasing"))
    assert " -> try: stages.stage2.optim.lr=" in problem
    overrides = [a for line in lines if " -> try: " in line for a in line.split(" -> try: ")[1].split("; ")
                 if " " not in a]
    assert not [a for a in overrides if a.lstrip("+").split(".")[0] in ("optim", "trainer", "loss")], overrides
