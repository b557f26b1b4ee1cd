"""BatchNorm calibration after PIM-QAT, outright and relative (docs/pim-qat.md §3 and §4 (e)).

    python scripts/pimqat_bn_study.py --out docs/results/pim-qat-bn-study.csv   # ~25 min, 2 cores

On the start (a) of ``scripts/pimqat_study.py`` (cached under .cache/studies), for each
rows/ADC-bits setting: (c) PIM-QAT fine-tuned on the noise-free bit-serial chip (as that
study's), then deployed on the noise-free chip and on the noisy one (thermal noise sigma and
cubic INL as that study's (d)); each deployment evaluated as it is, after ``calibrate_bn``
outright (the statistics replaced) and after the relative calibration against the twin
(``calibrate_bn(..., reference=twin)``), on the first 128 and on all 1,348 training images;
and the noise-free twin itself calibrated outright on all of them, then deployed noise-free.
Every calibration starts from a fresh deployment (the same seed), so each row is calibrated
before its first noisy evaluation. Accuracy on the first --test test images, Numba engine.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

from _study import Rows, acc, add_noisy_chip_args, digital_start, qat, setup

from cimsim.train import calibrate_bn
from cimsim.train.pimqat import pim_chip, prepare_pimqat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", nargs="+", default=["64/4", "128/4", "64/6"],
                    help="ROWS/ADC_BITS of the bit-serial chip (default 64/4 128/4 64/6)")
    ap.add_argument("--bn", nargs="+", type=int, default=[128, 1348],
                    help="calibration images (the first N training images)")
    ap.add_argument("--train", type=int, default=1348,
                    help="training images of (a) and (c) (default: all 1348)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of (c)")
    ap.add_argument("--epochs-a", type=int, default=6, help="epochs of the digital QAT (a)")
    ap.add_argument("--test", type=int, default=200)
    add_noisy_chip_args(ap)
    ap.add_argument("--out", type=Path, default=Path("docs/results/pim-qat-bn-study.csv"))
    args = ap.parse_args()
    settings = []
    for s in args.settings:
        rows, sep, bits = s.partition("/")
        if not (sep and rows.isdigit() and bits.isdigit()):
            ap.error(f"--settings: {s!r} is not ROWS/ADC_BITS (e.g. 64/4)")
        settings.append((int(rows), int(bits)))

    x, y, x_te, y_te = setup(args.train, args.test)
    x_cal = x[:64]
    prep_a = digital_start(x, y, x_cal, epochs=args.epochs_a, lr=args.lr_a, seed=args.seed,
                           cache=args.cache)
    out = Rows(args.out, ["rows", "adc_bits", "chip", "bn", "bn_images", "accuracy",
                          "elapsed_s"])
    for r, b in settings:
        clean = pim_chip("bit-serial", adc_bits=b, rows=r)
        noisy = pim_chip("bit-serial", adc_bits=b, rows=r, thermal_sigma_lsb=args.sigma,
                         cubic=args.cubic)
        prep = prepare_pimqat(prep_a, clean, x_cal, seed=args.seed)
        qat(prep, x, y, epochs=args.epochs, lr=args.lr, seed=args.seed,
            schedule=args.schedule)

        def add(chip: str, bn: str, n: int, value: float, r=r, b=b) -> None:  # bound now
            out.add(rows=r, adc_bits=b, chip=chip, bn=bn, bn_images=n, accuracy=value)

        for name, chip in (("noise-free", clean), ("noisy", noisy)):
            add(name, "none", 0, acc(prep.deploy(args.seed, chip=chip), x_te, y_te))
            for n in args.bn:
                for how, reference in (("outright", None), ("relative", prep)):
                    sim = prep.deploy(args.seed, chip=chip)
                    calibrate_bn(sim, x[:n], reference=reference)
                    add(name, how, n, acc(sim, x_te, y_te))
        twin = copy.deepcopy(prep)
        calibrate_bn(twin, x[:max(args.bn)])
        add("noise-free", "outright on the twin", max(args.bn),
            acc(twin.deploy(args.seed, chip=clean), x_te, y_te))


if __name__ == "__main__":
    main()
