"""The side measurements of docs/columnquant.md §3-4 on ResNetDigits (W4A4, 2 bits per cell):

1. twin accuracy before training with the chip's calibrated grid vs LsqPsum's frozen centre,
   for min/max and 99th-percentile calibrated ranges (3-bit partial sums, 128 test images);
2. per-layer normalized partial-sum MSE of an untrained twin with 2-bit layer vs column steps;
3. how far two Adam steps (param_groups, lr 1e-3) move the column steps of stage2.1.conv1;
4. twin accuracy before training from the studies' shared start (scripts/_study.py
   digital_start, cached), 3-bit partial sums, column/column, calibrated grid: the paper
   code's weight-scale init (mean |w|) vs deploy's, at 99th- and 99.9th-percentile ranges,
   and with 6-bit partial sums (200 test images).

    python scripts/columnquant_checks.py     # a few minutes on 2 cores
    python scripts/columnquant_checks.py 4   # item 4 only
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from _study import acc, digital_start, setup

from cimsim.models import load_resnet_digits
from cimsim.train.columnquant import columnquant_chip, prepare_columnquant, psum_mse
from cimsim.train.loop import param_groups, train_epoch


def start_init() -> None:
    x, y, x_te, y_te = setup(1348, 200)
    start = digital_start(x, y, x[:64], epochs=6, lr=1e-3, seed=0).float_model()
    print("4. twin accuracy before training from the shared start, column/column")
    for bits, pct in ((3, 99.0), (3, 99.9), (6, 99.9)):
        for init in ("paper", "engine"):
            chip = columnquant_chip(psum_bits=bits)
            chip = chip.replace(adc=chip.adc.replace(percentile=pct))
            prep = prepare_columnquant(start, chip, x[:256], centre="none", init=init)
            print(f"   {bits}-bit percentile {pct:<5} init {init:<6} "
                  f"{acc(prep.eval(), x_te, y_te):5.1f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("item", nargs="?", choices=["4"], help="4: item 4 only")
    if ap.parse_args().item == "4":
        start_init()
        return
    x, y, x_te, y_te = setup(128, 128)
    model = load_resnet_digits()
    print("1. twin accuracy before training, 3-bit partial sums, column/column")
    for stat in ("minmax", "percentile"):
        for centre in ("none", "frozen"):
            chip = columnquant_chip(psum_bits=3)
            chip = chip.replace(adc=chip.adc.replace(calibration_stat=stat, percentile=99.0))
            prep = prepare_columnquant(model, chip, x[:128], centre=centre, init="engine")
            print(f"   {stat:<10} centre {centre:<6} {acc(prep.eval(), x_te, y_te):5.1f} %")
    print("2. per-layer normalized partial-sum MSE, untrained, 2-bit partial sums")
    for ps in ("layer", "column"):
        prep = prepare_columnquant(model, columnquant_chip(psum_bits=2, psum_scale=ps), x[:64])
        r = psum_mse(prep, x_te[:32])
        print(f"   {ps:<7}", ", ".join(f"{k} {v:.3g}" for k, v in r.items()))
    print("3. column steps of stage2.1.conv1 after two Adam steps")
    prep = prepare_columnquant(model, columnquant_chip(psum_bits=2, psum_scale="column"), x[:64])
    twin = dict(prep.twins())["stage2.1.conv1"]
    s0 = twin.adc_step.detach().clone()
    opt = torch.optim.Adam(param_groups(prep, 1e-3))
    train_epoch(prep, (x, y), lambda a, b: F.cross_entropy(prep(a), b), opt, batch_size=64,
                seed=0, epoch=0, progress=False)
    rel = ((twin.adc_step.detach() - s0) / s0).abs().max()
    print(f"   largest relative change {float(rel):.2e}")
    start_init()


if __name__ == "__main__":
    main()
