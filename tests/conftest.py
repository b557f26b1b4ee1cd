"""Shared test configuration: the hypothesis profile, chip variants and operand makers."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import cimsim
from cimsim.arrays.encoding import input_range, weight_range
from cimsim.config import ChipConfig

# Deterministic, deadline-free hypothesis runs: numba compilation and the slow reference twins
# make per-example timings meaningless, and CI failures must reproduce bit for bit.
settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ENCODINGS = ("differential", "twos_complement", "offset", "signed_cell")
"""Every ``weight_encoding``."""

_ARRAY_KEYS = ("n_rows", "n_cols", "rows_per_conversion", "cols_per_adc", "slice_readout")
_DEVICE_KEYS = (
    "bits_per_cell", "on_off_ratio", "off_current_compensation", "variation", "variation_sigma",
    "p_stuck_on", "p_stuck_off",
)
_SECTIONS = ("array", "device", "dac", "adc", "noise", "tech")


def ideal_chip(**changes: Any) -> ChipConfig:
    """A variant of the lossless ``ideal`` preset.

    Flat keyword names are routed to their section: ``encoding`` (alias of
    ``weight_encoding``), ``dac_bits`` and ``signed_inputs`` (``dac``), ``n_rows``, ``n_cols``,
    ``rows_per_conversion`` (``array``), ``bits_per_cell`` and the other device fields
    (``device``); ``adc``/``noise``/... given as dicts update that section; anything else is a
    ``ChipConfig`` field (``input_bits``, ``weight_bits``, ``differential_readout``, ...).
    ``cols_per_adc`` follows ``n_cols`` down when it would exceed it.
    """
    base = cimsim.load_chip("ideal")
    top: dict[str, Any] = {}
    parts: dict[str, dict[str, Any]] = {s: {} for s in _SECTIONS}
    for key, value in changes.items():
        if key == "encoding":
            top["weight_encoding"] = value
        elif key == "dac_bits":
            parts["dac"]["bits"] = value
        elif key == "signed_inputs":
            parts["dac"]["signed_inputs"] = value
        elif key in _ARRAY_KEYS:
            parts["array"][key] = value
        elif key in _DEVICE_KEYS:
            parts["device"][key] = value
        elif key in _SECTIONS:
            parts[key].update(value)
        else:
            top[key] = value
    if "n_cols" in parts["array"] and "cols_per_adc" not in parts["array"]:
        parts["array"]["cols_per_adc"] = min(base.array.cols_per_adc, parts["array"]["n_cols"])
    sections = {s: getattr(base, s).replace(**kw) for s, kw in parts.items() if kw}
    return base.replace(**sections, **top)


def bskmq_chip(weight_bits: int = 4, bits: int = 3, level_fit: str = "bs_kmq",
               granularity: str = "layer", *, fuse_activation: bool | None = None,
               **device: Any) -> ChipConfig:
    """A layer-output ramp NL-ADC of ``bits`` bits on ideal cells (BS-KMQ's chip in the
    training tests): one conversion per output, all input bits at once, the differential
    weight in one cell (``weight_bits - 1`` magnitude bits), K <= 64 rows; ``device`` fields
    over the ideal cells; ``fuse_activation`` set where given (else the ADC's default)."""
    ideal = cimsim.load_chip("ideal")
    fuse = {} if fuse_activation is None else {"fuse_activation": fuse_activation}
    return ideal.replace(
        weight_bits=weight_bits,
        dac=ideal.dac.replace(bits=None),
        device=ideal.device.replace(bits_per_cell=weight_bits - 1, **device),
        array=ideal.array.replace(n_rows=64, n_cols=64),
        adc=ideal.adc.replace(kind="ramp", bits=bits, range_policy="calibrated",
                              calibration_granularity=granularity, level_fit=level_fit,
                              placement="layer_output", **fuse),
    )


def mlp_report(chip: str, n_calibration: int, n_run: int):
    """The report of a small MLP (8 -> 16 -> 4) deployed on ``chip``, calibrated on
    ``n_calibration`` random inputs and run on the first ``n_run`` of them."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    x = torch.randn(n_calibration, 8)
    sim = cimsim.deploy(model, cimsim.load_chip(chip), x)
    sim(x[:n_run])
    return sim.report()


def with_extremes(a: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Put ``lo`` and ``hi`` into the first entries of ``a`` (flat order), so ranges are hit."""
    flat = a.reshape(-1)
    if flat.size >= 1:
        flat[0] = lo
    if flat.size >= 2:
        flat[-1] = hi
    return a


def random_weights(
    rng: np.random.Generator, chip: ChipConfig, n: int, k: int, *, extremes: bool = True
) -> np.ndarray:
    """Integer weights (N, K) drawn uniformly from ``weight_range(chip)``."""
    lo, hi = weight_range(chip)
    w = rng.integers(lo, hi + 1, size=(n, k), dtype=np.int64)
    return with_extremes(w, lo, hi) if extremes else w


def random_inputs(
    rng: np.random.Generator, chip: ChipConfig, signed: bool, m: int, k: int, *,
    extremes: bool = True, zeros: float = 0.0,
) -> np.ndarray:
    """Integer inputs (M, K) drawn uniformly from ``input_range(chip, signed)``.

    ``zeros`` is the fraction of entries set to 0 (sparse activations).
    """
    lo, hi = input_range(chip, signed)
    x = rng.integers(lo, hi + 1, size=(m, k), dtype=np.int64)
    if zeros > 0:
        x[rng.random(x.shape) < zeros] = 0
    return with_extremes(x, lo, hi) if extremes else x


def exact_product(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w.T`` in int64 (the lossless oracle)."""
    return np.asarray(x, dtype=np.int64) @ np.asarray(w, dtype=np.int64).T


def assert_exact(y: np.ndarray, x: np.ndarray, w: np.ndarray) -> None:
    """``y`` is integer-valued and equals ``x @ w.T`` exactly."""
    expected = exact_product(x, w)
    assert y.shape == expected.shape, (y.shape, expected.shape)
    assert np.all(np.isfinite(y))
    assert np.array_equal(y, np.round(y)), "simulated output is not integer-valued"
    if not np.array_equal(y.astype(np.int64), expected):
        bad = np.argwhere(y.astype(np.int64) != expected)
        i, j = bad[0]
        raise AssertionError(
            f"{len(bad)} of {y.size} outputs differ; first at {(int(i), int(j))}: "
            f"got {y[i, j]!r}, expected {expected[i, j]}"
        )


@pytest.fixture(scope="session")
def ideal() -> ChipConfig:
    """The lossless reference chip preset."""
    return cimsim.load_chip("ideal")


@pytest.fixture
def rng() -> np.random.Generator:
    """A fixed-seed generator, fresh per test."""
    return np.random.default_rng(20240607)


@pytest.fixture
def own_torch_generator():
    """Tests that seed or draw from torch's global generator give it back as it was
    (``pytestmark = pytest.mark.usefixtures("own_torch_generator")``)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        yield
