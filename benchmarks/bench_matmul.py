"""Throughput of ``cimsim`` layer simulation against the float GEMMs it must do.

Setting (issue 2): 8-bit inputs applied bit-serially (8 planes), 8-bit weights stored
differentially at 2 bits per cell (7 magnitude bits -> 4 slices, each a +/- column pair read out
in analog), 256x256 arrays, a 6-bit SAR ADC with per-column calibrated ranges. Each shape runs
with noise off and with thermal noise on (sigma = 1 cell-LSB), sampled as the environment says
(``CIMSIM_NOISE_SAMPLER``: ``gaussian`` by default, ``exact`` for the exact code sampler).

For every shape it prints the seconds of ``engine.run`` (programming and calibration excluded:
they happen once at deploy time), the *array MAC/s* = M*K*N*planes*slices / t, and the ratio of
that to the MAC/s of plain ``numpy.matmul`` in float32 doing the same GEMMs (the stacked-plane
GEMM of every row group, same shapes and count), measured in the same run. Peak memory is the
tracemalloc peak of NumPy allocations during the run (torch's int8 GEMM output is counted by its
NumPy view) and, to show it is bounded by the chunk, the same for M x 4 next to the size of
that run's (4M, N) float64 output, which any simulator must hold: peak4xM - out4xM stays at
the one-chunk working set.

Then the first call (issue 14): ``cimsim.matmul`` of one vector through a 4608x512 layer
(programming, calibration on that vector, the run) on ``rram-22nm`` and on ``ideal``, against
drawing one log-normal per cell with NumPy (8 cells per weight: 4 slices x a differential
pair), the inherent cost of programming, timed in the same run; and the per-call cost of
``engine.run`` on the programmed ``rram-22nm`` layer for M = 1, 4, 16, 64.

    python benchmarks/bench_matmul.py [--quick] [--csv out.csv]

The last lines are ``min_ratio_noise_on=<value>``, ``noise_on_over_off=<value>`` (the smallest
t_off / t_on of a shape: 1 = noise is free) and ``first_call_ratio_rram=<value>``,
``first_call_ratio_ideal=<value>`` (matmul seconds / log-normal seconds).
"""

from __future__ import annotations

import argparse
import csv
import os
import time
import tracemalloc
from pathlib import Path

import numpy as np

import cimsim
from cimsim import engine
from cimsim.arrays.program import program

SHAPES = [(3136, 576, 64), (784, 1152, 128), (512, 768, 3072), (128, 4608, 512)]


def bench_chip(noise: bool) -> cimsim.ChipConfig:
    base = cimsim.load_chip("ideal")
    return base.replace(
        name="bench",
        weight_bits=8,
        input_bits=8,
        weight_encoding="differential",
        differential_readout="analog",
        array=base.array.replace(n_rows=256, n_cols=256, cols_per_adc=8),
        device=base.device.replace(bits_per_cell=2),
        dac=base.dac.replace(bits=1),
        adc=base.adc.replace(bits=6, range_policy="calibrated",
                             calibration_granularity="column", calibration_stat="minmax"),
        noise=base.noise.replace(thermal_sigma_lsb=1.0 if noise else 0.0),
    )


def best_seconds(fn, repeats: int, *, warmup: bool = False) -> float:
    """Fastest of ``repeats`` timed calls of ``fn`` (after one untimed call if ``warmup``)."""
    if warmup:
        fn()  # first-touch allocations, Numba compilation
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def reference_gemms(layer, x: np.ndarray) -> float:
    """Seconds for numpy float32 matmul doing the engine's GEMMs (same shapes and count)."""
    p = layer.chip.n_planes
    mats = [layer.gemm_matrix[k0:k1].astype(np.float32) for k0, k1, _ in layer.groups]
    xs = [np.ones((p * x.shape[0], k1 - k0), dtype=np.float32) for k0, k1, _ in layer.groups]

    def go() -> None:
        for a, b in zip(xs, mats, strict=True):
            np.matmul(a, b)

    go()
    return best_seconds(go, 3)


