"""Reading run and sweep directories for the diagnosis: metrics.jsonl, the config the run trained
with, how its last launch stopped (run.json), and where diagnosis.json goes. The rules themselves
are pure functions of those records, in `meshgnn.diagnostics.diagnose`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from meshgnn.atomic import atomic_write_text
from meshgnn.diagnostics.diagnose import SYMPTOMS, VAL_LOSS, diagnose_history
from meshgnn.diagnostics.history import number, sorted_records
from meshgnn.diagnostics.verdict import Diagnosis, StagedDiagnosis, format_value
from meshgnn.errors import UserError
from meshgnn.run_layout import final_stage_dir, is_staged, stage_dirs
from meshgnn.training.metrics_log import read_metrics

# The config groups a stage of a staged run sets for itself (stages.<stage>.<group>).
STAGE_GROUPS = ("optim", "trainer", "loss")


def diagnose_run(run_dir: Path | str) -> Diagnosis:
    """Diagnose a run directory from its metrics.jsonl and .hydra/config.yaml."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist: pass a run directory "
                        f"(outputs/<date>/<time>) or a sweep directory (multirun/<date>/<time>)")
    metrics = run_dir / "metrics.jsonl"
    try:
        history = read_metrics(run_dir)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{metrics} is not one JSON object per line ({exc}): delete the broken line "
                        f"(a run killed mid-write leaves a partial last line) and diagnose again") from exc
    stopped = _last_stop(run_dir)
    if not history and not stopped:
        raise UserError(f"{metrics} is missing or empty: the run has not finished an epoch yet; "
                        f"train at least one epoch (or resume it: python train.py resume={run_dir}) "
                        f"and diagnose again")
    config, notes = _load_config(run_dir)
    stage = _stage_name(run_dir)
    # A stage of a staged run (<run dir>/stage2) is resumed through its run directory.
    findings = diagnose_history(history, config, str(run_dir.parent if stage else run_dir), stopped)
    if stage:
        for finding in findings:
            finding.advice = [a for a in (_stage_override(stage, advice) for advice in finding.advice) if a]
    return Diagnosis(str(run_dir), findings, epochs=len(sorted_records(history)), notes=notes)


def diagnose_staged(run_dir: Path | str) -> StagedDiagnosis:
    """Diagnose every stage of a staged run that has trained an epoch (or stopped as diverged),
    in training order."""
    run_dir = Path(run_dir)
    stages = [(d.name, diagnose_run(d)) for d in stage_dirs(run_dir) if _diagnosable(d)]
    if not stages:
        raise UserError(f"staged run {run_dir} has no stage with a finished epoch yet; train at least one "
                        f"epoch (or resume it: python train.py resume={run_dir}) and diagnose again")
    return StagedDiagnosis(str(run_dir), stages)


def diagnose_any(run_dir: Path) -> Diagnosis | StagedDiagnosis:
    """A staged run's diagnosis of every stage, or a plain run's."""
    return diagnose_staged(run_dir) if is_staged(run_dir) else diagnose_run(run_dir)


def _stage_name(run_dir: Path) -> str | None:
    """The stage name when `run_dir` is one stage of a staged run (<run dir>/<stage>)."""
    return run_dir.name if is_staged(run_dir.parent) and run_dir in stage_dirs(run_dir.parent) else None


def _stage_override(stage: str, advice: str) -> str | None:
    """A stage trains with its own optim/trainer/loss entries (stages.<stage>.*), which win over
    the top-level ones: advice for those groups names the stage's key. A resume command that
    changes such a key is dropped (a staged resume cannot reach a stage's entries: the stage's
    checkpoint config wins); other commands and suggestions of several overrides stay."""
    words = advice.split()
    if words[:2] == ["python", "train.py"] and any(w.startswith("resume=") for w in words):
        changes = [w for w in words[2:] if not w.startswith("resume=")]
        return None if any(w.lstrip("+").split(".")[0] in STAGE_GROUPS for w in changes) else advice
    key = advice.split("=", 1)[0].lstrip("+")
    if "=" in advice and len(words) == 1 and key.split(".")[0] in STAGE_GROUPS:
        prefix = advice[:len(advice) - len(advice.lstrip("+"))]
        return f"{prefix}stages.{stage}.{advice.lstrip('+')}"
    return advice


