"""ColumnQuant's 3x3 grid of weight x partial-sum scale granularities on the residual digits
model at W4A4, 2 bits per cell, 2- and 3-bit partial sums, then programming variation over
seeds (docs/columnquant.md §4).

    python scripts/columnquant_study.py       # ~25 min on 2 shared cores; writes
                                              # docs/results/columnquant-study.csv
    python scripts/columnquant_study.py --decomposition ternary --cells column/column \
        layer/layer array/array --out docs/results/columnquant-study-ternary.csv

Every cell starts from the same trained model: ResNetDigits QAT-trained at W4A4 on a lossless
chip (scripts/_study.py digital_start, trained once and cached under .cache/studies). Each
cell: prepare_columnquant (LSQ scales at the cell's granularities from deploy's scales, --init;
the paper code's gradient scales; the ADC ranges calibrated on the start's partial sums before
fine-tuning; --centre: LsqPsum's centre, default none), --epochs epochs of QAT fine-tuning over
--train images, then: the
twin's accuracy and normalized partial-sum MSE, the deployed (Numba engine) accuracy on the
nominal chip, and on chips with log-normal programming variation sigma in --sigmas over
--seeds programming seeds. --decomposition: offset (option 1, the paper code's
two's-complement style), differential (option 2) or ternary (option 3, binary cells).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _study import CACHE, Rows, acc, digital_start, qat, setup

from cimsim.train.columnquant import (
    DECOMPOSITIONS,
    GRANULARITIES,
    columnquant_chip,
    deploy_columnquant,
    prepare_columnquant,
    psum_mse,
)
from cimsim.train.loop import SCHEDULES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--psum-bits", nargs="+", type=int, default=[3, 2])
    ap.add_argument("--variation-bits", nargs="+", type=int, default=[3],
                    help="partial-sum bits of the cells that get the variation study")
    ap.add_argument("--sigmas", nargs="+", type=float, default=[0.05, 0.1, 0.2])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--train", type=int, default=1348,
                    help="training images per epoch (default: all 1348)")
    ap.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs per cell")
    ap.add_argument("--epochs-a", type=int, default=6, help="epochs of the shared start")
    ap.add_argument("--train-a", type=int, default=1348, help="training images of the start")
    ap.add_argument("--lr-a", type=float, default=1e-3,
                    help="Adam rate of the shared start (default 1e-3; --lr is the cells')")
    ap.add_argument("--test", type=int, default=300)
    ap.add_argument("--var-test", type=int, default=200, help="test images per variation seed")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--schedule", default="constant", choices=SCHEDULES,
                    help="the fine-tuning rate over the epochs (default constant; "
                         "docs/columnquant.md §4: at 1e-3 a constant rate climbs back out)")
    ap.add_argument("--centre", default="none", choices=("none", "batch", "frozen"),
                    help="LsqPsum centre (default none: the chip's calibrated grid)")
    ap.add_argument("--init", default="engine", choices=("engine", "paper"),
                    help="weight scales from deploy's (default; the ADC ranges are calibrated "
                         "for them) or the paper code's mean |w|")
    ap.add_argument("--decomposition", default="offset", choices=DECOMPOSITIONS,
                    help="weight decomposition (default offset: option 1)")
    ap.add_argument("--cells", nargs="+", default=None,
                    help="WEIGHTS/PSUMS cells to run, e.g. column/column (default: all 9)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=CACHE, help="where the start is cached")
    ap.add_argument("--out", type=Path, default=Path("docs/results/columnquant-study.csv"))
    args = ap.parse_args()

    x, y, x_te, y_te = setup(max(args.train, args.train_a), args.test)
    x_cal = x[:64]
    start = digital_start(x[:args.train_a], y[:args.train_a], x_cal, epochs=args.epochs_a,
                          lr=args.lr_a, seed=args.seed, cache=args.cache).float_model()
    cells = [(w, p) for w in GRANULARITIES for p in GRANULARITIES]
    if args.cells:
        cells = [tuple(c.split("/")) for c in args.cells]
    rows = Rows(args.out, ["decomposition", "psum_bits", "weight_scale", "psum_scale", "what",
                           "sigma", "value", "std", "elapsed_s"])
    dec = args.decomposition
    for pb in args.psum_bits:
        for ws, ps in cells:
            def add(what: str, value: float, sigma: float | str = "", std: float | str = "",
                    pb=pb, ws=ws, ps=ps) -> None:  # this cell's settings, bound now
                rows.add(decomposition=dec, psum_bits=pb, weight_scale=ws, psum_scale=ps,
                         what=what, sigma=sigma, value=round(value, 5), std=std)

            chip = columnquant_chip(psum_bits=pb, psum_scale=ps, encoding=dec)
            prep = prepare_columnquant(start, chip, x[:256], seed=args.seed,
                                       weight_scale=ws, centre=args.centre, init=args.init)
            add("twin_accuracy_before", acc(prep.eval(), x_te, y_te))
            qat(prep, x[:args.train], y[:args.train], epochs=args.epochs, lr=args.lr,
                seed=args.seed, schedule=args.schedule)
            add("psum_nmse", psum_mse(prep, x_te[:64])["mean"])
            add("twin_accuracy", acc(prep, x_te, y_te))
            add("deployed_accuracy", acc(deploy_columnquant(prep, x_cal, args.seed),
                                         x_te, y_te))
            if pb not in args.variation_bits:
                continue
            xv, yv = x_te[:args.var_test], y_te[:args.var_test]
            for sigma in args.sigmas:
                dev = chip.device.replace(variation="lognormal", variation_sigma=sigma)
                accs = [acc(prep.deploy(s, chip=chip.replace(device=dev)), xv, yv)
                        for s in range(args.seeds)]
                add("variation_accuracy", float(np.mean(accs)), sigma,
                    round(float(np.std(accs)), 3))


if __name__ == "__main__":
    main()
