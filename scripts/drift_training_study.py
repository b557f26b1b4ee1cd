"""Training for a time after programming on the PCM preset (docs/drift.md §5b).

The demo digits CNN and the residual ResNetDigits on ``pcm-22nm`` (global drift compensation,
its thermal and 1/f read noise on), three ways, each with seeds 0, 1, 2 (the programmed devices,
their drift exponents, the shuffling and the noise):

* ``deployed``: the pretrained model deployed as is (``cimsim.deploy``);
* ``QAT at t0``: ``cimsim.train.prepare`` (the chip's programmed cells, no time), trained with
  cross-entropy on the labels, then deployed;
* ``QAT at 1 y``: the same, prepared with ``t_inference_s`` = one year: the twin computes with
  the cells a year after programming (drift exponents drawn as the engine draws them, the
  compensation's gains re-fitted to the cells the weights program, the 1/f read noise of that
  time in the training noise).

Every deployed chip is seen at 1 d and at 1 y after programming (``SimModel.set_time``; the
conversion noise restarted for each), and its accuracy measured on the digits test images.

    python scripts/drift_training_study.py --out docs/drift           # docs/drift.md's table
    python scripts/drift_training_study.py --out /tmp/dt --fast       # a smoke run

Writes ``drift_training.csv`` (one row per model, way, seed and time) and prints the mean and
standard deviation over the seeds as the Markdown table docs/drift.md shows.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from drift_study import _init_worker  # one thread per worker process

YEAR_S = 3.1536e7
TIMES_S = {"1 d": 86400.0, "1 y": YEAR_S}
WAYS = {"deployed": None, "QAT at t0": "t0", "QAT at 1 y": YEAR_S}
MODELS = ("digits CNN (demo)", "ResNetDigits")


def _job(model_name: str, way: str, seed: int, epochs: int, n_train: int | None,
         n_eval: int | None, n_cal: int) -> list[dict]:
    """Train (or not), deploy once, evaluate at every time: one row per time."""
    import torch
    from _study import qat

    import cimsim
    from cimsim.data import load_digits_split
    from cimsim.evaluate import accuracy
    from cimsim.models import load_digits_cnn, load_resnet_digits
    from cimsim.train import prepare

    model = load_digits_cnn() if model_name == MODELS[0] else load_resnet_digits()
    x_train, y_train, x, y = load_digits_split()
    if n_train is not None:
        x_train, y_train = x_train[:n_train], y_train[:n_train]
    if n_eval is not None:
        x, y = x[:n_eval], y[:n_eval]
    chip = cimsim.load_chip("pcm-22nm", overrides=["array.allow_time_multiplexing=true"])
    x_cal = torch.as_tensor(x_train[:n_cal])
    start = time.perf_counter()
    target = WAYS[way]
    if target is None:
        sim = cimsim.deploy(model, chip, x_cal, seed=seed)
    else:
        t_s = None if target == "t0" else float(target)
        torch.manual_seed(seed)
        prep = prepare(model, chip, x_cal, seed=seed, t_inference_s=t_s)
        # Adam with each learned step at a rate of its own size (cimsim train's groups)
        qat(prep, torch.as_tensor(x_train), torch.as_tensor(y_train), epochs=epochs, lr=1e-3,
            seed=seed)
        sim = prep.deploy(seed)
    rows = []
    for label, t in TIMES_S.items():
        sim.reset(noise=True)  # the same conversion-noise draws at every time
        sim.set_time(t)
        acc = accuracy(sim, x, y, batch_size=256)
        rows.append({"model": model_name, "way": way, "seed": seed, "time": label,
                     "time_s": t, "accuracy_pct": round(100.0 * acc, 2),
                     "seconds": round(time.perf_counter() - start, 1)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the CSV")
    parser.add_argument("--fast", action="store_true",
                        help="smoke run: one seed, 64 training and 64 test images")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (default 2)")
    args = parser.parse_args(argv)
    import pandas as pd

    seeds = (0,) if args.fast else (0, 1, 2)
    n_train = 64 if args.fast else None
    n_eval = 64 if args.fast else None
    jobs = [(m, w, s) for m in MODELS for w in WAYS for s in seeds]
    rows: list[dict] = []
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs, initializer=_init_worker) as pool:
        futures = [pool.submit(_job, m, w, s, args.epochs, n_train, n_eval, 256)
                   for m, w, s in jobs]
        for done in as_completed(futures):
            rows.extend(done.result())
            print(f"{len(rows) // len(TIMES_S)}/{len(jobs)} runs done "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    frame = pd.DataFrame(rows).sort_values(["model", "way", "seed", "time_s"])
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / "drift_training.csv", index=False)
    for model in MODELS:
        part = frame[frame.model == model]
        stats = part.groupby(["way", "time"], sort=False).accuracy_pct.agg(["mean", "std"])
        print(f"\n{model}:\n\n| way | " + " | ".join(TIMES_S) + " |")
        print("|---|" + "---:|" * len(TIMES_S))
        for way in WAYS:
            cells = [f"{stats.loc[(way, t), 'mean']:.1f} ± {stats.loc[(way, t), 'std']:.1f}"
                     if len(seeds) > 1 else f"{stats.loc[(way, t), 'mean']:.1f}"
                     for t in TIMES_S]
            print(f"| {way} | " + " | ".join(cells) + " |")
    print(f"\n{len(jobs)} runs in {time.perf_counter() - start:.0f} s; wrote "
          f"{args.out / 'drift_training.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
