"""What a diagnosis says: one `Finding` per symptom, a run's `Diagnosis`, a staged run's
`StagedDiagnosis` (one diagnosis per stage, in training order), and their text and JSON forms.

The rules that produce findings are in `meshgnn.diagnostics.diagnose`; reading run directories
is in `meshgnn.diagnostics.runs`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Finding:
    symptom: str                 # stable id, one of diagnose.SYMPTOMS
    status: str                  # "problem" | "ok" | "skipped"
    measured: dict[str, Any]     # the numbers computed
    rule: str                    # the test and its threshold, in words
    message: str                 # one sentence for users (for "skipped": the reason)
    advice: list[str] = field(default_factory=list)  # overrides / commands to try


@dataclass
class Diagnosis:
    """The findings of one plain run (or one stage of a staged run)."""

    run_dir: str
    findings: list[Finding]
    epochs: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "problem"]

    def problem_names(self) -> list[str]:
        return [f.symptom for f in self.problems]

    def verdict(self) -> str:
        problems = self.problems
        return (f"{len(problems)} problem(s): {', '.join(f.symptom for f in problems)}" if problems
                else "no problems found")

    def lines(self) -> list[str]:
        out = [f"diagnosis of {self.run_dir} ({self.epochs} epochs): {self.verdict()}"]
        out += [f"note: {note}" for note in self.notes]
        out += [_finding_line(f) for f in self.findings]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": self.run_dir, "epochs": self.epochs,
                "problems": [f.symptom for f in self.problems], "notes": list(self.notes),
                "findings": [_json_safe(asdict(f)) for f in self.findings]}

    def to_json(self) -> str:
        """Strict JSON: non-finite numbers are written as the strings "nan"/"inf"/"-inf"
        (as in metrics.jsonl)."""
        return _strict_json(self.to_dict())


@dataclass
class StagedDiagnosis:
    """A staged run (experiment=two_stage): each stage's diagnosis, in training order, every
    line labelled with its stage. `problems` holds every stage's, so a sweep ranks it like a
    plain run."""

    run_dir: str
    stages: list[tuple[str, Diagnosis]]

    @property
    def problems(self) -> list[Finding]:
        return [f for _, diagnosis in self.stages for f in diagnosis.problems]

    def problem_names(self) -> list[str]:
        """Each problem as <stage>/<symptom>."""
        return [f"{name}/{f.symptom}" for name, diagnosis in self.stages for f in diagnosis.problems]

    def lines(self) -> list[str]:
        verdicts = "; ".join(f"{name}: {diagnosis.verdict()}" for name, diagnosis in self.stages)
        out = [f"diagnosis of staged run {self.run_dir} ({', '.join(name for name, _ in self.stages)}): {verdicts}"]
        for name, diagnosis in self.stages:
            out += [f"[{name}] {line}" for line in diagnosis.lines()]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": self.run_dir, "staged": True,
                "problems": self.problem_names(),
                "stages": [{"stage": name, **diagnosis.to_dict()} for name, diagnosis in self.stages]}

    def to_json(self) -> str:
        return _strict_json(self.to_dict())


def _finding_line(f: Finding) -> str:
    if f.status == "problem":
        line = f"PROBLEM {f.symptom}: {f.message} (measured {_format_measured(f.measured)}; rule {f.rule})"
        return line + (" -> try: " + "; ".join(f.advice) if f.advice else "")
    if f.status == "ok":
        return f"ok {f.symptom}: {f.message}" + (f" (measured {_format_measured(f.measured)})" if f.measured else "")
    return f"skipped {f.symptom}: {f.message}"


def format_value(value: Any) -> str:
    """A measured number for people: 3 significant digits, "n/a" when absent."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}" if math.isfinite(value) else str(value)
    return str(value)


def override_number(value: float, decimal: bool = False) -> str:
    """A number as one would type it in an override: 2e-4, 1.5e-3, 0.15, 2.0 (decimal=True)."""
    if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
        mantissa, exponent = f"{value:.2e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"
    text = f"{value:.3g}"
    if decimal and "." not in text and "e" not in text:
        text += ".0"
    return text


def _format_measured(measured: dict[str, Any]) -> str:
    parts = []
    for key, value in measured.items():
        if isinstance(value, dict):
            value = "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
        elif isinstance(value, list):
            value = epoch_list(value) if all(isinstance(v, int) for v in value) else str(value)
        else:
            value = format_value(value)
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def epoch_list(epochs: list[int], limit: int = 5) -> str:
    """The first `limit` epochs, and how many more."""
    shown = ", ".join(map(str, epochs[:limit]))
    return shown + (f" and {len(epochs) - limit} more" if len(epochs) > limit else "")


def _strict_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
