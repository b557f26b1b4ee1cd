"""Markdown tables of the PIM-QAT and ColumnQuant studies from their CSVs (docs/pim-qat.md §4,
docs/columnquant.md §4, docs/papers.md); a study run in pieces side by side (one CSV each) is
merged.

    python scripts/study_tables.py ['docs/results/pim-qat-study*.csv']
        ['docs/results/columnquant-study*.csv']
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import pandas as pd


def _read(paths: list[Path]) -> pd.DataFrame:
    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


def pimqat(paths: list[Path]) -> str:
    df = _read(paths)
    head = df[df.arm.isin(["float", "a"])].drop_duplicates("arm").set_index("arm").accuracy
    grid = df[~df.arm.isin(["float", "a"])].pivot_table(
        index=["decomposition", "rows", "adc_bits"], columns="arm", values="accuracy")
    out = [f"float {head.get('float', float('nan')):.1f} %, (a) digital W4A4 QAT "
           f"{head.get('a', float('nan')):.1f} %", "",
           "| decomposition | rows | ADC bits | " + " | ".join(f"({c})" for c in grid.columns)
           + " |", "|---|---|---|" + "---|" * len(grid.columns)]
    for (dec, rows, bits), r in grid.iterrows():
        out.append(f"| {dec} | {int(rows)} | {int(bits)} | "
                   + " | ".join(f"{v:.1f}" for v in r.values) + " |")
    return "\n".join(out)


def columnquant(paths: list[Path]) -> str:
    df = _read(paths)
    if "decomposition" not in df:
        df["decomposition"] = "offset"
    out = []
    order = {"offset": 0, "differential": 1, "ternary": 2}
    groups = sorted(df.groupby(["decomposition", "psum_bits"], sort=False),
                    key=lambda g: (order.get(g[0][0], 3), -g[0][1]))
    for (dec, pb), d in groups:
        base = d[d.what != "variation_accuracy"].pivot_table(
            index=["weight_scale", "psum_scale"], columns="what", values="value", sort=False)
        var = d[d.what == "variation_accuracy"]
        if var.empty:
            var = pd.DataFrame(index=base.index)
        else:
            cell = var.value.map("{:.1f}".format) + " ± " + var["std"].map("{:.1f}".format)
            var = var.assign(cell=cell).pivot_table(
                index=["weight_scale", "psum_scale"], columns="sigma", values="cell",
                aggfunc="first", sort=False)
        cols = [c for c in ("twin_accuracy_before", "twin_accuracy", "deployed_accuracy",
                            "psum_nmse") if c in base.columns]
        name = {"offset": "option 1, offset", "differential": "option 2, differential",
                "ternary": "option 3, ternary"}.get(dec, dec)
        out += [f"**{pb}-bit partial sums, {name}**", "",
                "| weights | psums | " + " | ".join(cols)
                + "".join(f" | σ = {s}" for s in var.columns) + " |",
                "|---|---|" + "---|" * (len(cols) + len(var.columns))]
        for (w, p), r in base.iterrows():
            v = var.loc[(w, p)].tolist() if (w, p) in var.index else []
            out.append(f"| {w} | {p} | " + " | ".join(
                f"{r[c]:.3f}" if c == "psum_nmse" else f"{r[c]:.1f}" for c in cols)
                + "".join(f" | {x}" for x in v) + " |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pimqat", nargs="?", default="docs/results/pim-qat-study*.csv",
                    help="glob of the PIM-QAT study's CSVs (default: %(default)s)")
    ap.add_argument("columnquant", nargs="?", default="docs/results/columnquant-study*.csv",
                    help="glob of the ColumnQuant study's CSVs (default: %(default)s)")
    args = ap.parse_args()
    for pattern, fn in ((args.pimqat, pimqat), (args.columnquant, columnquant)):
        paths = [Path(p) for p in sorted(glob.glob(pattern))]
        if paths:
            print(f"## {', '.join(map(str, paths))}\n\n{fn(paths)}\n")
