#!/usr/bin/env python
"""BS-KMQ on the digits CNN (issue 12): six fitters (+ BS-KMQ without boundary suppression) x
2/3/4-bit NL-ADC, the activation error and post-training accuracy, and fine-tuning on the chip
at low-bit weights (levels frozen, and refit every epoch). About 15 minutes on the shared
2-core build machine (one thread).

    python scripts/bskmq_study.py       # writes docs/bskmq-study.md and docs/bskmq-study.csv

Two parts (``docs/bskmq-study.md`` says which question each answers):

1. **Float weights** (``cimsim.train.bskmq.NLActivation``): the model's four ReLUs become the
   NL-ADC activation, levels on [0, a_max] fitted to the post-ReLU values of 256 training
   images (each layer with the layers before it quantized), the weights in float. Activation
   error: per layer, MSE of the levels on the float model's post-ReLU test activations / their
   variance (NMSE), geometric mean over the four layers; post-training accuracy.
2. **On the chip** (``cimsim.train.bskmq.prepare_bskmq`` / ``finetune_chip``): the twin of an
   ideal chip with W-bit weights (differential, the W-1 magnitude bits in one cell), 8-bit
   inputs driven at once, 512-row arrays (the whole dot product of every layer in one
   conversion) and a b-bit ramp NL-ADC at the layer output fused with each ReLU, levels fitted
   per layer by ``cimsim.deploy``'s function on the activations the chip computes for 256
   training images (``refit_chip_levels``: layer by layer, the layers before it quantized).
   Post-training: the chip as deployed (``prepared.deploy()``); activation NMSE: per fused layer
   on the test inputs the chip feeds it, against the ReLU of the chip's own pre-activation,
   geometric mean over the four layers. Fine-tuned: 3 epochs of QAT through the chip (Adam lr
   1e-3, batch 64, all 1,348 training images, STE through the levels), levels frozen or refit
   after every epoch; accuracy of the deployed fine-tuned chip (``prepared.deploy()``).

Accuracy: the 449 test images. One thread.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

import cimsim
from cimsim._atomic import write_text
from cimsim.adc.levels import quantization_mse
from cimsim.data import load_digits_split
from cimsim.evaluate import accuracy
from cimsim.models import load_digits_cnn
from cimsim.train.bskmq import (
    activation_nmse,
    attach_nl_activations,
    finetune_chip,
    fused_twins,
    nl_activations,
    prepare_bskmq,
    refit_chip_levels,
)
from cimsim.train.twin import PreparedModel

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


def nl_chip(weight_bits: int, bits: int, level_fit: str) -> cimsim.ChipConfig:
    """Ideal cells, one conversion per output, a fused ``bits``-bit ramp NL-ADC per layer."""
    ideal = cimsim.load_chip("ideal")
    return ideal.replace(
        name=f"nl-adc-w{weight_bits}-b{bits}", weight_bits=weight_bits,
        dac=ideal.dac.replace(bits=None),
        device=ideal.device.replace(bits_per_cell=weight_bits - 1),
        array=ideal.array.replace(n_rows=512, n_cols=512),
        adc=ideal.adc.replace(kind="ramp", bits=bits, placement="layer_output",
                              fuse_activation=True, range_policy="calibrated",
                              calibration_granularity="layer", level_fit=level_fit))


def chip_twin(model: nn.Module, chip: cimsim.ChipConfig, cal: torch.Tensor,
              params: dict) -> PreparedModel:
    """The twin of ``chip`` with every fused layer's levels fitted on the chip's own
    activations (layer by layer, the layers before it quantized), with ``params``: the same
    procedure for every fitter, with or without boundary suppression (deploy's float-pass fit
    takes no fitter parameters)."""
    # each fitter on purpose (no warning that it is not BS-KMQ's)
    prepared = prepare_bskmq(model, chip, cal, level_fit=chip.adc.level_fit)
    refit_chip_levels(prepared, cal, params=params)
    return prepared


def chip_nmse(prepared: PreparedModel, x: torch.Tensor) -> list[float]:
    """Per fused layer: the activation NMSE on the inputs the chip feeds it for ``x``."""
    seen: dict[str, list[np.ndarray]] = {}
    twins = fused_twins(prepared)
    hooks = [t.register_forward_pre_hook(
        lambda _m, args, n=n: seen.setdefault(n, []).append(args[0].detach().double().numpy()))
        for n, t in twins.items()]
    prepared.eval()
    with torch.no_grad():
        prepared(x)
    for h in hooks:
        h.remove()
    return [activation_nmse(t, np.concatenate(seen[n])) for n, t in twins.items()]


def accuracies(prepared: PreparedModel, x: torch.Tensor, y: torch.Tensor
               ) -> tuple[float, float]:
    """Accuracy of the deployed chip and of the (float32) twin in eval: equal up to float
    ties in the input quantization (a pixel of 8/16 at s_x = 1/255 is code 127.5)."""
    return accuracy(prepared.deploy(), x, y), accuracy(prepared.eval(), x, y)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", default="2,3,4")
    ap.add_argument("--weights", default="4,5,6", help="weight bits of the chips")
    ap.add_argument("--fitters", default=";".join(FITTERS),
                    help="';'-separated fitters (rows of FITTERS) fine-tuned at the lowest "
                         "weight bits")
    ap.add_argument("--fitters-other", default=";".join(FITTERS),
                    help="';'-separated fitters fine-tuned at the other weight bits")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--limit", type=int, default=0, help="training images (0: all)")
    ap.add_argument("--out", type=Path, default=DOCS / "bskmq-study")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load_digits_split()
    if args.limit:
        x_tr, y_tr = x_tr[:args.limit], y_tr[:args.limit]
    cal = x_tr[:256]
    model = load_digits_cnn().eval()
    float_acc = accuracy(model, x_te, y_te)
    acts = float_activations(model, x_te)
    bits_list = [int(b) for b in args.bits.split(",")]
    weights = [int(w) for w in args.weights.split(",")]
    ft_fitters = {w: [f.strip() for f in (args.fitters if w == min(weights)
                                          else args.fitters_other).split(";")]
                  for w in weights}
    unknown = sorted({f for fs in ft_fitters.values() for f in fs} - set(FITTERS))
    if unknown:
        ap.error(f"--fitters: {unknown} not in {list(FITTERS)}")
    rows = []
    for bits in bits_list:
        for name, (method, params) in FITTERS.items():
            # 1. float weights: the activation quantizer alone
            t0 = time.perf_counter()
            nl = attach_nl_activations(model, bits, method, cal, params=params).eval()
            e = nmse(nl, acts)
            row: dict = {"weights": "float", "bits": bits, "fitter": name,
                         **{f"nmse_{i}": v for i, v in enumerate(e)}, "nmse_geo": geo(e),
                         "ptq_accuracy": accuracy(nl, x_te, y_te)}
            row["seconds"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
            print(f"{bits} b {name:<24} float weights: NMSE {row['nmse_geo']:.4g}  PTQ "
                  f"{100 * row['ptq_accuracy']:.2f} %", flush=True)
            # 2. on the chip
            for w in weights:
                t0 = time.perf_counter()
                chip = nl_chip(w, bits, method)
                prepared = chip_twin(model, chip, cal, params)
                e = chip_nmse(prepared, x_te)
                row = {"weights": w, "bits": bits, "fitter": name,
                       **{f"nmse_{i}": v for i, v in enumerate(e)}, "nmse_geo": geo(e)}
                row["ptq_accuracy"], row["ptq_twin_accuracy"] = accuracies(prepared, x_te,
                                                                           y_te)
                if name in ft_fitters[w]:
                    for refit in (False, True):
                        tuned = chip_twin(model, chip, cal, params)
                        hist = finetune_chip(tuned, (x_tr, y_tr), epochs=args.epochs,
                                             lr=args.lr, batch_size=64, refit=refit,
                                             calibration=cal, params=params, seed=0)
                        key = "refit" if refit else "frozen"
                        row[f"ft_{key}_accuracy"], row[f"ft_{key}_twin_accuracy"] = \
                            accuracies(tuned, x_te, y_te)
                        row[f"ft_{key}_loss"] = hist["loss"][-1]
                        row[f"ft_{key}_nmse_geo"] = geo(chip_nmse(tuned, x_te))
                row["seconds"] = round(time.perf_counter() - t0, 1)
                rows.append(row)
                ft = (f"  fine-tuned frozen {100 * row['ft_frozen_accuracy']:.2f} % / refit "
                      f"{100 * row['ft_refit_accuracy']:.2f} %" if "ft_frozen_accuracy" in row
                      else "")
                print(f"{bits} b {name:<24} W{w} chip: NMSE {row['nmse_geo']:.4g}  PTQ "
                      f"{100 * row['ptq_accuracy']:.2f} %{ft}  ({row['seconds']} s)",
                      flush=True)
    df = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out.with_suffix(".csv"), index=False)
    elapsed = time.perf_counter() - t_start
    _write_md(df, float_acc, args, elapsed, args.out.with_suffix(".md"))
    print(f"done in {elapsed / 60:.1f} min")
    return 0


def _pct(v: float) -> str:
    return "—" if pd.isna(v) else f"{100 * v:.2f}"


def _write_md(df: pd.DataFrame, float_acc: float, args, elapsed: float, path: Path) -> None:
    cmd = "`python scripts/bskmq_study.py`"
    lines = [
        "# BS-KMQ: fitters x bits x boundary suppression, post-training and fine-tuned on "
        "the chip", "",
        f"Generated by {cmd} ({time.strftime('%Y-%m-%d')}, one thread on the shared 2-core "
        f"build machine, {elapsed / 60:.1f} min); the CSV beside it (`bskmq-study.csv`) has "
        "the per-layer NMSE. Reading: `docs/papers.md` (BS-KMQ).", "",
        f"Digits CNN (float test accuracy {100 * float_acc:.2f} %; 449 test images, one "
        "image = 0.22 points); its four ReLUs follow a mapped layer each. *bs_kmq, no "
        "suppression*: `min_mass = 1`, no boundary level pinned and no sample suppressed "
        "(the ablation).", "",
        "## 1. The activation quantizer alone (float weights)", "",
        f"Regenerate: {cmd}. `cimsim.train.bskmq.NLActivation` replaces each ReLU (levels on "
        "[0, a_max], a_max the calibration maximum, fitted on 256 training images with the "
        "layers before quantized); the weights stay float. NMSE: geometric mean over the four "
        "layers of MSE / Var of the float model's post-ReLU test activations. This isolates "
        "the fitters' activation error; it is not the chip's forward.", "",
        "| bits | fitter | NMSE | PTQ acc. (%) |", "|---:|---|---:|---:|"]
    flt = df[df["weights"].astype(str) == "float"]
    for bits, g in flt.groupby("bits", sort=True):
        best = g["nmse_geo"].min()
        for r in g.itertuples():
            n = f"**{r.nmse_geo:.4g}**" if r.nmse_geo == best else f"{r.nmse_geo:.4g}"
            lines.append(f"| {bits} | {r.fitter} | {n} | {_pct(r.ptq_accuracy)} |")
    lines += [
        "", "## 2. On the chip: low-bit weights, the NL-ADC fused with the ReLU", "",
        f"Regenerate: {cmd}. The training twin of an ideal chip (`cimsim.train.bskmq."
        "prepare_bskmq`): W-bit weights (differential; the W-1 magnitude bits in one cell, "
        "since a layer-output ADC needs the whole dot product in one conversion column), 8-bit "
        "inputs driven at once, 512-row arrays, a b-bit ramp NL-ADC at every layer output, "
        "fused with the ReLU after it (the logits layer's unfused). Levels fitted per layer "
        "by `cimsim.deploy`'s function on the activations the chip itself computes for 256 "
        "training images (`refit_chip_levels`: layer by layer, the layers before it "
        "quantized; the same procedure for every row, the ablation's parameters included). "
        "*PTQ*: the deployed chip. *NMSE*: "
        "per fused layer on the test inputs the chip feeds it, against the ReLU of the chip's "
        "own pre-activation (clipping above a_max counted), geometric mean over the four "
        f"layers. *Fine-tuned*: {args.epochs} epochs of QAT through the chip (Adam lr "
        f"{args.lr:g}, batch 64, straight-through estimator through the levels: gradient 1 on "
        "[0, a_max]), levels *frozen* or *refit* after every epoch on the current model's "
        "pre-activations; the accuracy is the deployed fine-tuned chip's "
        "(`prepared.deploy()`; the float32 twin's, in the CSV, differs by at most a few "
        "images: float ties in the input quantization). NMSE after FT: the refit run's. "
        "— : not fine-tuned.", "",
        "| W | bits | fitter | NMSE (PTQ) | PTQ acc. (%) | FT frozen (%) | FT refit (%) | "
        "NMSE after refit FT |", "|---:|---:|---|---:|---:|---:|---:|---:|"]
    chip = df[df["weights"].astype(str) != "float"]
    for (w, bits), g in chip.groupby([chip["weights"].astype(int), "bits"], sort=True):
        best = g["nmse_geo"].min()
        for r in g.itertuples():
            n = f"**{r.nmse_geo:.4g}**" if r.nmse_geo == best else f"{r.nmse_geo:.4g}"
            after = getattr(r, "ft_refit_nmse_geo", float("nan"))
            lines.append(f"| {w} | {bits} | {r.fitter} | {n} | {_pct(r.ptq_accuracy)} | "
                         f"{_pct(getattr(r, 'ft_frozen_accuracy', float('nan')))} | "
                         f"{_pct(getattr(r, 'ft_refit_accuracy', float('nan')))} | "
                         f"{'—' if pd.isna(after) else f'{after:.4g}'} |")
    lines.append("")
    write_text(path, "\n".join(lines))  # UTF-8, whole or not at all


if __name__ == "__main__":
    raise SystemExit(main())
