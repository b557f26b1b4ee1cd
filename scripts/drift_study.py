"""The drift study of docs/drift.md: accuracy from 1 s to 10 years after programming.

Two models (the demo digits CNN and the residual ResNetDigits), on the PCM preset without,
with global and with per-column drift compensation, and on the RRAM preset (whose devices do
not age by default), each deployed with several seeds. Every (model, chip, seed) is programmed
once and then seen at every time (``SimModel.set_time``: the same drawn devices); each time
starts the conversion-noise draws afresh, so the times differ by the devices alone. A chip
whose devices do not age (``device.ages`` false: the RRAM preset) therefore gives bit-identical
outputs at every time (tests/arrays/test_drift.py holds this); it is evaluated once, at t0, and
that accuracy is its row at every time.

    python scripts/drift_study.py --out docs/drift            # the figures of docs/drift.md
    python scripts/drift_study.py --out /tmp/drift --fast     # a smoke run (a minute)

Writes ``drift_study.csv`` (one row per model, chip, seed and time), ``drift_summary.csv``
(mean and standard deviation over seeds), ``accuracy_time_<model>.png`` and prints the summary
as the Markdown table docs/drift.md shows. Runs (model, chip, seed) jobs in ``--jobs`` worker
processes, one thread each.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

TIMES_S = {"1 s": 1.0, "1 h": 3600.0, "1 d": 86400.0, "1 y": 3.1536e7, "10 y": 3.1536e8}
CHIPS = {  # label -> (preset, drift_compensation or None to keep the preset's)
    "pcm, no compensation": ("pcm-22nm", "none"),
    "pcm, global compensation": ("pcm-22nm", "global"),
    "pcm, column compensation": ("pcm-22nm", "column"),
    "rram-22nm (no aging model)": ("rram-22nm", None),
}
MODELS = ("digits CNN (demo)", "ResNetDigits")


def _init_worker() -> None:
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    import torch

    torch.set_num_threads(1)


def _job(model_name: str, chip_label: str, seed: int, n_eval: int | None,
         times: dict[str, float], n_cal: int) -> list[dict]:
    """Deploy once, evaluate at every time: one row per time."""
    import cimsim
    from cimsim.data import load_digits_split
    from cimsim.evaluate import accuracy
    from cimsim.models import load_digits_cnn, load_resnet_digits

    model = load_digits_cnn() if model_name == MODELS[0] else load_resnet_digits()
    x_train, _, x, y = load_digits_split()
    if n_eval is not None:
        x, y = x[:n_eval], y[:n_eval]
    preset, comp = CHIPS[chip_label]
    chip = cimsim.load_chip(preset)
    if comp is not None:
        chip = chip.replace(device=chip.device.replace(drift_compensation=comp))
    sim = cimsim.deploy(model, chip, x_train[:n_cal], seed=seed)
    cores = [c for layer in sim.sim_layers.values() for c in layer.cores]
    rows = []
    acc = None
    for label, t in times.items():
        if acc is None or chip.device.ages:
            sim.set_time(t)
            for core in cores:  # the same noise draws at every time: only the devices move
                core.calls = 0
            acc = accuracy(sim, x, y, batch_size=256)
        rows.append({"model": model_name, "chip": chip_label, "seed": seed, "time": label,
                     "time_s": t, "accuracy": acc, "n_eval": int(x.shape[0])})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--resnet-images", type=int, default=40,
                    help="test images the ResNet is evaluated on (the CNN sees all 449)")
    ap.add_argument("--calibration", type=int, default=256,
                    help="training images that calibrate the CNN")
    ap.add_argument("--resnet-calibration", type=int, default=128,
                    help="training images that calibrate the ResNet")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--fast", action="store_true",
                    help="smoke run: 1 seed, 3 times, 40 images, 64 calibration images")
    args = ap.parse_args(argv)

    import pandas as pd
    from tqdm import tqdm

    from cimsim.report import plot_accuracy_time

    times = TIMES_S
    seeds = list(range(args.seeds))
    n_eval = {MODELS[0]: None, MODELS[1]: args.resnet_images}
    n_cal = {MODELS[0]: args.calibration, MODELS[1]: args.resnet_calibration}
    if args.fast:
        times = {k: TIMES_S[k] for k in ("1 s", "1 d", "10 y")}
        seeds, n_eval, n_cal = [0], {m: 40 for m in MODELS}, {m: 64 for m in MODELS}
    args.out.mkdir(parents=True, exist_ok=True)
    # the slow ResNet jobs first: the pool ends with the short ones
    jobs = [(m, c, s) for m in reversed(MODELS) for c in CHIPS for s in seeds]
    t0 = time.perf_counter()
    rows: list[dict] = []
    with ProcessPoolExecutor(max_workers=args.jobs, initializer=_init_worker) as pool:
        futures = [pool.submit(_job, m, c, s, n_eval[m], times, n_cal[m])
                   for m, c, s in jobs]
        for fut in tqdm(as_completed(futures), total=len(futures), desc="drift study",
                        unit="deploy"):
            rows.extend(fut.result())
    frame = pd.DataFrame(rows).sort_values(["model", "chip", "seed", "time_s"])
    frame.to_csv(args.out / "drift_study.csv", index=False)
    summary = (frame.groupby(["model", "chip", "time", "time_s"], sort=False)["accuracy"]
               .agg(accuracy="mean", accuracy_std="std", n_seeds="count").reset_index()
               .sort_values(["model", "chip", "time_s"]))
    summary["accuracy_std"] = summary["accuracy_std"].fillna(0.0)
    summary.to_csv(args.out / "drift_summary.csv", index=False)
    for model in MODELS:
        part = summary[summary["model"] == model]
        n = int(frame.loc[frame["model"] == model, "n_eval"].iloc[0])
        fig = plot_accuracy_time(part, series="chip",
                                 title=f"{model}: {n} test images, mean ± sd over "
                                       f"{len(seeds)} seeds")
        slug = "demo" if model == MODELS[0] else "resnet"
        fig.savefig(args.out / f"accuracy_time_{slug}.png", dpi=120, bbox_inches="tight")
        table = part.pivot(index="chip", columns="time", values="accuracy")[list(times)]
        spread = part.pivot(index="chip", columns="time", values="accuracy_std")[list(times)]
        print(f"\n{model} ({n} test images, {len(seeds)} seeds): accuracy % mean ± sd")
        print("| chip | " + " | ".join(times) + " |")
        print("|---|" + "---:|" * len(times))
        for chip in CHIPS:
            cells = [f"{100 * table.loc[chip, t]:.1f} ± {100 * spread.loc[chip, t]:.1f}"
                     for t in times]
            print(f"| {chip} | " + " | ".join(cells) + " |")
    print(f"\nwrote drift_study.csv, drift_summary.csv, accuracy_time_demo.png, "
          f"accuracy_time_resnet.png to {args.out}/ in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
