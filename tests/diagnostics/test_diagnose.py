import json
import math

import pytest
import yaml

from meshgnn.diagnostics.diagnose import SYMPTOMS, TARGET_IMBALANCE_MAX_RATIO, diagnose_history
from meshgnn.diagnostics.verdict import Diagnosis
from meshgnn.diagnostics.runs import diagnose_path, diagnose_run, diagnose_sweep, write_diagnosis
from meshgnn.errors import UserError

EPOCHS = 12
CONFIG = {
    "optim": {"lr": 1e-3, "weight_decay": 1e-5},
    "trainer": {"epochs": EPOCHS, "grad_clip": 1.0},
    "loss": {"name": "stage1", "target_weights": {}, "gradient_consistency_weight": 0.0,
             "smoothness_weight": 0.08},
    "model": {"hidden_dim": 64, "dropout": 0.0},
    "data": {"fourier_features": 16},
}


def curve(n=EPOCHS, start=1.0, floor=0.2, rate=0.8):
    """A loss decaying smoothly to a plateau: flat (< 1 %/epoch) over the last third."""
    return [floor + (start - floor) * math.exp(-rate * e) for e in range(n)]


def history(train=None, val=None, targets=None, consistency=None, oscillation=0.12, n=EPOCHS):
    """metrics.jsonl records: the healthy run unless a series is given. `targets` maps
    target -> its val l1 at every epoch (a float) or per epoch (a list)."""
    train = curve(n) if train is None else train
    val = [1.05 * v for v in train] if val is None else val
    targets = {"temperature": 0.2, "heat_flux": 0.45} if targets is None else targets
    consistency = curve(n, start=1.0, floor=0.5) if consistency is None else consistency
    records = []
    for i in range(n):
        record = {"epoch": i + 1, "train/loss/total": train[i], "val/loss/total": val[i],
                  "val/loss/l1": 0.1, "lr": 1e-3, "epoch_time_s": 1.0}
        for t, l1 in targets.items():
            value = l1[i] if isinstance(l1, list) else l1
            record.update({f"val/{t}/l1": value, f"train/{t}/l1": value, f"val/{t}/rel_l2": 0.1})
        if consistency is not False:
            record["consistency/grad"] = consistency[i]
        if oscillation is not None:
            record["train/loss/oscillation"] = oscillation
        # as MetricsLog writes them: non-finite values as "nan"/"inf"
        records.append({k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()})
    return records


def by_symptom(findings):
    assert [f.symptom for f in findings] == list(SYMPTOMS)
    return {f.symptom: f for f in findings}


