"""Whole models timed: ResNet-18, MobileNetV2 and ViT-Ti/16 at 224x224 on a chip (random
weights), against the float model in the same run.

Per model, in a fresh spawned process (so each peak memory is that model's), times in CPU
seconds of that process (``time.process_time``: with one thread, the seconds an otherwise idle
core would take; the machine this runs on is shared, so wall times are also written to the
CSV, as ``*_wall_s``):

- ``float_s``: one image through the float torch model (best of 3);
- ``deploy_s``: ``cimsim.deploy`` (mapping, programming every array with the chip's
  variation, and the calibration pass over ``--n-cal`` images);
- ``forward_s``: the first simulated forward of one image after deploy (noise on: the chip's
  thermal noise, 0.5 cell-LSB on ``rram-22nm``), then ``forward_again_s`` the second;
- ``x_float``: ``forward_s / float_s``;
- ``rss_base_mib``: peak resident memory once torch, cimsim and the float model are loaded;
  ``rss_peak_mib``: peak resident memory at the end (``resource.getrusage`` ``ru_maxrss``).

The chip allows time multiplexing (ResNet-18 needs more arrays than ``rram-22nm`` has); the
models come from :mod:`cimsim.models.imagenet`. ``--quick``: 64x64 images and narrow
variants (ResNet-18 at width 16, MobileNetV2 x0.25, ViT 2 blocks of 96), for a smoke run.

Prints a table and writes ``benchmarks/results/bench_models.csv`` (ignored by git).

    python benchmarks/bench_models.py [--quick] [--models resnet18,mobilenet_v2,vit_tiny]
                                      [--chip rram-22nm] [--threads 1] [--n-cal 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from typing import Any

from _results import write_rows  # run from benchmarks/ or as a path

MODELS = ("resnet18", "mobilenet_v2", "vit_tiny")


def _rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def build(name: str, quick: bool) -> tuple[Any, int]:
    """(model with random weights, image side)."""
    from cimsim.models import imagenet

    if name == "resnet18":
        return imagenet.resnet18(width=16 if quick else 64), 64 if quick else 224
    if name == "mobilenet_v2":
        return imagenet.mobilenet_v2(width_mult=0.25 if quick else 1.0), 64 if quick else 224
    if name == "vit_tiny":
        if quick:
            return imagenet.vit_tiny(image=64, depth=2, dim=96), 64
        return imagenet.vit_tiny(), 224
    raise SystemExit(f"--models: unknown model {name!r}; allowed: {', '.join(MODELS)}")


def measure(name: str, chip_name: str, quick: bool, threads: int, n_cal: int) -> dict:
    """One model's row (runs in a spawned child)."""
    import torch

    import cimsim

    torch.set_num_threads(threads)
    model, side = build(name, quick)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, side, side, generator=g)
    cal = torch.rand(n_cal, 3, side, side, generator=g)
    chip = cimsim.load_chip(chip_name)
    chip = chip.replace(array=chip.array.replace(allow_time_multiplexing=True))

    row: dict[str, Any] = dict(model=name, image=side,
                               n_params=sum(p.numel() for p in model.parameters()),
                               chip=chip_name, threads=threads)
    with torch.no_grad():
        model(x)  # warm-up
        row["float_s"], row["float_wall_s"] = min(_seconds(lambda: model(x)) for _ in range(3))
    row["rss_base_mib"] = _rss_mib()
    sim: Any = None

    def deploy() -> None:
        nonlocal sim
        sim = cimsim.deploy(model, chip, cal, seed=0)

    row["deploy_s"], row["deploy_wall_s"] = _seconds(deploy)
    with torch.no_grad():
        row["forward_s"], row["forward_wall_s"] = _seconds(lambda: sim(x))
        row["forward_again_s"], row["forward_again_wall_s"] = _seconds(lambda: sim(x))
    row["x_float"] = row["forward_s"] / row["float_s"]
    row["n_arrays"] = int(sim.arrays_needed)
    row["rss_peak_mib"] = _rss_mib()
    return row


def _seconds(fn) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) of ``fn()``."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="64x64 images, narrow models")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    ap.add_argument("--chip", default="rram-22nm")
    ap.add_argument("--threads", type=int, default=1, help="torch and numba threads (1)")
    ap.add_argument("--n-cal", type=int, default=2, help="calibration images (2)")
    args = ap.parse_args()
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    for n in names:
        if n not in MODELS:
            raise SystemExit(f"--models: unknown model {n!r}; allowed: {', '.join(MODELS)}")
    # the children inherit these: numba reads its thread count once, at import
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    mp = multiprocessing.get_context("spawn")
    rows = []
    with mp.Pool(1, maxtasksperchild=1) as pool:  # one fresh process per model
        for n in names:
            rows.append(pool.apply(measure, (n, args.chip, args.quick, args.threads,
                                             args.n_cal)))
            print(f"{n}: done", flush=True)
    cols = ("model", "image", "n_params", "n_arrays", "float_s", "deploy_s", "forward_s",
            "forward_again_s", "x_float", "rss_base_mib", "rss_peak_mib")
    print(f"\n{args.chip}, noise on, {args.threads} thread(s), random weights, "
          f"{args.n_cal} calibration images; CPU seconds, one image")
    print("".join(f"{c:>{max(9, len(c) + 1)}}" for c in cols))
    for r in rows:
        print("".join((f"{r[c]:>{max(9, len(c) + 1)}.3f}" if isinstance(r[c], float)
                       else f"{r[c]:>{max(9, len(c) + 1)}}") for c in cols))
    write_rows("bench_models", rows)


if __name__ == "__main__":
    main()
