"""The CSV files of the benchmarks, in ``benchmarks/results/`` (ignored by git)."""

from __future__ import annotations

import csv
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def write_rows(name: str, rows: list[dict]) -> Path:
    """Write ``rows`` (dicts with the same keys) to ``results/<name>.csv``; its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path
