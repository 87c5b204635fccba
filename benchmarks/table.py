"""The one table format every benchmark prints (pasted into the README with the machine)."""

from __future__ import annotations

import os
import platform

import torch


def print_table(rows: list[tuple[str, str, str]], context: str = "") -> None:
    """Print the machine line, then rows of (measure, value, note) as a Markdown table."""
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads{'; ' + context if context else ''}\n")
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure':<{width}} | value | note |\n|{'-' * (width + 2)}|---|---|")
    for name, value, note in rows:
        print(f"| {name:<{width}} | {value} | {note} |")