def peak_mib(layer, x: np.ndarray) -> float:
    tracemalloc.start()
    engine.run(layer, x, noise_seed=1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller M (a smoke run)")
    ap.add_argument("--csv", type=Path, default=None, help="also write the table to CSV")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    header = (f"{'M':>5} {'K':>5} {'N':>5} {'noise':>5} {'t_s':>8} {'arrayMAC/s':>11} "
              f"{'f32GEMM_s':>9} {'ratio':>6} {'peakMiB':>8} {'peak4xM':>8} {'out4xM':>7} "
              f"{'gemm':>7}")
    print(header)
    for m, k, n in SHAPES:
        if args.quick:
            m = max(16, m // 16)
        w = rng.integers(-127, 128, (n, k))
        # ReLU-like sparse activations: half zeros, the rest spread over 8 bits
        x = np.where(rng.random((m, k)) < 0.5, 0, rng.integers(0, 256, (m, k)))
        for noise in (False, True):
            chip = bench_chip(noise)
            layer = program(w, chip, np.random.default_rng(1))
            layer = engine.calibrate(layer, x[:256])
            engine.run(layer, x[:8], noise_seed=0)  # JIT warm-up
            t = best_seconds(lambda layer=layer, x=x: engine.run(layer, x, noise_seed=1), 3)
            t_ref = reference_gemms(layer, x)
            slices = -(-(chip.weight_bits - 1) // chip.device.bits_per_cell)
            macs = m * k * n * chip.n_planes * slices
            ratio = t_ref / t
            peak = peak_mib(layer, x)
            peak4 = peak_mib(layer, np.concatenate([x] * 4))
            out4 = 4 * m * n * 8 / 2**20  # the (4M, N) float64 result itself
            from cimsim.arrays import _gemm

            kind = _gemm.choose(1, 3, 256, layer.gemm_matrix.dtype == np.int8)
            row = dict(M=m, K=k, N=n, noise="on" if noise else "off", t_s=t,
                       array_mac_per_s=macs / t, ref_gemm_s=t_ref, ratio=ratio,
                       peak_mib=peak, peak_mib_4x_m=peak4, output_mib_4x_m=out4, gemm=kind)
            rows.append(row)
            print(f"{m:>5} {k:>5} {n:>5} {row['noise']:>5} {t:8.4f} {macs / t:11.3e} "
                  f"{t_ref:9.4f} {ratio:6.2f} {peak:8.1f} {peak4:8.1f} {out4:7.1f} {kind:>7}",
                  flush=True)
    if args.csv:
        with args.csv.open("w", newline="", encoding="utf-8") as fh:
            wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
            wr.writeheader()
            wr.writerows(rows)
    min_on = min(r["ratio"] for r in rows if r["noise"] == "on")
    t_of = {(r["M"], r["K"], r["N"], r["noise"]): r["t_s"] for r in rows}
    print(f"noise sampler: {os.environ.get(engine.NOISE_SAMPLER_ENV, 'gaussian')}")
    on_off = min(t_of[(m, k, n, "off")] / t_of[(m, k, n, "on")] for m, k, n, _ in t_of)
    first = first_call(args.quick)
    print(f"min_ratio_noise_on={min_on:.3f}")
    print(f"noise_on_over_off={on_off:.3f}")
    for name, ratio in first.items():
        print(f"first_call_ratio_{name}={ratio:.3f}")
    return 0


def first_call(quick: bool) -> dict[str, float]:
    """Seconds of one-vector ``cimsim.matmul`` on 4608x512 vs the log-normal draws it needs."""
    from cimsim.arrays import cache

    rng = np.random.default_rng(0)
    k, n = (1152, 128) if quick else (4608, 512)
    w = rng.integers(-127, 128, (n, k))
    x = rng.integers(0, 256, (1, k))
    cells = k * n * 8

    def lognormal() -> None:
        np.exp(0.05 * np.random.default_rng(1).standard_normal(cells))

    chips = {"rram": cimsim.load_chip("rram-22nm"), "ideal": cimsim.load_chip("ideal")}
    for chip in chips.values():
        cimsim.matmul(x[:, :256], w[:8, :256], chip, seed=0, calibration=x[:, :256])  # JIT
    cache.clear()  # (matmul does not use the programming cache; deploy does)
    print(f"\nfirst call: one vector through {k}x{n} (best of 3)")
    print(f"{'chip':>6} {'matmul_s':>9} {'lognormal_s':>11} {'ratio':>6}")
    ratios = {}
    for name, chip in chips.items():
        best_m = best_l = np.inf
        for _ in range(3):  # alternate, so that both see the same machine load
            best_l = min(best_l, best_seconds(lognormal, 1))
            best_m = min(best_m, best_seconds(
                lambda chip=chip: cimsim.matmul(x, w, chip, seed=0, calibration=x), 1))
        ratios[name] = best_m / best_l
        print(f"{name:>6} {best_m:9.3f} {best_l:11.3f} {ratios[name]:6.2f}", flush=True)
    chip = chips["rram"]
    layer = engine.calibrate(program(w, chip, np.random.default_rng(0)), x)
    print(f"{'M':>6} {'run_s':>9} {'per_vector_ms':>13}")
    for m in (1, 4, 16, 64):
        xm = np.repeat(x, m, axis=0)
        t = best_seconds(lambda xm=xm: engine.run(layer, xm, noise_seed=1), 3, warmup=True)
        print(f"{m:>6} {t:9.4f} {t / m * 1e3:13.2f}", flush=True)
    return ratios


if __name__ == "__main__":
    raise SystemExit(main())
