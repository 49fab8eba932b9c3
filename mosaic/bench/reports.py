"""What the benchmarks' reports share: the command that made them, markdown tables, rounded CSV.

``speed``, ``parity`` and ``quality`` each write a CSV (one row per measurement or run, with its
exact parameters) and a markdown table under ``benchmarks/``; these helpers keep their formats alike.
"""
from __future__ import annotations

import csv
import io
import sys
from typing import Any, Iterable, Sequence

RULES = {"l": "---", "r": "---:", "c": ":-:"}  # markdown column alignment: left, right, centre


def command_line(subcommand: str, argv: Sequence[str] | None) -> str:
    """``python -m mosaic.bench SUBCOMMAND ARGS`` as typed (``argv`` None: this process's arguments)."""
    return " ".join([f"python -m mosaic.bench {subcommand}", *(sys.argv[1:] if argv is None else argv)])


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str) -> list[str]:
    """The lines of a markdown table; ``align`` holds one of l/r/c per column."""
    if len(align) != len(header):
        raise ValueError(f"align {align!r} has {len(align)} letters for {len(header)} columns")
    return ["| " + " | ".join(header) + " |", "|" + "|".join(RULES[a] for a in align) + "|",
            *["| " + " | ".join(r) + " |" for r in rows]]


def csv_text(rows: list[dict[str, Any]], columns: Sequence[str], digits: int = 4) -> str:
    """CSV of ``rows`` with exactly ``columns`` (others ignored), floats rounded to ``digits``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: round(v, digits) if isinstance(v, float) else v for k, v in r.items()})
    return buf.getvalue()


__all__ = ["command_line", "markdown_table", "csv_text"]
