"""Speed of the training twin (``cimsim.train``) against plain float torch and the engine.

1. **Training step**: seconds per step (forward, backward, Adam; batch 128) of the residual
   network ``cimsim.models.ResNetDigits`` (ResNet-20 layout, 21 mapped convolutions + a Linear)
   prepared for a chip (``rram-22nm`` by default: 8 bit-serial planes, 4 weight slices,
   training noise on, the programmed devices), against the same float model in the same run:
   the ratio is the cost of training with the chip in the loop. On the CPU twice: with the
   fused conversion kernel (the default) and with torch element-wise ops; ``--device cuda``
   times it on a GPU (torch ops there).
2. **Preparing**: seconds of ``prepare`` (programming, the float calibration pass and the ADC
   calibration on 256 inputs) of that model, against ``cimsim.deploy`` of it on the same
   inputs (the same calibration, without the twin).
3. **Inference**: seconds of one twin forward (eval, no autograd) against ``engine.run`` (the
   Numba engine) on the shapes and chip of ``benchmarks/bench_matmul.py``, noise off.

Prints a table and writes ``benchmarks/results/bench_train.csv`` (ignored by git).

    python benchmarks/bench_train.py [--quick] [--chip rram-22nm] [--threads N] [--device cuda]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from bench_matmul import SHAPES, bench_chip, best_seconds  # noqa: E402 - run from benchmarks/ or as a path

import cimsim
from cimsim import engine
from cimsim.arrays import cache
from cimsim.models import ResNetDigits
from cimsim.train import prepare
from cimsim.train.twin import TwinMatmul

RESULTS = Path(__file__).resolve().parent / "results"


def train_step_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                       repeats: int) -> float:
    """Best seconds of one Adam step of ``model`` on the batch ``(x, y)``."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if x.is_cuda:
            torch.cuda.synchronize()

    return best_seconds(step, repeats, warmup=True)


def bench_training(chip_name: str, batch: int, repeats: int, device: str) -> list[dict]:
    """The twin's training step (fused CPU kernel, and on the CPU also the torch element-wise
    path) against float torch, on ``device``."""
    torch.manual_seed(0)
    chip = cimsim.load_chip(chip_name)
    model = ResNetDigits().to(device)
    x = torch.rand(batch, 1, 8, 8, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    cal = torch.rand(256, 1, 8, 8, device=device)
    t_float = train_step_seconds(model, x, y, repeats)
    variants = [("twin", {})]
    if device == "cpu":
        variants.append(("twin, torch ops", dict(fused_kernel=False)))
    rows = []
    if device == "cpu":  # the engine that deploy calibrates with runs on the CPU
        def fresh(fn):  # every call programs its cells: none reused from the last
            def call() -> None:
                cache.clear()
                fn()
            return call

        n = max(1, repeats - 1)  # ~10 s a call
        t_prep = best_seconds(fresh(lambda: prepare(model, chip, cal)), n)
        t_deploy = best_seconds(fresh(lambda: cimsim.deploy(model, chip, calibration=cal)), n)
        rows.append(dict(bench="prepare", model="ResNetDigits (256 inputs)", chip=chip_name,
                         M=256, K="", N="", twin_s=t_prep, reference="cimsim.deploy",
                         reference_s=t_deploy, ratio=t_prep / t_deploy))
    for label, options in variants:
        prep = prepare(model, chip, cal, **options)
        t_twin = train_step_seconds(prep, x, y, repeats)
        rows.append(dict(bench="train_step", model=f"ResNetDigits ({label}, {device})",
                         chip=chip_name, M=batch, K="", N="", twin_s=t_twin,
                         reference=f"float {device}", reference_s=t_float,
                         ratio=t_twin / t_float))
    return rows


def bench_inference(quick: bool, repeats: int) -> list[dict]:
    rows = []
    chip = bench_chip(noise=False)
    rng = np.random.default_rng(0)
    for m, k, n in SHAPES:
        if quick:
            m = max(16, m // 16)
        w = rng.standard_normal((n, k))
        x = np.maximum(rng.standard_normal((m, k)), 0.0)  # ReLU-like
        twin = TwinMatmul.calibrated(torch.tensor(w, dtype=torch.float32), None, chip,
                                     x[:256]).eval()
        x_int = twin.quantize_input(torch.tensor(x, dtype=torch.float32))
        (layer,) = twin.programmed()
        x_np = x_int.numpy().astype(np.int64)
        with torch.no_grad():
            t_twin = best_seconds(lambda twin=twin, x_int=x_int: twin.integer_forward(x_int),
                                  repeats, warmup=True)
        t_engine = best_seconds(lambda layer=layer, x_np=x_np: engine.run(layer, x_np), repeats,
                                warmup=True)
        rows.append(dict(bench="inference", model="layer", chip="bench_matmul", M=m, K=k, N=n,
                         twin_s=t_twin, reference="engine.run", reference_s=t_engine,
                         ratio=t_twin / t_engine))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small shapes, one repeat (smoke)")
    ap.add_argument("--chip", default="rram-22nm", help="chip of the training benchmark")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="cpu", help="device of the training benchmark (cpu, cuda)")
    ap.add_argument("--csv", type=Path, default=RESULTS / "bench_train.csv")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else 3
    rows = (bench_training(args.chip, args.batch, repeats, args.device)
            + bench_inference(args.quick, repeats))
    print(f"{'bench':>10} {'model':>36} {'chip':>12} {'M':>5} {'K':>5} {'N':>5} {'twin_s':>9} "
          f"{'reference':>12} {'ref_s':>9} {'ratio':>7}   (torch threads: "
          f"{torch.get_num_threads()})")
    for r in rows:
        print(f"{r['bench']:>10} {r['model']:>36} {r['chip']:>12} {r['M']:>5} {r['K']:>5} "
              f"{r['N']:>5} "
              f"{r['twin_s']:9.4f} {r['reference']:>12} {r['reference_s']:9.4f} "
              f"{r['ratio']:7.2f}")
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with args.csv.open("w", newline="", encoding="utf-8") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    step = next(r for r in rows if r["bench"] == "train_step")
    print(f"train_step_ratio={step['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
