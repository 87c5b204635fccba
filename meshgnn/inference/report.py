"""Tables of prediction errors for the command line."""

from __future__ import annotations

import numpy as np

from meshgnn.inference.predict import FilePrediction


def file_error_lines(results: list[FilePrediction]) -> list[str]:
    """Per file and target: rel L2, MAE and max abs error (physical units) where the file has
    the true field, then the mean over those files; empty when no file has one."""
    rows = [(r.path.name, name, e) for r in results for name, e in r.errors.items()]
    if not rows:
        return []
    width = max(len(f) for f, _, _ in rows) + 2
    header = f"{'file':<{width}}{'target':<16}{'rel_l2':>10}{'mae':>12}{'max_abs':>12}"
    lines = [header, "-" * len(header)]
    lines += [f"{f:<{width}}{t:<16}{e['rel_l2']:>10.4f}{e['mae']:>12.4g}{e['max_abs']:>12.4g}" for f, t, e in rows]
    for name in dict.fromkeys(t for _, t, _ in rows):
        errs = [e for _, t, e in rows if t == name]
        lines.append(f"{'mean (' + str(len(errs)) + ' files)':<{width}}{name:<16}"
                     f"{np.mean([e['rel_l2'] for e in errs]):>10.4f}{np.mean([e['mae'] for e in errs]):>12.4g}"
                     f"{max(e['max_abs'] for e in errs):>12.4g}")
    return lines
