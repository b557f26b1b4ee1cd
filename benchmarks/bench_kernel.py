"""Nanoseconds per conversion of the fused conversion kernel alone: noise off, thermal noise as a
Gaussian draw added before the ADC (``gaussian``, the path of per-cell read noise and nonlinear
ADCs), and thermal noise as an exact draw of the code (``exact``, what the engine uses for a
linear ADC: ``cimsim.engine.exact_noise_steps``).

A (planes=8, vectors=3136, conversions=256) block of int32 partial sums, as one row group of the
first shape of ``bench_matmul.py``, through ``convert_accumulate`` with a 6-bit linear ADC of
step 10 and noise of sigma 1 (0.1 step), 5 (0.5 step) or 7.3 (0.73 step, what
``bench_matmul.py``'s calibrated ADCs see); with 1 and 2 threads.

Then, single-threaded, what bounds any exact sampler of the kernel's form (``--bound``): the
kernel's exact loop with the quantile table replaced by arithmetic of the same shape (no table
gathers; *not* a sampler: its codes are wrong), beside the kernel's own three modes, each the
best of many repeats taken in turn (the machine is shared).

    python benchmarks/bench_kernel.py [--bound]
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np
from numba import njit, prange, uint64

from cimsim.arrays._kernels import _TILE, _U_MAX, convert_accumulate
from cimsim.arrays._rng import KN, QZ, WN, code_offset_slow, fill_words


@njit(parallel=True, cache=True)
def _exact_without_table(ps, lo, delta, top, sig, steps, key, out):  # pragma: no cover
    """The kernel's exact loop (plain layout, no gain or offset error) with ``qz[i]`` and
    ``qz[i + 1]`` replaced by ``i·0.001 - 2`` and ``i·0.001 - 1.999``: the hash, the word, the
    two floors, the flags and the ADC, no table gathers. A lower bound on the cost of an exact
    sampler of this form, whatever its quantile; its codes are not a sampler's."""
    n_planes, mc, n_conv = ps.shape
    n_clip = 0
    for m in prange(mc):
        acc = np.empty(_TILE)
        hh = np.empty(_TILE // 4 + 2, dtype=np.uint64)
        w16 = hh.view(np.uint16)
        und = np.zeros(_TILE, dtype=np.uint8)
        und8 = und.view(np.uint64)
        for tile in range((n_conv + _TILE - 1) // _TILE):
            c0 = tile * _TILE
            nt = min(_TILE, n_conv - c0)
            for t in range(nt):
                acc[t] = 0.0
            for p in range(n_planes):
                base = uint64((p * mc + m) * n_conv + c0)
                s = sig[p]
                w0 = np.int64(base & uint64(3))
                fill_words(key, base, nt, hh)
                n_und = 0
                for t in range(nt):
                    c = c0 + t
                    d = delta[c]
                    u = min(max((ps[p, m, c] - lo[c]) / d + 0.5, -_U_MAX), _U_MAX)
                    i = np.int64(w16[w0 + t]) >> 4
                    k = np.floor(u + steps[c] * (i * 0.001 - 2.0))
                    b = np.floor(u + steps[c] * (i * 0.001 - 1.999)) != k
                    n_clip += 0 if b else (k < 0.0) | (k > top)
                    acc[t] += 0.0 if b else s * (lo[c] + min(max(k, 0.0), top) * d)
                    und[t] = b
                    n_und += b
                if n_und > 0:
                    for j in range((nt + 7) >> 3):
                        if und8[j] == 0:
                            continue
                        for t in range(8 * j, min(8 * j + 8, nt)):
                            if und[t]:
                                c = c0 + t
                                u = min(max((ps[p, m, c] - lo[c]) / delta[c] + 0.5, -_U_MAX),
                                        _U_MAX)
                                k = np.float64(code_offset_slow(
                                    key, base + uint64(t), np.int64(w16[w0 + t]) >> 4, u,
                                    steps[c]))
                                acc[t] += s * (lo[c] + min(max(k, 0.0), top) * delta[c])
            for t in range(nt):
                out[m, c0 + t] += acc[t]
    return n_clip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bound", action="store_true",
                    help="one thread: what bounds any exact sampler of the kernel's form")
    args_cli = ap.parse_args()
    p, m, c, n = 8, 3136, 256, 64
    rng = np.random.default_rng(0)
    ps = rng.integers(-300, 300, (p, m, c)).astype(np.int32)
    out = np.zeros((m, n))
    args = dict(
        xsum=np.zeros((p, 0)), var=np.zeros((0, 0, 0), np.float32), sig=2.0 ** np.arange(p),
        pos=np.arange(c), neg=-np.ones(c, np.int64), off_add=np.zeros(c),
        out_col=np.arange(c) // 4, coef=np.ones(c), lo=np.full(c, -300.0),
        delta=np.full(c, 10.0), top_code=63.0, nl_kind=0, nl_fs=1.0, nl_sat=1.0, nl_beta=0.0,
        nl_poly=np.zeros(0), gain=0.0, offset_lsb=0.0, cmp_sigma=0.0,
        key_noise=np.uint64(1), key_cmp=np.uint64(2), group=0, m_offset=0, m_total=m,
        kn=KN, wn=WN, qz=QZ, thr=np.zeros((0, 0)), lvl=np.zeros((0, 0)), out=out,
        # the clip counter (engine.run_detailed): half a step beyond the 64-code range
        clip_lo=np.full(c, -305.0), clip_hi=np.full(c, -300.0 + 63.5 * 10.0),
        clips=np.zeros(m, np.int64),
    )
    if args_cli.bound:
        return bound(ps, args)
    print(f"{'threads':>7} {'noise':>8} {'sigma':>5} {'ns_per_conversion':>18}")
    cases = [("off", 0.0), ("gaussian", 1.0), ("exact", 1.0), ("gaussian", 5.0), ("exact", 5.0),
             ("gaussian", 7.3), ("exact", 7.3)]
    for threads in (numba.config.NUMBA_NUM_THREADS, 1):
        numba.set_num_threads(threads)
        for kind, sigma in cases:
            steps = sigma / args["delta"] if kind == "exact" else np.zeros(0)
            convert_accumulate(ps, thermal_sigma=sigma, noise_steps=steps, **args)  # JIT
            best = np.inf
            for _ in range(5):
                t0 = time.perf_counter()
                convert_accumulate(ps, thermal_sigma=sigma, noise_steps=steps, **args)
                best = min(best, time.perf_counter() - t0)
            print(f"{threads:>7} {kind:>8} {sigma:5.1f} {best / ps.size * 1e9:18.2f}",
                  flush=True)
    return 0


def bound(ps: np.ndarray, args: dict) -> int:
    """One thread: the kernel noise off, Gaussian, exact (sigma 0.73 step), and the exact loop
    without its table (:func:`_exact_without_table`), best of 25 taken in turn."""
    numba.set_num_threads(1)
    c = ps.shape[2]
    steps = np.full(c, 0.73)
    out = np.zeros((ps.shape[1], c))
    runs = {
        "off": lambda: convert_accumulate(ps, thermal_sigma=0.0, noise_steps=np.zeros(0),
                                          **args),
        "gaussian": lambda: convert_accumulate(ps, thermal_sigma=7.3, noise_steps=np.zeros(0),
                                               **args),
        "exact": lambda: convert_accumulate(ps, thermal_sigma=7.3, noise_steps=steps, **args),
        "exact_without_table": lambda: _exact_without_table(
            ps, args["lo"], args["delta"], args["top_code"], args["sig"], steps,
            np.uint64(1), out),
    }
    best = dict.fromkeys(runs, np.inf)
    for _ in range(26):  # the first round compiles
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    print(f"{'one thread':>20} {'ns_per_conversion':>18} {'over_noise_off':>15}")
    for name, t in best.items():
        print(f"{name:>20} {t / ps.size * 1e9:18.3f} {t / best['off']:15.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
