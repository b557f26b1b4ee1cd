"""ColumnQuant's 3x3 grid of weight x partial-sum scale granularities on the residual digits
model at W4A4, 2 bits per cell, 2- and 3-bit partial sums, then programming variation over
seeds (docs/columnquant.md §4).

    python scripts/columnquant_study.py       # ~30 min on 2 shared cores; writes
                                              # docs/results/columnquant-study.csv

Each cell: prepare_columnquant (LSQ scales at the cell's granularities, the paper code's init
and gradient scales; --centre: LsqPsum's centre, default none), QAT fine-tuning from the float
model, then: the twin's accuracy and normalized partial-sum MSE, the deployed (Numba engine)
accuracy on the nominal chip, and on chips with log-normal programming variation
sigma in --sigmas over --seeds programming seeds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _study import Rows, acc, qat, setup

from cimsim.models import load_resnet_digits
from cimsim.train.columnquant import (
    GRANULARITIES,
    columnquant_chip,
    deploy_columnquant,
    prepare_columnquant,
    psum_mse,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--psum-bits", nargs="+", type=int, default=[3, 2])
    ap.add_argument("--variation-bits", nargs="+", type=int, default=[3],
                    help="partial-sum bits of the cells that get the variation study")
    ap.add_argument("--sigmas", nargs="+", type=float, default=[0.05, 0.1, 0.2])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--train", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--var-test", type=int, default=100, help="test images per variation seed")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--centre", default="none", choices=("none", "batch", "frozen"),
                    help="LsqPsum centre (none: the chip's calibrated grid; default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("docs/results/columnquant-study.csv"))
    args = ap.parse_args()

    x, y, x_te, y_te = setup(args.train, args.test)
    x_cal = x[:64]
    model = load_resnet_digits()
    rows = Rows(args.out, ["psum_bits", "weight_scale", "psum_scale", "what", "sigma",
                           "value", "std", "elapsed_s"])
    for pb in args.psum_bits:
        for ws in GRANULARITIES:
            for ps in GRANULARITIES:
                def add(what: str, value: float, sigma: float | str = "", std: float | str = "",
                        pb=pb, ws=ws, ps=ps) -> None:  # this cell's settings, bound now
                    rows.add(psum_bits=pb, weight_scale=ws, psum_scale=ps, what=what,
                             sigma=sigma, value=round(value, 5), std=std)

                chip = columnquant_chip(psum_bits=pb, psum_scale=ps)
                prep = prepare_columnquant(model, chip, x_cal, seed=args.seed,
                                           weight_scale=ws, centre=args.centre)
                add("twin_accuracy_before", acc(prep.eval(), x_te, y_te))
                qat(prep, x, y, epochs=args.epochs, lr=args.lr, seed=args.seed)
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