def _last_stop(run_dir: Path) -> dict | None:
    """How the run's last launch stopped, when run.json records it (a divergence)."""
    try:
        launches = json.loads((run_dir / "run.json").read_text()).get("launches") or [{}]
    except (OSError, ValueError, AttributeError):
        return None
    return launches[-1].get("stopped") if isinstance(launches[-1], dict) else None


def write_diagnosis(run_dir: Path | str, diagnosis: Diagnosis | StagedDiagnosis) -> Path:
    """Write `run_dir/diagnosis.json` atomically (a staged run's holds every stage; each stage's
    own diagnosis.json is refreshed too); returns its path."""
    if isinstance(diagnosis, StagedDiagnosis):
        for name, stage in diagnosis.stages:
            write_diagnosis(Path(run_dir) / name, stage)
    path = Path(run_dir) / "diagnosis.json"
    atomic_write_text(path, diagnosis.to_json())
    return path


def diagnose_sweep(sweep_dir: Path | str) -> list[str]:
    """Diagnose every trial of a sweep (numbered subfolders; diagnosis.json written into each)
    and rank: symptoms by how many trials show them, then trials by final val/loss/total."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(f"sweep directory {sweep_dir} does not exist: pass multirun/<date>/<time>")
    trials = _trial_dirs(sweep_dir)
    if not trials:
        raise UserError(_neither_message(sweep_dir))
    diagnosed: dict[int, Diagnosis | StagedDiagnosis] = {}
    final: dict[int, float] = {}   # final val/loss/total (of the last stage), inf when absent or not finite
    failed: dict[int, str] = {}
    for trial_number, trial in trials:
        if not is_staged(trial) and not _diagnosable(trial):
            failed[trial_number] = ("no metrics.jsonl" if not (trial / "metrics.jsonl").exists()
                                    else "empty metrics.jsonl")
            continue
        try:
            diagnosed[trial_number] = diagnose_any(trial)
        except UserError as exc:
            failed[trial_number] = str(exc)
            continue
        write_diagnosis(trial, diagnosed[trial_number])
        records = sorted_records(read_metrics(final_stage_dir(trial)))
        value = number(records[-1].get(VAL_LOSS)) if records else None
        final[trial_number] = value if value is not None and math.isfinite(value) else math.inf

    lines = [f"sweep {sweep_dir}: {len(trials)} trial folders, {len(diagnosed)} diagnosed, "
             f"{len(failed)} failed or empty"]
    total = len(diagnosed)
    counts = {s: [n for n, d in diagnosed.items() if any(f.symptom == s for f in d.problems)] for s in SYMPTOMS}
    ranked = sorted((s for s in SYMPTOMS if counts[s]), key=lambda s: (-len(counts[s]), SYMPTOMS.index(s)))
    lines.append("symptoms by trials affected:")
    width = max(len(s) for s in SYMPTOMS)
    for s in ranked:
        lines.append(f"  {s:<{width}}  {len(counts[s])}/{total}  trials {', '.join(map(str, counts[s]))}")
    if not ranked:
        lines.append(f"  none: no problem found in {total} trial(s)")
    lines.append(f"trials by final {VAL_LOSS} (best first):")
    for trial_number in sorted(diagnosed, key=lambda n: (final[n], n)):
        d = diagnosed[trial_number]
        problems = ", ".join(d.problem_names()) or "no problems"
        advice = "; ".join(a for f in d.problems for a in f.advice[:1])
        lines.append(f"  trial {trial_number}  {VAL_LOSS} {format_value(final[trial_number])}  {problems}"
                     + (f"  -> try: {advice}" if advice else ""))
    if failed:
        lines.append("failed or empty trials (see their train.log):")
        lines += [f"  trial {n}: {reason}" for n, reason in sorted(failed.items())]
    return lines


def diagnose_path(path: Path | str) -> list[str]:
    """`meshgnn diagnose PATH`: a run directory -> its report (diagnosis.json written into it;
    a staged run's covers every stage); a sweep directory -> the sweep ranking."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist: pass a run directory (outputs/<date>/<time>) or a "
                        f"sweep directory (multirun/<date>/<time>)")
    if not path.is_dir():
        raise UserError(f"{path} is a file: pass the run directory that holds metrics.jsonl "
                        f"(outputs/<date>/<time>) or a sweep directory (multirun/<date>/<time>)")
    if (is_staged(path) or (path / "metrics.jsonl").exists() or (path / "run.json").is_file()
            or ((path / ".hydra").is_dir() and not _trial_dirs(path))):
        diagnosis = diagnose_any(path)
        written = write_diagnosis(path, diagnosis)
        return diagnosis.lines() + [f"written to {written}"]
    if _trial_dirs(path):
        return diagnose_sweep(path)
    raise UserError(_neither_message(path))


