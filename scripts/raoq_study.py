#!/usr/bin/env python
"""RAOQ's arms on the residual digits model (issue 12): W4A4, fixed full-range ADC.

    python scripts/raoq_study.py            # writes docs/raoq-study.md, .csv, -layers.csv, .png

Arms (Zhang, Chen & Verma, ICML 2024; the protocol of ../docs/papers.md):
(i) 4-bit QAT without ADC (lossless ADC, the ceiling) from the float model, and (i) fine-tuned
once more without ADC (the ceiling of the same training length); every other arm fine-tunes
(i)'s weights on the chip with the ADC: (ii) + ADC (plain QAT with the ADC in the
loop), (iii) + A-shift, (iv) + W-reshape, (v) + BitAug, (vi) A-shift + W-reshape + BitAug,
(vii) as (vi) with ADC-LoRA instead of full fine-tuning. Also "(ii) PTQ": (i)'s weights on the
ADC chip without fine-tuning. Every arm is deployed on the Numba engine (``prepared.deploy``)
and evaluated there on the 449 test images; ``sim.trace`` gives per-layer SQNR and ADC code use.
One thread; about 30 minutes on the shared 2-core build machine with the default settings.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

import cimsim
from cimsim._atomic import write_text
from cimsim.data import load_digits_split
from cimsim.evaluate import accuracy
from cimsim.models import load_resnet_digits
from cimsim.train import prepare
from cimsim.train.methods import Recipe
from cimsim.train.raoq import weight_stats

DOCS = Path(__file__).resolve().parent.parent / "docs"

ARMS: dict[str, Recipe | None] = {
    "(ii) PTQ": None,
    "(ii) +ADC": Recipe(),
    "(iii) +A-shift": Recipe(a_shift=True),
    "(iv) +W-reshape": Recipe(w_reshape=True),
    "(v) +BitAug": Recipe(bitaug=True),
    "(vi) all": Recipe(a_shift=True, w_reshape=True, bitaug=True),
    "(vii) all, ADC-LoRA": Recipe(a_shift=True, w_reshape=True, bitaug=True, lora=True),
}


def raoq_chip(rows: int | None, bits: int | None, k: float) -> cimsim.ChipConfig:
    """W4A4, all 4 input bits in one shot, 4-bit weights in one signed 3-bit cell (one column
    per weight), ``rows`` rows per conversion, a ``bits``-bit full-scale ADC shrunk by ``k``,
    ideal devices and no noise (RAOQ models ADC quantization only). ``bits=None``: the
    lossless 24-bit ADC (arm i)."""
    base = cimsim.load_chip("ideal")
    chip = base.replace(weight_bits=4, input_bits=4, weight_encoding="signed_cell",
                        dac=base.dac.replace(bits=None),
                        device=base.device.replace(bits_per_cell=3))
    if bits is None:
        return chip
    return chip.replace(array=chip.array.replace(n_rows=rows, n_cols=256),
                        adc=chip.adc.replace(bits=bits, range_policy="full_scale",
                                             full_scale_factor=k))


def finetune(model, chip, recipe: Recipe, data, cal, *, epochs: int, lr: float, seed: int):
    chip = recipe.chip(chip)
    prep = prepare(model, chip, cal, seed=seed)
    recipe.fit(prep, lambda x, y: F.cross_entropy(prep(x), y), data, epochs=epochs, lr=lr,
               seed=seed)
    return prep


def evaluate(prep, x, y, n_trace: int) -> tuple[float, pd.DataFrame]:
    sim = prep.deploy()
    acc = accuracy(sim, x, y)
    tr = sim.trace(x[:n_trace])
    return acc, tr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", default="128:5,128:6,256:7",
                    help="rows:bits pairs (default 128:5,128:6,256:7)")
    ap.add_argument("--k", type=float, default=4.0, help="full_scale_factor (default 4)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--kurtosis-weight", type=float, default=0.1)
    ap.add_argument("--trace", type=int, default=32, help="test images traced per arm")
    ap.add_argument("--limit", type=int, default=0, help="training images (0: all; smoke runs)")
    ap.add_argument("--out", type=Path, default=DOCS / "raoq-study")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load_digits_split()
    cal = x_tr[:256]
    data = (x_tr[:args.limit], y_tr[:args.limit]) if args.limit else (x_tr, y_tr)
    model = load_resnet_digits().eval()
    float_acc = accuracy(model, x_te, y_te)
    rows_out: list[dict] = []
    layers_out: list[pd.DataFrame] = []
    wstats: list[dict] = []

    def record(setting: str, arm: str, prep, t0: float) -> None:
        acc, tr = evaluate(prep, x_te, y_te, args.trace)
        row = {"setting": setting, "arm": arm, "accuracy": acc,
               "median_sqnr_db": float(np.median(tr["sqnr_db"].clip(upper=99))),
               "mean_code_use_pct": float(tr["adc_code_use_pct"].mean()),
               "seconds": round(time.perf_counter() - t0, 1)}
        ws = weight_stats(prep)
        row["mean_var_w_int"] = float(np.mean([w["var_w_int"] for w in ws]))
        row["mean_kurtosis"] = float(np.mean([w["kurtosis"] for w in ws]))
        rows_out.append(row)
        layers_out.append(tr.assign(setting=setting, arm=arm))
        wstats.extend({"setting": setting, "arm": arm, **w} for w in ws)
        print(f"{setting:>10} {arm:<22} acc {100 * acc:6.2f} %  SQNR median "
              f"{row['median_sqnr_db']:6.2f} dB  code use {row['mean_code_use_pct']:5.1f} %  "
              f"Var[w] {row['mean_var_w_int']:.2f} K {row['mean_kurtosis']:.2f}  "
              f"({row['seconds']} s)", flush=True)

    t0 = time.perf_counter()
    ceiling = finetune(model, raoq_chip(None, None, args.k), Recipe(), data, cal,
                       epochs=args.epochs, lr=args.lr, seed=0)
    record("lossless", "(i) QAT, no ADC", ceiling, t0)
    qat = ceiling.float_model().eval()
    # the fine-tuned arms train one more round from (i): the same on the lossless chip is the
    # ceiling they compare with
    t0 = time.perf_counter()
    record("lossless", "(i) + the same fine-tuning, no ADC",
           finetune(qat, raoq_chip(None, None, args.k), Recipe(), data, cal,
                    epochs=args.epochs, lr=args.lr, seed=0), t0)
    for setting in args.settings.split(","):
        rows, bits = (int(v) for v in setting.split(":"))
        chip = raoq_chip(rows, bits, args.k)
        name = f"{rows}r/{bits}b"
        for arm, recipe in ARMS.items():
            t0 = time.perf_counter()
            if recipe is None:
                prep = prepare(qat, chip, cal, seed=0).eval()
            else:
                from dataclasses import replace
                recipe = replace(recipe, kurtosis_weight=args.kurtosis_weight,
                                 bitaug_mode="sample")
                prep = finetune(qat, chip, recipe, data, cal, epochs=args.epochs,
                                lr=args.lr, seed=0)
            record(name, arm, prep, t0)
    summary = pd.DataFrame(rows_out)
    layers = pd.concat(layers_out, ignore_index=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary.to_csv(args.out.with_suffix(".csv"), index=False)
    layers.to_csv(args.out.with_name(args.out.name + "-layers.csv"), index=False)
    pd.DataFrame(wstats).to_csv(args.out.with_name(args.out.name + "-weights.csv"), index=False)
    _plot(layers, args.out.with_suffix(".png"))
    elapsed = time.perf_counter() - t_start
    _write_md(summary, layers, pd.DataFrame(wstats), float_acc, args, elapsed,
              args.out.with_suffix(".md"))
    print(f"done in {elapsed / 60:.1f} min")
    return 0


def _plot(layers: pd.DataFrame, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = [s for s in layers["setting"].unique() if s != "lossless"]
    fig, axes = plt.subplots(len(settings), 2, figsize=(14, 3.2 * len(settings)), squeeze=False)
    for i, s in enumerate(settings):
        d = layers[layers["setting"] == s]
        for arm in ("(ii) +ADC", "(iii) +A-shift", "(vi) all"):
            a = d[d["arm"] == arm]
            axes[i, 0].plot(range(len(a)), a["sqnr_db"].clip(upper=60), marker=".", label=arm)
            axes[i, 1].plot(range(len(a)), a["adc_code_use_pct"], marker=".", label=arm)
        axes[i, 0].set_ylabel(f"{s}\nSQNR (dB)")
        axes[i, 1].set_ylabel("ADC code use (%)")
        axes[i, 0].legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("mapped layer (model order)")
    fig.suptitle("RAOQ arms on ResNetDigits (scripts/raoq_study.py)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _write_md(summary, layers, wstats, float_acc, args, elapsed, path: Path) -> None:
    lines = ["# RAOQ arms on the residual digits model", "",
             f"Generated by `python scripts/raoq_study.py` ({time.strftime('%Y-%m-%d')}, one "
             f"thread on the shared 2-core build machine, {elapsed / 60:.1f} min). Protocol and "
             "reading: `docs/papers.md` (RAOQ). Per-layer figures: `raoq-study-layers.csv` "
             "(SQNR, code use per arm and setting), `raoq-study-weights.csv` (Var[w_int], "
             "kurtosis per layer), plot `raoq-study.png`.", "",
             f"Model `ResNetDigits` (float test accuracy {100 * float_acc:.2f} %), W4A4, 4-bit "
             "weights in one signed 3-bit cell, all input bits at once, ideal devices, no "
             f"noise; full-scale ADC shrunk by k = {args.k:g}; rows:bits = "
             f"{args.settings}; every arm {args.epochs} epoch(s) of Adam (lr {args.lr:g}, "
             f"batch 64) on the 1,348 training images; W-reshape K_T = 1.8, "
             f"λ = {args.kurtosis_weight:g}; BitAug S = {{B+1, B+2}}, one sampled per step; "
             "ADC-LoRA rank 4, α = 4. Accuracy: deployed on the Numba engine, 449 test images "
             f"(one image = 0.22 points); SQNR / code use: `sim.trace` on {args.trace} test "
             "images, median / mean over the mapped layers.", "",
             "| setting | arm | accuracy (%) | median SQNR (dB) | mean code use (%) | mean "
             "Var[w_int] | mean kurtosis | s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in summary.itertuples():
        lines.append(f"| {r.setting} | {r.arm} | {100 * r.accuracy:.2f} | "
                     f"{r.median_sqnr_db:.2f} | {r.mean_code_use_pct:.1f} | "
                     f"{r.mean_var_w_int:.2f} | {r.mean_kurtosis:.2f} | {r.seconds} |")
    first = [s for s in summary["setting"].unique() if s != "lossless"][0]
    d = layers[layers["setting"] == first]
    lines += ["", f"## Per layer, {first}: SQNR (dB) / ADC code use (%)", "",
              "| layer | (ii) +ADC | (iii) +A-shift | (vi) all |", "|---|---|---|---|"]
    for layer in d["layer"].unique():
        cells = []
        for arm in ("(ii) +ADC", "(iii) +A-shift", "(vi) all"):
            r = d[(d["layer"] == layer) & (d["arm"] == arm)]
            cells.append(f"{float(r['sqnr_db'].iloc[0]):.1f} / "
                         f"{float(r['adc_code_use_pct'].iloc[0]):.1f}" if len(r) else "")
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    lines.append("")
    write_text(path, "\n".join(lines))  # UTF-8, whole or not at all


if __name__ == "__main__":
    raise SystemExit(main())
