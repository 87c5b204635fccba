"""Prediction errors as data and as text: predictions.csv and predictions.json in the output
folder (one row per file and target, by the file's path relative to the folder it was given
in, so same-named files of different subfolders stay apart), and the console table."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from meshgnn.atomic import atomic_write_text
from meshgnn.inference.predict import FilePrediction

CSV_NAME, JSON_NAME = "predictions.csv", "predictions.json"
METRICS = ("rel_l2", "mae", "max_abs")
CSV_COLUMNS = ("file", "output", "num_nodes", "target", *METRICS, *(f"baseline_{m}" for m in METRICS))


@dataclass(frozen=True)
class Throughput:
    """How fast a folder was predicted, reading and writing included: `seconds` of the whole
    `predict_files` call, with the reader processes and the batch size it ran with."""

    meshes: int
    nodes: int
    seconds: float
    workers: int
    batch_nodes: int

    @classmethod
    def of(cls, results: list[FilePrediction], seconds: float, workers: int, batch_nodes: int) -> "Throughput":
        return cls(len(results), sum(r.num_nodes for r in results), seconds, workers, batch_nodes)

    @property
    def meshes_per_s(self) -> float:
        return self.meshes / max(self.seconds, 1e-9)

    @property
    def nodes_per_s(self) -> float:
        return self.nodes / max(self.seconds, 1e-9)

    def line(self) -> str:
        return (f"predicted {self.meshes} meshes ({self.nodes:,} nodes) in {self.seconds:.2f} s: "
                f"{self.meshes_per_s:.2f} meshes/s, {self.nodes_per_s:,.0f} nodes/s "
                f"({self.workers} reader process(es), batches of up to {self.batch_nodes:,} nodes)")

    def to_json(self) -> dict[str, float | int]:
        return {**asdict(self), "meshes_per_s": self.meshes_per_s, "nodes_per_s": self.nodes_per_s}


def mean_errors(results: list[FilePrediction], baseline: bool = False) -> dict[str, dict[str, float]]:
    """Per target over the files that have it: mean rel_l2 and mae, max of max_abs."""
    out = {}
    per_file = [r.baseline_errors if baseline else r.errors for r in results]
    for name in dict.fromkeys(t for errors in per_file for t in errors):
        errs = [e[name] for e in per_file if name in e]
        out[name] = {"files": len(errs), "rel_l2": float(np.mean([e["rel_l2"] for e in errs])),
                     "mae": float(np.mean([e["mae"] for e in errs])),
                     "max_abs": float(max(e["max_abs"] for e in errs))}
    return out


def predictions_doc(results: list[FilePrediction], model: str, throughput: Throughput) -> dict[str, Any]:
    """predictions.json: the model, how fast it predicted, every file (relative path, output,
    nodes, errors of the model and of the analytic baseline where there is one) and the means
    over files."""
    return {"model": model, "throughput": throughput.to_json(),
            "files": [{"file": r.name, "output": r.output, "num_nodes": r.num_nodes, "errors": r.errors,
                       "baseline_errors": r.baseline_errors} for r in results],
            "mean": mean_errors(results), "baseline_mean": mean_errors(results, baseline=True)}


def write_prediction_tables(results: list[FilePrediction], out_dir: Path, model: str,
                            throughput: Throughput) -> tuple[Path, Path]:
    """predictions.csv (a row per file and target; a file without true fields has one row with
    empty target and errors) and predictions.json in `out_dir`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        for target in r.errors or [""]:
            errors, base = r.errors.get(target, {}), r.baseline_errors.get(target, {})
            writer.writerow([r.name, r.output, r.num_nodes, target, *(errors.get(m, "") for m in METRICS),
                             *(base.get(m, "") for m in METRICS)])
    csv_path, json_path = Path(out_dir) / CSV_NAME, Path(out_dir) / JSON_NAME
    atomic_write_text(csv_path, buffer.getvalue())
    atomic_write_text(json_path, json.dumps(predictions_doc(results, model, throughput), indent=1))
    return csv_path, json_path


def file_error_lines(results: list[FilePrediction]) -> list[str]:
    """Per file (relative path) and target: rel L2, MAE and max abs error (physical units)
    where the file has the true field, and the analytic baseline's rel L2 where there is one,
    then the mean over those files; empty when no file has a true field."""
    rows = [(r.name, name, e, r.baseline_errors.get(name)) for r in results for name, e in r.errors.items()]
    if not rows:
        return []
    with_baseline = any(b is not None for *_, b in rows)
    width = max(len(f) for f, *_ in rows) + 2
    header = (f"{'file':<{width}}{'target':<16}{'rel_l2':>10}{'mae':>12}{'max_abs':>12}"
              + (f"{'baseline rel_l2':>17}" if with_baseline else ""))

    def line(label: str, target: str, e: dict[str, float], base: dict[str, float] | None) -> str:
        text = f"{label:<{width}}{target:<16}{e['rel_l2']:>10.4f}{e['mae']:>12.4g}{e['max_abs']:>12.4g}"
        return text + (f"{base['rel_l2']:>17.4f}" if base else "")

    lines = [header, "-" * len(header)] + [line(*row) for row in rows]
    model_mean, base_mean = mean_errors(results), mean_errors(results, baseline=True)
    for name, e in model_mean.items():
        lines.append(line(f"mean ({e['files']} files)", name, e, base_mean.get(name)))
    return lines
