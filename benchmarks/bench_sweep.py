"""Sweep throughput: points per minute in this process and on Dask LocalClusters of 1 and 2
workers, in the same run.

The sweep is the demo's (the bundled digits CNN on ``rram-22nm``; ADC bits x ADC kind, 200
test images evaluated, 256 training images calibrate); each configuration sweeps the same
points into a fresh folder. A cluster's start-up (spawning its workers) is timed apart; the
sweep's time, hence its points per minute, includes each worker's set-up at its first point
(unpickling the model imports torch and cimsim; numba loads its cached kernels). ``used``: how
many workers ran points (from the records' ``worker`` field).

Prints a table and writes ``benchmarks/results/bench_sweep.csv`` (ignored by git).

    python benchmarks/bench_sweep.py [--quick] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from _results import write_rows  # run from benchmarks/ or as a path

import cimsim
from cimsim.data import load_digits_split
from cimsim.models import load_digits_cnn
from cimsim.sweep import JSONL, dask_client, run_sweep


def sweep_seconds(grid: dict, n_eval: int, out: Path, client=None) -> tuple[float, int]:
    """(seconds, number of workers that ran points) of one demo sweep over ``grid`` into the
    new folder ``out``."""
    x_train, _, x, y = load_digits_split()
    model, chip = load_digits_cnn(), cimsim.load_chip("rram-22nm")
    t0 = time.perf_counter()
    frame = run_sweep(model, (x[:n_eval], y[:n_eval]), chip, grid, out,
                      calibration=x_train[:256], progress=False, client=client)
    seconds = time.perf_counter() - t0
    assert frame["status"].eq("ok").all(), frame["status"].tolist()
    lines = (out / JSONL).read_text().splitlines()
    return seconds, len({json.loads(line).get("worker") for line in lines})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 points, 100 images")
    ap.add_argument("--workers", default="1,2", help="LocalCluster sizes (default 1,2)")
    args = ap.parse_args()
    bits = [3, 4] if args.quick else [3, 4, 5, 6, 7]
    grid = {"adc_kind": ["sar", "ramp:bs_kmq"], "adc_bits": bits}
    n_points, n_eval = 2 * len(bits), 100 if args.quick else 200
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        s, _ = sweep_seconds(grid, n_eval, Path(tmp) / "serial")
        rows.append(dict(where="this process", workers=1, used=1, start_s=0.0, sweep_s=s))
        for n in (int(v) for v in args.workers.split(",")):
            t0 = time.perf_counter()
            with dask_client(f"local:{n}") as client:
                client.wait_for_workers(n)
                start = time.perf_counter() - t0
                s, used = sweep_seconds(grid, n_eval, Path(tmp) / f"dask{n}", client)
            rows.append(dict(where=f"Dask local:{n}", workers=n, used=used, start_s=start,
                             sweep_s=s))
    ref = rows[0]["sweep_s"]
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"demo sweep: digits CNN on rram-22nm, {n_points} points, {n_eval} images each; "
          f"{os.cpu_count()} CPUs, load average {load} (1, 5, 15 min) at the end")
    print(f"{'where':<16}{'workers':>8}{'used':>5}{'start_s':>9}{'sweep_s':>9}"
          f"{'points/min':>12}{'vs in-process':>15}")
    for r in rows:
        r["points_per_min"] = 60 * n_points / r["sweep_s"]
        r["speedup"] = ref / r["sweep_s"]
        print(f"{r['where']:<16}{r['workers']:>8}{r['used']:>5}{r['start_s']:>9.1f}"
              f"{r['sweep_s']:>9.1f}"
              f"{r['points_per_min']:>12.1f}{r['speedup']:>14.2f}x")
    write_rows("bench_sweep", rows)


if __name__ == "__main__":
    main()
