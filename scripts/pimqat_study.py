"""PIM-QAT arms (a)-(f) on the residual digits model (docs/pim-qat.md §4).

    python scripts/pimqat_study.py            # ~25 min on 2 shared cores; writes
                                              # docs/results/pim-qat-study.csv

(a) digital W4A4 QAT (lossless conversions), --epochs-a epochs over the --train images, trained
once and cached under .cache/studies (the shared start of every arm); (b) (a) deployed on the
PIM chip; (c) PIM-QAT (forward and backward rescaling) fine-tuned from (a) for --epochs epochs,
deployed; (d) (c) on the chip with thermal noise sigma = 0.5 LSB and a cubic non-linearity;
(e) (d) + BatchNorm calibration on the noisy chip; (f) adjusted precision (fine-tuned from (a)
with a (b-1)-bit ADC), deployed on the noisy b-bit chip + BatchNorm calibration; (g) PIM-QAT
fine-tuned from (a) on the noisy chip itself (its noise injected, its non-linearity in the
twin's forward), deployed on it; (h) (g) + BatchNorm calibration. Every accuracy is the Numba
engine's (SimModel) on the first --test test images, except (a), the lossless twin. --arms
picks the arms (default b-f; (d) and (e) need (c)).

    python scripts/pimqat_study.py --decompositions bit-serial --rows 64 --adc-bits 4 5 6 \
        --epochs 3 --test 200 --arms c d e g h --out docs/results/pim-qat-nonlinear-study.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _study import Rows, acc, add_noisy_chip_args, digital_start, qat, setup

from cimsim.models import load_resnet_digits
from cimsim.train import calibrate_bn
from cimsim.train.pimqat import pim_chip, prepare_pimqat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decompositions", nargs="+", default=["bit-serial", "native"])
    ap.add_argument("--rows", nargs="+", type=int, default=[64, 128])
    ap.add_argument("--adc-bits", nargs="+", type=int, default=[3, 4, 5, 6])
    ap.add_argument("--train", type=int, default=1348,
                    help="training images per epoch (default: all 1348)")
    ap.add_argument("--epochs", type=int, default=1, help="epochs of (c) and (f)")
    ap.add_argument("--epochs-a", type=int, default=6, help="epochs of the digital QAT (a)")
    ap.add_argument("--train-a", type=int, default=1348, help="training images of (a)")
    ap.add_argument("--test", type=int, default=300)
    ap.add_argument("--bn", type=int, default=128, help="BatchNorm calibration images")
    add_noisy_chip_args(ap)
    ap.add_argument("--out", type=Path, default=Path("docs/results/pim-qat-study.csv"))
    ap.add_argument("--arms", nargs="+", default=list("bcdef"), choices=list("bcdefgh"),
                    help="arms to run (a is the shared start; d and e need c, h needs g)")
    args = ap.parse_args()
    arms = set(args.arms)
    if arms & set("de") and "c" not in arms or "h" in arms and "g" not in arms:
        ap.error("--arms: d and e need c, h needs g")

    x, y, x_te, y_te = setup(max(args.train, args.bn, args.train_a), args.test)
    x_a, y_a = x[:args.train_a], y[:args.train_a]
    x_cal, x_bn = x[:64], x[:args.bn]
    x, y = x[:args.train], y[:args.train]
    model = load_resnet_digits()
    prep_a = digital_start(x_a, y_a, x_cal, epochs=args.epochs_a, lr=args.lr_a, seed=args.seed,
                           cache=args.cache)
    rows = Rows(args.out, ["decomposition", "rows", "adc_bits", "arm", "accuracy", "elapsed_s"])
    rows.add(decomposition="float", rows="", adc_bits="", arm="float",
             accuracy=acc(model, x_te, y_te))
    rows.add(decomposition="digital", rows="", adc_bits="", arm="a",
             accuracy=acc(prep_a, x_te, y_te))
    for dec in args.decompositions:
        for r in args.rows:
            for b in args.adc_bits:
                chip = pim_chip(dec, adc_bits=b, rows=r)
                noisy = pim_chip(dec, adc_bits=b, rows=r, thermal_sigma_lsb=args.sigma,
                                 cubic=args.cubic)

                def add(arm: str, value: float, dec=dec, r=r, b=b) -> None:  # bound now
                    rows.add(decomposition=dec, rows=r, adc_bits=b, arm=arm, accuracy=value)

                if "b" in arms:
                    add("b", acc(prep_a.deploy(args.seed, chip=chip), x_te, y_te))
                if "c" in arms:
                    prep_c = prepare_pimqat(prep_a, chip, x_cal, seed=args.seed)
                    qat(prep_c, x, y, epochs=args.epochs, lr=args.lr, seed=args.seed,
                        schedule=args.schedule)
                    add("c", acc(prep_c.deploy(args.seed, chip=chip), x_te, y_te))
                if arms & set("de"):
                    sim = prep_c.deploy(args.seed, chip=noisy)
                    add("d", acc(sim, x_te, y_te))
                    calibrate_bn(sim, x_bn)
                    add("e", acc(sim, x_te, y_te))
                if "f" in arms:
                    prep_f = prepare_pimqat(prep_a, chip, x_cal, seed=args.seed,
                                            train_adc_bits=max(b - 1, 1))
                    qat(prep_f, x, y, epochs=args.epochs, lr=args.lr, seed=args.seed,
                        schedule=args.schedule)
                    sim = prep_f.deploy(args.seed, chip=noisy)
                    calibrate_bn(sim, x_bn)
                    add("f", acc(sim, x_te, y_te))
                if "g" in arms:  # trained through the noisy chip's noise and non-linearity
                    prep_g = prepare_pimqat(prep_a, noisy, x_cal, seed=args.seed)
                    qat(prep_g, x, y, epochs=args.epochs, lr=args.lr, seed=args.seed,
                        schedule=args.schedule)
                    sim = prep_g.deploy(args.seed)
                    add("g", acc(sim, x_te, y_te))
                    if "h" in arms:
                        calibrate_bn(sim, x_bn)
                        add("h", acc(sim, x_te, y_te))


if __name__ == "__main__":
    main()
