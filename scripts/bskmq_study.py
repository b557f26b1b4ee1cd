#!/usr/bin/env python
"""BS-KMQ on the digits CNN (issue 12): six fitters (+ BS-KMQ without boundary suppression) x
2/3/4 bits, post-training and fine-tuned (levels frozen, and refit every epoch).

    python scripts/bskmq_study.py       # writes docs/bskmq-study.md and docs/bskmq-study.csv

Each of the model's four ReLUs becomes the layer-output NL-ADC fused with it
(``cimsim.train.bskmq.NLActivation``: levels on [0, a_max] fitted to the post-ReLU calibration
values of 256 training images, each layer with the layers before it quantized). Activation
error: per layer, MSE of the levels on the float model's post-ReLU test activations divided
by their variance (NMSE), geometric mean over the four layers. Accuracy: the 449 test images.
Fine-tuning: Adam, lr 1e-3, batch 64, all 1,348 training images, STE through the levels.
One thread; about 10 minutes on the 2-core build machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from cimsim.adc.levels import quantization_mse
from cimsim.data import load_digits_split
from cimsim.evaluate import accuracy
from cimsim.models import load_digits_cnn
from cimsim.train.bskmq import attach_nl_activations, finetune, nl_activations, relu_model

DOCS = Path(__file__).resolve().parent.parent / "docs"

FITTERS: dict[str, tuple[str, dict]] = {
    "uniform": ("uniform", {}),
    "lloyd_max": ("lloyd_max", {}),
    "cdf": ("cdf", {}),
    "kmeans": ("kmeans", {}),
    "kmeans_optimal": ("kmeans_optimal", {}),
    "bs_kmq": ("bs_kmq", {}),
    "bs_kmq, no suppression": ("bs_kmq", {"min_mass": 1.0}),
}


def float_activations(model: nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    """The float model's post-ReLU values at each nn.ReLU, in model order."""
    out: list[np.ndarray] = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: out.append(o.detach().double().numpy()
                                                                   .ravel()))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return out


def nmse(model_nl: nn.Module, acts: list[np.ndarray]) -> list[float]:
    return [quantization_mse(a, act.as_levels()) / float(a.var())
            for a, act in zip(acts, nl_activations(model_nl).values(), strict=True)]


def geo(v: list[float]) -> float:
    return float(np.exp(np.mean(np.log(np.maximum(v, 1e-300)))))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", default="2,3,4")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--out", type=Path, default=DOCS / "bskmq-study")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load_digits_split()
    cal = x_tr[:256]
    model = load_digits_cnn().eval()
    float_acc = accuracy(model, x_te, y_te)
    acts = float_activations(model, x_te)
    rows = []
    for bits in (int(b) for b in args.bits.split(",")):
        for name, (method, params) in FITTERS.items():
            t0 = time.perf_counter()
            nl = attach_nl_activations(model, bits, method, cal, params=params).eval()
            row: dict = {"bits": bits, "fitter": name}
            e = nmse(nl, acts)
            row.update({f"nmse_{i}": v for i, v in enumerate(e)})
            row["nmse_geo"] = geo(e)
            row["ptq_accuracy"] = accuracy(nl, x_te, y_te)
            for refit in (False, True):
                tuned = attach_nl_activations(model, bits, method, cal, params=params)
                hist = finetune(tuned, (x_tr, y_tr), epochs=args.epochs, lr=args.lr,
                                batch_size=64, refit=refit, calibration=cal, seed=0)
                key = "refit" if refit else "frozen"
                row[f"ft_{key}_accuracy"] = accuracy(tuned, x_te, y_te)
                row[f"ft_{key}_loss"] = hist["loss"][-1]
                row[f"ft_{key}_nmse_geo"] = geo(nmse(tuned, float_activations(
                    relu_model(tuned).eval(), x_te)))
            row["seconds"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
            print(f"{bits} b {name:<24} NMSE {row['nmse_geo']:.4g}  PTQ "
                  f"{100 * row['ptq_accuracy']:.2f} %  fine-tuned frozen "
                  f"{100 * row['ft_frozen_accuracy']:.2f} % / refit "
                  f"{100 * row['ft_refit_accuracy']:.2f} %  ({row['seconds']} s)", flush=True)
    df = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out.with_suffix(".csv"), index=False)
    elapsed = time.perf_counter() - t_start
    _write_md(df, float_acc, args, elapsed, args.out.with_suffix(".md"))
    print(f"done in {elapsed / 60:.1f} min")
    return 0


def _write_md(df: pd.DataFrame, float_acc: float, args, elapsed: float, path: Path) -> None:
    lines = ["# BS-KMQ: fitters x bits x boundary suppression, post-training and fine-tuned",
             "", f"Generated by `python scripts/bskmq_study.py` ({time.strftime('%Y-%m-%d')}, "
             f"one thread on the shared 2-core build machine, {elapsed / 60:.1f} min); the "
             "CSV beside it (`bskmq-study.csv`) has the per-layer NMSE. Reading: "
             "`docs/papers.md` (BS-KMQ).", "",
             f"Digits CNN (float test accuracy {100 * float_acc:.2f} %; 449 test images, one "
             "image = 0.22 points); its four ReLUs are NL-ADC activations (levels on "
             "[0, a_max], a_max the calibration maximum). NMSE: geometric mean over the four "
             "layers of MSE / Var of the float model's test activations. Fine-tuned: "
             f"{args.epochs} epochs, Adam lr {args.lr:g}, STE; *frozen* keeps the levels "
             "fitted before fine-tuning, *refit* refits them after every epoch; the NMSE "
             "after fine-tuning is of the final levels on the fine-tuned model's own float "
             "activations. *bs_kmq, no suppression*: `min_mass = 1`, no boundary level is "
             "pinned and no sample suppressed (the ablation).", "",
             "| bits | fitter | NMSE (PTQ) | PTQ acc. (%) | fine-tuned, frozen (%) | "
             "fine-tuned, refit (%) | NMSE after refit FT |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for bits, g in df.groupby("bits", sort=True):
        best = g["nmse_geo"].min()
        for r in g.itertuples():
            n = f"**{r.nmse_geo:.4g}**" if r.nmse_geo == best else f"{r.nmse_geo:.4g}"
            lines.append(f"| {bits} | {r.fitter} | {n} | {100 * r.ptq_accuracy:.2f} | "
                         f"{100 * r.ft_frozen_accuracy:.2f} | {100 * r.ft_refit_accuracy:.2f}"
                         f" | {r.ft_refit_nmse_geo:.4g} |")
    lines.append("")
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