def write_run(run_dir, records, config=CONFIG):
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if config is not None:
        (run_dir / ".hydra").mkdir()
        (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir


def test_healthy_history_has_no_problem():
    findings = by_symptom(diagnose_history(history(), CONFIG))
    assert {s: f.status for s, f in findings.items()} == {s: "ok" for s in SYMPTOMS}
    assert findings["target_imbalance"].measured["ratio"] == pytest.approx(0.45 / 0.2)
    assert all(f.advice == [] for f in findings.values())


def test_not_decreasing():
    flat = [1.0, 0.99, 1.0, 0.98, 0.99, 1.0, 0.99, 0.98, 0.99, 1.0, 0.99, 0.98]
    f = by_symptom(diagnose_history(history(train=flat, val=flat), CONFIG))["not_decreasing"]
    assert f.status == "problem"
    assert f.measured["relative_change"] == pytest.approx(-0.02)
    assert f.advice == ["optim.lr=3e-3"]                                     # 3x the current 1e-3
    low = {**CONFIG, "optim": {"lr": 1e-5}}
    assert by_symptom(diagnose_history(history(train=flat), low))["not_decreasing"].advice == ["optim.lr=1e-3"]
    # dropped more than 5 % overall but climbing back: the trend says not decreasing
    rising = [1.0, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.88, 0.9, 0.92]
    assert by_symptom(diagnose_history(history(train=rising), CONFIG))["not_decreasing"].status == "problem"


def test_oscillating_from_epoch_zig_zag():
    zigzag = [1.0, 0.6, 0.9, 0.5, 0.8, 0.45, 0.7, 0.4, 0.65, 0.38, 0.6, 0.35]
    findings = by_symptom(diagnose_history(history(train=zigzag), CONFIG))
    f = findings["oscillating"]
    assert f.status == "problem"
    assert f.measured["sign_change_fraction"] == 1.0
    assert f.advice == ["optim.lr=2e-4"]            # lr/5; clipping at 1.0 is already tighter than 3
    assert "already clipped" in f.message
    assert findings["not_decreasing"].status == "ok"
    # a plateau that zig-zags by ~1 % is not oscillating
    plateau = [0.5, 0.3, 0.21, 0.203, 0.2055, 0.202, 0.2045, 0.201, 0.2035, 0.2, 0.2025, 0.199]
    f = by_symptom(diagnose_history(history(train=plateau), CONFIG))["oscillating"]
    assert f.status == "ok" and f.measured["sign_change_fraction"] >= 0.5 and f.measured["mean_rise"] < 0.02


def test_oscillating_from_step_losses_and_generic_advice():
    f = by_symptom(diagnose_history(history(oscillation=0.8), None))["oscillating"]
    assert f.status == "problem"
    assert f.measured["median_oscillation"] == pytest.approx(0.8)
    assert f.advice == ["optim.lr=2e-4", "trainer.grad_clip=3.0"]    # no config: generic values


def test_non_finite_train_loss_is_diverged():
    train = curve()[:9] + [float("nan"), float("inf"), float("nan")]
    findings = by_symptom(diagnose_history(history(train=train, val=curve()), {**CONFIG, "trainer": {"grad_clip": 0}}))
    f = findings["oscillating"]
    assert f.status == "problem"
    assert f.measured["nonfinite_epochs"] == [10, 11, 12]
    assert "diverged" in f.message
    assert f.advice == ["optim.lr=2e-4", "trainer.grad_clip=3.0"]    # clipping was off
    assert findings["not_decreasing"].status == "skipped"
    assert "diverged" in findings["not_decreasing"].message
    assert findings["diverged"].status == "problem" and "not finite" in findings["diverged"].message


def test_a_run_that_blew_up_in_its_first_epoch_and_came_down_is_diverged(tmp_path):
    """As optim.lr=3 trainer.divergence_factor=0 trains (numbers of such a real run): epoch 1's
    mean is already 1e4 times a sane loss, so the curve only falls after it; the diagnosis must
    not call that decreasing nor advise training longer."""
    train, val = [6.4e4, 3.5e4, 9.4e3, 119.0], [5.0e4, 2.8e4, 277.0, 68.0]
    targets = {"temperature": [1.3e4, 6.5e3, 80.8, 11.5], "heat_flux": [3.5e3, 3.0e3, 11.5, 11.3]}
    config = {**CONFIG, "optim": {"lr": 3.0, "warmup_epochs": 0.3}, "trainer": {"epochs": 4, "grad_clip": 1.0}}
    run = write_run(tmp_path / "run", history(train=train, val=val, targets=targets, n=4), config)
    findings = by_symptom(diagnose_run(run).findings)
    diverged = findings["diverged"]
    assert diverged.status == "problem" and diverged.measured["metric"].endswith("/temperature/l1")
    assert diverged.advice == ["optim.lr=0.3", "optim.warmup_epochs=1"]  # clipping is already at 1.0
    for symptom in ("not_decreasing", "under_trained", "overfitting", "consistency_not_decreasing"):
        assert findings[symptom].status == "skipped" and "diverged" in findings[symptom].message, symptom
    assert not any("trainer.epochs" in a for f in findings.values() for a in f.advice)


def test_a_loss_rising_by_orders_of_magnitude_is_diverged_with_clipping_advice():
    train = [1.0, 0.8, 50.0, 3e4, 1e15]
    findings = by_symptom(diagnose_history(history(train=train, val=train, n=5),
                                           {**CONFIG, "trainer": {"grad_clip": 0.0}}))
    assert findings["diverged"].status == "problem" and findings["diverged"].measured["epoch"] == 5
    assert findings["diverged"].advice == ["optim.lr=1e-4", "trainer.grad_clip=1"]  # it blew up late: no warmup


def test_a_healthy_run_is_not_diverged():
    assert by_symptom(diagnose_history(history(), CONFIG))["diverged"].status == "ok"


def test_target_imbalance():
    imbalanced = history(targets={"temperature": 0.2, "heat_flux": 1.2})
    f = by_symptom(diagnose_history(imbalanced, CONFIG))["target_imbalance"]
    assert f.status == "problem"
    assert f.measured["worst"] == "heat_flux" and f.measured["ratio"] == pytest.approx(6.0)
    assert f.advice == ["+loss.target_weights.heat_flux=2.0", "data.fourier_features=32", "model.hidden_dim=128"]
    weighted = {**CONFIG, "loss": {**CONFIG["loss"], "target_weights": {"heat_flux": 3.0}}}
    advice = by_symptom(diagnose_history(imbalanced, weighted))["target_imbalance"].advice
    assert advice[0] == "++loss.target_weights.heat_flux=6.0"                # 2x the weight it had
    # worst over the median of the others (0.2 here, not the next worst 0.3)
    three = by_symptom(diagnose_history(history(targets={"a": 0.1, "b": 0.2, "c": 0.3, "d": 1.0}), CONFIG))
    assert three["target_imbalance"].status == "problem" and three["target_imbalance"].measured["ratio"] == 5.0
    # just under the threshold does not fire
    under = {"a": 0.2, "b": 0.2 * TARGET_IMBALANCE_MAX_RATIO * 0.95}
    f = by_symptom(diagnose_history(history(targets=under), CONFIG))["target_imbalance"]
    assert f.status == "ok" and f.measured["ratio"] == pytest.approx(TARGET_IMBALANCE_MAX_RATIO * 0.95)
    one = by_symptom(diagnose_history(history(targets={"temperature": 0.2}), CONFIG))["target_imbalance"]
    assert one.status == "skipped"


def test_overfitting():
    train = curve(rate=0.3)
    val = [0.9, 0.7, 0.55, 0.45, 0.4, 0.38, 0.39, 0.41, 0.43, 0.45, 0.47, 0.5]
    findings = by_symptom(diagnose_history(history(train=train, val=val), CONFIG))
    f = findings["overfitting"]
    assert f.status == "problem"
    assert f.measured["last_over_best"] == pytest.approx(0.5 / 0.38)
    assert f.advice == ["model.dropout=0.15", "loss.smoothness_weight=0.15", "optim.weight_decay=1e-4"]
    assert findings["under_trained"].status == "ok"
    # rising, but only 3 % above the best: noise, not overfitting
    mild = val[:6] + [0.381, 0.383, 0.385, 0.387, 0.389, 0.391]
    assert by_symptom(diagnose_history(history(train=train, val=mild), CONFIG))["overfitting"].status == "ok"


def test_under_trained():
    falling = [0.9 ** e for e in range(EPOCHS)]                        # -10 % every epoch to the end
    findings = by_symptom(diagnose_history(history(train=falling, val=falling), CONFIG, run_dir="outputs/r"))
    f = findings["under_trained"]
    assert f.status == "problem"
    assert f.measured["improvement_per_epoch"] > 0.05 and f.measured["best_epoch"] == EPOCHS
    assert f.advice == [f"trainer.epochs={2 * EPOCHS}", f"python train.py resume=outputs/r trainer.epochs={2 * EPOCHS}"]
    # interrupted before its planned epochs: finishing them comes first
    planned = {**CONFIG, "trainer": {"epochs": 50}}
    f = by_symptom(diagnose_history(history(train=falling, val=falling), planned, run_dir="outputs/r"))["under_trained"]
    assert f.advice[0] == "python train.py resume=outputs/r" and f.advice[1] == "trainer.epochs=100"


def test_consistency_not_decreasing():
    findings = by_symptom(diagnose_history(history(consistency=[1.0] * EPOCHS), CONFIG, run_dir="outputs/r"))
    f = findings["consistency_not_decreasing"]
    assert f.status == "problem" and f.measured["relative_change"] == 0.0
    assert f.advice == ["loss.gradient_consistency_weight=0.1",
                        f"loss=stage2 init_from=outputs/r trainer.epochs={2 * EPOCHS}"]
    stage2 = {**CONFIG, "loss": {"name": "stage2", "gradient_consistency_weight": 0.25}}
    f = by_symptom(diagnose_history(history(consistency=[1.0] * EPOCHS), stage2))["consistency_not_decreasing"]
    assert f.advice == ["loss.gradient_consistency_weight=0.5"]


def test_one_epoch_and_old_runs_are_skipped_with_reasons():
    findings = by_symptom(diagnose_history(history(n=1, oscillation=None), CONFIG))
    skipped = {"not_decreasing", "oscillating", "overfitting", "under_trained", "consistency_not_decreasing"}
    assert {s for s, f in findings.items() if f.status == "skipped"} == skipped
    assert all(findings[s].message for s in skipped)
    assert "at least 2 epochs" in findings["not_decreasing"].message
    old = by_symptom(diagnose_history(history(consistency=False, oscillation=None), CONFIG))
    assert old["consistency_not_decreasing"].status == "skipped"
    assert "not in metrics.jsonl" in old["consistency_not_decreasing"].message
    assert old["oscillating"].status == "ok"            # judged from the epoch losses alone


def test_diagnose_run_writes_loadable_json_and_report(tmp_path):
    train = curve()[:11] + [float("nan")]
    run = write_run(tmp_path / "run", history(train=train, val=curve()), {**CONFIG, "optim": {"lr": 5e-4}})
    diagnosis = diagnose_run(run)
    # the NaN epoch makes it diverged too: a non-finite run is never ok
    assert [f.symptom for f in diagnosis.problems] == ["diverged", "oscillating"]
    assert diagnosis.problems[1].advice[0] == "optim.lr=1e-4"              # the run's lr / 5
    path = write_diagnosis(run, diagnosis)
    loaded = json.loads(path.read_text())
    assert loaded["problems"] == ["diverged", "oscillating"] and loaded["epochs"] == EPOCHS
    assert [f["symptom"] for f in loaded["findings"]] == list(SYMPTOMS)
    lines = diagnosis.lines()
    assert lines[0].startswith(f"diagnosis of {run} ({EPOCHS} epochs): 2 problem(s): diverged, oscillating")
    assert any(line.startswith("PROBLEM oscillating:") and "-> try: optim.lr=1e-4" in line for line in lines)
    assert any(line.startswith("skipped not_decreasing:") for line in lines)
    # diagnose_path on a run directory: the report, and diagnosis.json rewritten
    path.unlink()
    assert diagnose_path(run)[0] == lines[0] and path.is_file()


def test_missing_config_gives_generic_advice(tmp_path):
    run = write_run(tmp_path / "run", history(targets={"t": 0.1, "u": 0.9}), config=None)
    diagnosis = diagnose_run(run)
    assert any("advice uses generic values" in note for note in diagnosis.notes)
    assert diagnosis.problems[0].advice[0] == "++loss.target_weights.u=2.0"
    assert json.loads(Diagnosis(str(run), diagnosis.findings).to_json())["problems"] == ["target_imbalance"]


def test_sweep_ranking(tmp_path):
    sweep = tmp_path / "multirun"
    overfit_val = [0.9, 0.7, 0.55, 0.45, 0.4, 0.38, 0.39, 0.41, 0.43, 0.45, 0.47, 0.5]
    write_run(sweep / "0", history(train=curve(rate=0.3), val=overfit_val))
    write_run(sweep / "1", history(train=curve(rate=0.3), val=[v - 0.1 for v in overfit_val],
                                   targets={"temperature": 0.1, "heat_flux": 0.9}))
    (sweep / "2" / ".hydra").mkdir(parents=True)                           # failed before an epoch
    lines = diagnose_sweep(sweep)
    text = "\n".join(lines)
    assert lines[0] == f"sweep {sweep}: 3 trial folders, 2 diagnosed, 1 failed or empty"
    ranking = lines[lines.index("symptoms by trials affected:") + 1:]
    assert ranking[0].split() == ["overfitting", "2/2", "trials", "0,", "1"]
    assert ranking[1].split() == ["target_imbalance", "1/2", "trials", "1"]
    trials = [line.split()[1] for line in lines if line.startswith("  trial ") and ":" not in line.split()[1]]
    assert trials == ["1", "0"]                                            # best final val first
    assert "trial 2: no metrics.jsonl" in text
    assert (sweep / "0" / "diagnosis.json").is_file() and not (sweep / "2" / "diagnosis.json").exists()
    assert diagnose_path(sweep) == lines


def test_sweep_of_staged_trials_and_a_trial_stopped_as_diverged(tmp_path):
    sweep = tmp_path / "multirun"
    staged = sweep / "0"
    write_run(staged / "stage1", history(), config=None)
    write_run(staged / "stage2", history(train=[1.0] * EPOCHS), config=None)      # flat: not_decreasing
    (staged / ".hydra" / "launches" / "01").mkdir(parents=True)
    (staged / ".hydra" / "launches" / "01" / "config.yaml").write_text(yaml.safe_dump(
        {**CONFIG, "stages": {"stage1": {"optim": {"lr": 5e-4}}, "stage2": {"optim": {"lr": 1e-4}}}}))
    diverged = sweep / "1"   # the trainer refused its first epoch: run.json records the stop, no metrics
    diverged.mkdir(parents=True)
    (diverged / "run.json").write_text(json.dumps({"launches": [{"stopped": {
        "reason": "diverged", "metric": "train/loss/total", "epoch": 1, "value": 2e11, "message": "rose"}}],
        "config": CONFIG}))
    lines = diagnose_sweep(sweep)
    assert lines[0] == f"sweep {sweep}: 2 trial folders, 2 diagnosed, 0 failed or empty"
    trial0 = next(line for line in lines if line.startswith("  trial 0 "))
    assert "stage2/not_decreasing" in trial0 and "stages.stage2.optim.lr=" in trial0
    assert "diverged" in next(line for line in lines if line.startswith("  trial 1 "))
    doc = json.loads((staged / "diagnosis.json").read_text())
    assert [s["stage"] for s in doc["stages"]] == ["stage1", "stage2"] and "stage2/not_decreasing" in doc["problems"]


def test_a_stage_still_improving_is_not_told_to_resume_with_top_level_epochs(tmp_path):
    """`resume=<staged run> trainer.epochs=N` cannot lengthen a stage (its own entries win)."""
    run = tmp_path / "run"
    write_run(run / "stage1", history(train=[1.0 / (e + 1) for e in range(6)], n=6), config=None)
    (run / ".hydra" / "launches" / "01").mkdir(parents=True)
    (run / ".hydra" / "launches" / "01" / "config.yaml").write_text(yaml.safe_dump({**CONFIG, "stages": {"stage1": {}}}))
    finding = by_symptom(diagnose_run(run / "stage1").findings)["under_trained"]
    assert finding.status == "problem"
    assert finding.advice == ["stages.stage1.trainer.epochs=12"]  # no config read: twice its 6 epochs


def test_user_errors(tmp_path):
    missing = tmp_path / "nope"
    for call in (diagnose_path, diagnose_run, diagnose_sweep):
        with pytest.raises(UserError, match="nope"):
            call(missing)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text("")
    with pytest.raises(UserError, match="metrics.jsonl is missing or empty"):
        diagnose_path(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    with pytest.raises(UserError, match="neither a run directory"):
        diagnose_path(tmp_path / "other")


def test_the_config_recorded_in_run_json_wins_over_the_launch_composition(tmp_path):
    """After `resume=<run>` without the original overrides, .hydra/config.yaml is the resuming
    command's composition; run.json holds what the run actually trains with."""
    train = curve()[:11] + [float("nan")]
    run = write_run(tmp_path / "run", history(train=train, val=curve()), {**CONFIG, "optim": {"lr": 5e-4}})
    (run / "run.json").write_text(json.dumps({"launches": [], "config": {**CONFIG, "optim": {"lr": 2e-3}}}))
    problems = {f.symptom: f for f in diagnose_run(run).problems}
    assert problems["oscillating"].advice[0] == "optim.lr=4e-4"  # its lr / 5, not the launch's
    assert problems["diverged"].advice[0] == "optim.lr=2e-4"     # its lr / 10
