"""Nanoseconds per conversion of the fused conversion kernel alone: noise off, thermal noise as a
Gaussian draw added before the ADC (``gaussian``, the path of per-cell read noise and nonlinear
ADCs), and thermal noise as an exact draw of the code (``exact``, what the engine uses for a
linear ADC: ``cimsim.engine.exact_noise_steps``).

A (planes=8, vectors=3136, conversions=256) block of int32 partial sums, as one row group of the
first shape of ``bench_matmul.py``, through ``convert_accumulate`` with a 6-bit linear ADC of
step 10 and noise of sigma 1 (0.1 step) or 5 (0.5 step); with 1 and 2 threads.

    python benchmarks/bench_kernel.py
"""

from __future__ import annotations

import time

import numba
import numpy as np

from cimsim.arrays._kernels import convert_accumulate
from cimsim.arrays._rng import KN, QZ, WN


def main() -> int:
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
    print(f"{'threads':>7} {'noise':>8} {'sigma':>5} {'ns_per_conversion':>18}")
    cases = [("off", 0.0), ("gaussian", 1.0), ("exact", 1.0), ("gaussian", 5.0), ("exact", 5.0)]
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


if __name__ == "__main__":
    raise SystemExit(main())
