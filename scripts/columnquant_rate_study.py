"""ColumnQuant fine-tuning over epochs at two Adam rates, constant and cosine-annealed, over
training seeds: the twin's test accuracy after every epoch (docs/columnquant.md §4).

    python scripts/columnquant_rate_study.py     # ~15 min on one core; writes
                                                 # docs/results/columnquant-rate-study.csv

Every run starts from the study's shared start (scripts/_study.py digital_start, cached) and
prepares one cell of the grid as scripts/columnquant_study.py does (deploy's weight scales,
the ADC ranges calibrated on the start's partial sums); the seed changes only the minibatch
order of the fine-tuning, so the spread over seeds is what the order alone does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from _study import CACHE, Rows, acc, digital_start, qat, setup

from cimsim.train.columnquant import columnquant_chip, prepare_columnquant
from cimsim.train.loop import SCHEDULES


def table(path: Path) -> str:
    """The CSV as Markdown tables: per rate and schedule, the twin's accuracy after each epoch,
    mean ± standard deviation over the seeds (min-max), then each epoch's mean training loss."""
    frame = pd.read_csv(path)
    epochs = sorted(frame["epoch"].unique())
    head = ("| rate | schedule | seeds | " + " | ".join(f"epoch {e}" for e in epochs) + " |",
            "|---|---|---:|" + "---:|" * len(epochs))
    acc_lines, loss_lines = list(head), list(head)
    for (lr, schedule), g in frame.groupby(["lr", "schedule"], sort=False):
        by = g.groupby("epoch")["twin_accuracy"]
        mean, std, lo, hi = by.mean(), by.std(ddof=0), by.min(), by.max()
        loss = g.groupby("epoch")["train_loss"].mean()
        row = f"| {lr:g} | {schedule} | {g['seed'].nunique()} | "
        # (an epoch a run cut short has no row; epoch 0 has no loss)
        acc = [f"{mean[e]:.1f} ± {std[e]:.1f} ({lo[e]:.1f}–{hi[e]:.1f})" if e in mean.index
               else "" for e in epochs]
        losses = [f"{loss[e]:.3f}" if e in loss.index and pd.notna(loss[e]) else ""
                  for e in epochs]
        acc_lines.append(row + " | ".join(acc) + " |")
        loss_lines.append(row + " | ".join(losses) + " |")
    return "\n".join(["Twin accuracy (%) after each epoch:", "", *acc_lines, "",
                      "Mean training loss of each epoch (cross-entropy, mean over the seeds):",
                      "", *loss_lines])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--psum-bits", type=int, default=3)
    ap.add_argument("--cell", default="column/column", help="WEIGHTS/PSUMS scale granularities")
    ap.add_argument("--lrs", nargs="+", type=float, default=[1e-3, 3e-4])
    ap.add_argument("--schedules", nargs="+", default=list(SCHEDULES),
                    choices=SCHEDULES)
    ap.add_argument("--seeds", type=int, default=4, help="fine-tuning seeds 0..N-1")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--train", type=int, default=512, help="training images per epoch")
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--epochs-a", type=int, default=6, help="epochs of the shared start")
    ap.add_argument("--train-a", type=int, default=1348, help="training images of the start")
    ap.add_argument("--cache", type=Path, default=CACHE, help="where the start is cached")
    ap.add_argument("--out", type=Path, default=Path("docs/results/columnquant-rate-study.csv"))
    ap.add_argument("--table", action="store_true",
                    help="only print --out's table (mean ± std (min-max) over the seeds)")
    args = ap.parse_args()
    if args.table:
        print(table(args.out))
        return

    x, y, x_te, y_te = setup(max(args.train, args.train_a), args.test)
    start = digital_start(x[:args.train_a], y[:args.train_a], x[:64], epochs=args.epochs_a,
                          lr=1e-3, seed=0, cache=args.cache).float_model()
    ws, ps = args.cell.split("/")
    chip = columnquant_chip(psum_bits=args.psum_bits, psum_scale=ps, encoding="offset")
    rows = Rows(args.out, ["psum_bits", "weight_scale", "psum_scale", "lr", "schedule", "seed",
                           "epoch", "twin_accuracy", "train_loss", "elapsed_s"])
    for lr in args.lrs:
        for schedule in args.schedules:
            for seed in range(args.seeds):
                prep = prepare_columnquant(start, chip, x[:256], seed=0, weight_scale=ws,
                                           centre="none", init="engine")

                def add(epoch: int, loss: float | str, prep=prep, lr=lr, schedule=schedule,
                        seed=seed) -> None:
                    rows.add(psum_bits=args.psum_bits, weight_scale=ws, psum_scale=ps, lr=lr,
                             schedule=schedule, seed=seed, epoch=epoch,
                             twin_accuracy=acc(prep.eval(), x_te, y_te), train_loss=loss)

                add(0, "")
                qat(prep, x[:args.train], y[:args.train], epochs=args.epochs, lr=lr, seed=seed,
                    schedule=schedule,
                    after_epoch=lambda e, loss, add=add: add(e + 1, round(loss, 4)))
    print(f"wrote {args.out}\n\n{table(args.out)}")


if __name__ == "__main__":
    main()