def _load_config(run_dir: Path) -> tuple[dict | None, list[str]]:
    """The config the run trained with: the latest launch's in run_dir/run.json (right after a
    resume=, which .hydra/config.yaml is not: that is the resuming command's composition);
    for runs written before run.json held it, run_dir/.hydra/config.yaml, or for a stage of a
    staged run (<run dir>/stage1) the parent's with that stage's optim and trainer changes."""
    try:
        recorded = json.loads((run_dir / "run.json").read_text()).get("config")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if isinstance(recorded, dict):
        return recorded, []
    own = run_dir / ".hydra" / "config.yaml"
    parent = run_dir.parent / ".hydra" / "config.yaml"
    path = own if own.is_file() else parent if parent.is_file() else None
    if path is None:
        return None, [f"no {own}: advice uses generic values"]
    try:
        config = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        return None, [f"{path} could not be read ({type(exc).__name__}): advice uses generic values"]
    if not isinstance(config, dict):
        return None, [f"{path} is not a mapping: advice uses generic values"]
    if path == parent:
        stage = (config.get("stages") or {}).get(run_dir.name) if isinstance(config.get("stages"), dict) else None
        if not isinstance(stage, dict):
            return None, [f"no {own}: advice uses generic values"]
        for group in ("optim", "trainer"):
            if isinstance(stage.get(group), dict) and isinstance(config.get(group), dict):
                config[group] = {**config[group], **stage[group]}
        loss = config.get("loss") if isinstance(config.get("loss"), dict) else {}
        if isinstance(stage.get("loss"), str) and stage["loss"] != loss.get("name"):
            # the stage trains with another loss group whose weights this file does not hold
            config["loss"] = {"name": stage["loss"], "target_weights": loss.get("target_weights", {})}
    return config, []


def _trial_dirs(folder: Path) -> list[tuple[int, Path]]:
    return sorted((int(p.name), p) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def _diagnosable(run_dir: Path) -> bool:
    """An epoch logged, or a launch that stopped as diverged before logging one."""
    return _has_metrics(run_dir) or _last_stop(run_dir) is not None


def _has_metrics(run_dir: Path) -> bool:
    path = run_dir / "metrics.jsonl"
    return path.is_file() and path.stat().st_size > 0 and bool(path.read_text().strip())


def _neither_message(path: Path) -> str:
    stages = sorted(p.name for p in path.iterdir() if p.is_dir() and (p / "metrics.jsonl").exists())
    hint = (f"; it holds the staged runs {', '.join(stages)}: pass one of them, e.g. {path / stages[-1]}"
            if stages else "")
    return (f"{path} is neither a run directory (no metrics.jsonl) nor a sweep directory (no numbered "
            f"trial folders){hint}: pass outputs/<date>/<time> or multirun/<date>/<time>")
