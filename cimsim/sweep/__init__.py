"""Design-space sweeps: one deployed model per grid point, accuracy against cost.

A sweep is the Cartesian product of a few chip knobs (ADC bits, kind and sharing, bits per cell,
slice read-out, array size, thermal noise, time after programming). Every point deploys the
model on a variant of the base chip, measures the accuracy and reads the report's per-inference
energy, latency, area and TOPS/W. Points run in-process, in local worker processes or on a Dask
cluster; each finished point is appended to ``sweep.jsonl`` at once, so a killed sweep loses
nothing already done and re-running it computes only what is missing. See ``docs/sweep.md``.

One module per job: :mod:`.grid` (axes, points, chip variants), :mod:`.store` (point ids and
the JSONL records), :mod:`.runner` (one point; the worker pool), :mod:`.cluster` (points on
Dask), :mod:`.pareto` (the front), :mod:`.table` (the table and point labels), :mod:`.files`
(CSV, JSON, plot, HTML) and :mod:`.run` (:func:`run_sweep`, which ties them together).
"""

from .cluster import dask_client
from .grid import AXES, chip_for_point, expand_grid, parse_adc_kind, parse_slice_readout
from .pareto import pareto_front
from .run import run_sweep
from .store import JSONL, data_fingerprint, model_fingerprint, point_id
from .table import METRICS, point_labels

__all__ = [
    "AXES",
    "JSONL",
    "METRICS",
    "chip_for_point",
    "dask_client",
    "data_fingerprint",
    "expand_grid",
    "model_fingerprint",
    "pareto_front",
    "parse_adc_kind",
    "parse_slice_readout",
    "point_id",
    "point_labels",
    "run_sweep",
]
