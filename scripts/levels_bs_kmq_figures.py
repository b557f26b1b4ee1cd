"""Print the BS-KMQ vs K-means table of docs/levels.md.

Two synthetic ReLU + clamp distributions with point masses at both ends, the same as in
tests/adc/test_levels.py: a continuous one and one on an integer grid.

    python scripts/levels_bs_kmq_figures.py
"""

from __future__ import annotations

import argparse

import numpy as np

from cimsim.adc.levels import fit_levels, quantization_mse

METHODS = ("kmeans", "kmeans_optimal", "bs_kmq")


def continuous(seed: int = 9, n: int = 20_000) -> np.ndarray:
    """40 % exact zeros, 10 % exactly at the clamp 1.0, the rest half-normal(0.3) inside."""
    rng = np.random.default_rng(seed)
    n_zero, n_one = int(0.4 * n), int(0.1 * n)
    n_rest = n - n_zero - n_one
    draws = np.abs(rng.normal(0.0, 0.3, 4 * n_rest))
    inside = draws[(draws > 0.0) & (draws < 1.0)][:n_rest]
    return rng.permutation(np.concatenate([np.zeros(n_zero), np.ones(n_one), inside]))


def integer_grid(seed: int = 0, n: int = 20_000) -> np.ndarray:
    """round(N(0, 8)) clipped to [0, 16]."""
    return np.clip(np.round(np.random.default_rng(seed).normal(0.0, 8.0, n)), 0.0, 16.0)


def main() -> int:
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    cases = [
        ("continuous: 40 % at 0, 10 % at 1, half-normal(0.3) inside", continuous(), 1.0),
        ("integer grid: round(N(0, 8)) clipped to [0, 16]", integer_grid(), 16.0),
    ]
    for title, x, hi in cases:
        edge = (x == 0.0) | (x == hi)
        print(f"\n**{title}** ({edge.mean():.0%} of samples at the two masses)\n")
        print("| bits | method | inside | interior MSE | mass MSE | total MSE |")
        print("|---:|---|---:|---:|---:|---:|")
        for bits in (2, 3, 4):
            for method in METHODS:
                lv = fit_levels(x, bits, method, lo=0.0, hi=hi)
                inside = np.unique(lv.levels[(lv.levels > 0.0) & (lv.levels < hi)]).size
                mses = [quantization_mse(x[sel], lv) for sel in (~edge, edge, np.ones_like(edge))]
                print(
                    f"| {bits} | `{method}` | {inside} | "
                    + " | ".join(f"{v:.3g}" for v in mses)
                    + " |"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
