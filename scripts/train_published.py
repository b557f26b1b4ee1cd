#!/usr/bin/env python
"""Training for the published chips: the digits CNN's accuracy on every chip of
``cimsim/presets/published/`` deployed as it is, and after a short QAT through the twin.

Reproduce the table of docs/training.md §9 (from the repository root)::

    python scripts/train_published.py --epochs 20 --lr 3e-3 --act-calibration mse

For every chip: the float accuracy, ``cimsim.deploy`` of the untrained model (the accuracy
``cimsim demo --chip`` reports, with ``quant.act_calibration`` as given), then ``prepare`` +
``--epochs`` epochs of QAT (cross-entropy on the labels, Adam at ``--lr`` with the twin's
per-scale learning rates, as ``cimsim train --method qat`` runs it; ``--method pim-qat`` for
PIM-QAT's twin), the twin's eval accuracy and ``prepared.deploy()``'s accuracy on the 449 test
images. The published macros are single arrays (``n_tiles = arrays_per_tile = 1`` on
most), smaller than the CNN: they are run with ``array.allow_time_multiplexing = true``
(:func:`on_published_chip`), the setting ``cimsim demo`` asks for.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

import cimsim
from cimsim.config import ChipConfig
from cimsim.data import load_digits_split
from cimsim.errors import ConfigError
from cimsim.evaluate import accuracy
from cimsim.models import load_digits_cnn
from cimsim.train import prepare
from cimsim.train.loop import param_groups, train_epoch
from cimsim.train.pimqat import prepare_pimqat
from cimsim.train.twin import check_chip

PUBLISHED = Path(cimsim.__file__).resolve().parent / "presets" / "published"


def on_published_chip(path: Path | str, act_calibration: str = "max",
                      adc_bits: int | None = None) -> ChipConfig:
    """The published macro with time multiplexing on (one macro holds none of the CNN), the
    activation scales calibrated by ``act_calibration`` (``quant.act_calibration``) and, to
    see what the converter costs, ``adc_bits`` instead of the macro's ADC precision."""
    chip = cimsim.load_chip(path)
    chip = chip.replace(array=chip.array.replace(allow_time_multiplexing=True),
                        quant=chip.quant.replace(act_calibration=act_calibration))
    return chip if adc_bits is None else chip.replace(adc=chip.adc.replace(bits=adc_bits))


def run_chip(path: Path, *, epochs: int, lr: float, seed: int, calibration: int,
             batch_size: int, act_calibration: str = "max", method: str = "qat",
             adc_bits: int | None = None) -> dict:
    """One table row: float, deployed before training, twin and deployed after."""
    chip = on_published_chip(path, act_calibration, adc_bits)
    x_train, y_train, x_test, y_test = load_digits_split()
    x_cal = x_train[:calibration]
    model = load_digits_cnn()
    t0 = time.perf_counter()
    row = {"chip": path.stem, "float": accuracy(model, x_test, y_test, batch_size=None)}
    before = cimsim.deploy(model, chip, x_cal, seed=seed)
    row["before"] = accuracy(before, x_test, y_test, batch_size=256, progress=False)
    if method == "pim-qat":  # its rescaling of the full-scale ADCs' outputs (docs/pim-qat.md)
        prep = prepare_pimqat(model, chip, x_cal, seed=seed)
    else:
        prep = prepare(model, chip, x_cal, seed=seed)
    opt = torch.optim.Adam(param_groups(prep, lr))

    def loss_fn(x, y):
        return F.cross_entropy(prep(x), y)

    for epoch in range(epochs):
        train_epoch(prep, (x_train, y_train), loss_fn, opt, batch_size=batch_size, seed=seed,
                    epoch=epoch, progress=True, desc=f"{path.stem} epoch {epoch + 1}")
    prep.eval()
    row["twin"] = accuracy(prep, x_test, y_test, batch_size=None)
    row["after"] = accuracy(prep.deploy(seed), x_test, y_test, batch_size=256, progress=False)
    row["seconds"] = time.perf_counter() - t0
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="QAT epochs (default 3)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam lr (default 1e-3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibration", type=int, default=256,
                        help="calibration images, as cimsim demo (default 256)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--act-calibration", default="max", choices=("max", "percentile", "mse"),
                        help="quant.act_calibration of every chip (default max, the TOMLs')")
    parser.add_argument("--method", default="qat", choices=("qat", "pim-qat"),
                        help="cimsim train --method (default qat)")
    parser.add_argument("--adc-bits", type=int, default=None,
                        help="replace every chip's ADC precision (default: the macro's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("chips", nargs="*",
                        help="chip names of cimsim/presets/published (default: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", UserWarning)  # time-multiplexing charge notices
    paths = sorted(PUBLISHED.glob("*.toml"))
    if args.chips:
        paths = [p for p in paths if p.stem in args.chips]
    adc = args.adc_bits or "as published"
    print(f"digits CNN, {args.method} {args.epochs} epochs, lr {args.lr}, batch "
          f"{args.batch_size}, seed {args.seed}, {args.calibration} calibration images, "
          f"act_calibration {args.act_calibration}, ADC bits {adc}; accuracy on 449 test "
          "images\n")
    print("| chip | float | deployed, untrained | twin, trained | deployed, trained | s |")
    print("|---|---|---|---|---|---|")
    for path in paths:
        try:
            check_chip(on_published_chip(path))
        except ConfigError as exc:  # block-FP inputs: deploy simulates them, the twin does not
            print(f"| {path.stem} | not trained: {exc} | | | | |", flush=True)
            continue
        r = run_chip(path, epochs=args.epochs, lr=args.lr, seed=args.seed,
                     calibration=args.calibration, batch_size=args.batch_size,
                     act_calibration=args.act_calibration, method=args.method,
                     adc_bits=args.adc_bits)
        print(f"| {r['chip']} | {100 * r['float']:.1f} % | {100 * r['before']:.1f} % | "
              f"{100 * r['twin']:.1f} % | **{100 * r['after']:.1f} %** | {r['seconds']:.0f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
