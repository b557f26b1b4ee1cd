"""Simulated inference on the Numba engine against the torch backend (``cimsim.deploy(...,
backend="torch", device=...)``), same deployed model, same chip, noise on.

Seconds per image of ``sim(x)`` for the residual digits model (``cimsim.models.ResNetDigits``,
22 mapped matrices) on a preset, for the Numba engine and for torch on each device given, with
the energy per inference each run reports (the same events: the figures must agree).

    python benchmarks/bench_backend.py [--chip rram-22nm] [--batch 256] [--devices cpu,cuda]
"""

from __future__ import annotations

import argparse
import time

import torch

import cimsim
from cimsim.data import load_digits_split
from cimsim.models import load_resnet_digits


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chip", default="rram-22nm")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--devices", default="cpu" + (",cuda" if torch.cuda.is_available() else ""))
    args = ap.parse_args(argv)
    chip = cimsim.load_chip(args.chip)
    model = load_resnet_digits()
    x_train, _, x_test, _ = load_digits_split()
    x_cal, x = x_train[:256], x_test[:args.batch]
    print(f"ResNetDigits on {chip.name}, {x.shape[0]} images, torch threads "
          f"{torch.get_num_threads()}")
    print(f"{'backend':>16} {'deploy s':>9} {'s/image':>10} {'vs numba':>9} {'pJ/inference':>14}")
    base = None
    for backend, device in [("numba", None)] + [("torch", d) for d in args.devices.split(",")]:
        t0 = time.perf_counter()
        sim = cimsim.deploy(model, chip, x_cal, seed=0, backend=backend, device=device)
        t_deploy = time.perf_counter() - t0
        sim(x[:8])  # warm-up: Numba compilation, CUDA context
        sim.reset()
        t0 = time.perf_counter()
        sim(x)
        per = (time.perf_counter() - t0) / x.shape[0]
        base = per if base is None else base
        energy = sim.report().totals["energy_pj_per_inference"]
        label = backend if device is None else f"{backend}:{device}"
        print(f"{label:>16} {t_deploy:9.1f} {per:10.5f} {base / per:8.2f}x {energy:14.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
