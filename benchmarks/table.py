"""The one table format every benchmark prints (pasted into the README with the machine)."""

from __future__ import annotations

import os
import platform

import torch


def machine_line(context: str = "") -> str:
    """The machine a table was measured on: architecture, cores, torch, threads, GPU if any."""
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"\nmachine: {platform.machine()}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads{'; ' + context if context else ''}\n")


def print_table(rows: list[tuple[str, str, str]], context: str = "") -> None:
    """Print the machine line, then rows of (measure, value, note) as a Markdown table."""
    print(machine_line(context))
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure':<{width}} | value | note |\n|{'-' * (width + 2)}|---|---|")
    for name, value, note in rows:
        print(f"| {name:<{width}} | {value} | {note} |")
