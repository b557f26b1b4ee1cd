"""Programming chunk by chunk draws exactly what drawing the whole matrix at once draws (issue
14: the chunked, in-place ``_program_conductance`` against the one-shot formula it replaced)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from cimsim.arrays.encoding import column_kinds, physical_digits
from tests.conftest import ideal_chip

# the module (cimsim.arrays.program is also the name of its function in cimsim.arrays)
prog = importlib.import_module("cimsim.arrays.program")


def _one_shot(digits, chip, rng):
    """The formula as it was: every normal, then every uniform, whole-matrix float64."""
    dev = chip.device
    signed_cell = chip.weight_encoding.value == "signed_cell"
    g = digits.astype(np.float64) + (0.0 if signed_cell else dev.g_off_lsb)
    if dev.variation.value == "lognormal":
        g = g * np.exp(dev.variation_sigma * rng.standard_normal(g.shape))
    elif dev.variation.value == "gaussian":
        g = g + dev.variation_sigma * rng.standard_normal(g.shape)
        if not signed_cell:
            g = np.maximum(g, 0.0)
    if dev.p_stuck_on > 0 or dev.p_stuck_off > 0:
        u = rng.random(g.shape)
        g_on = (dev.n_levels - 1) + dev.g_off_lsb
        g_off = dev.g_off_lsb
        if signed_cell:
            g_on, g_off = np.sign(digits + 0.5) * (dev.n_levels - 1), 0.0
        g = np.where(u < dev.p_stuck_on, g_on, g)
        g = np.where((u >= dev.p_stuck_on) & (u < dev.p_stuck_on + dev.p_stuck_off), g_off, g)
    return g.astype(np.float32)


@pytest.mark.parametrize("variation, sigma", [("lognormal", 0.05), ("gaussian", 0.3),
                                              ("none", 0.0)])
@pytest.mark.parametrize("encoding", ["differential", "signed_cell", "offset"])
def test_chunked_draws_equal_one_shot(monkeypatch, variation, sigma, encoding):
    monkeypatch.setattr(prog, "_DRAW_CHUNK", 1000)  # several chunks and a ragged last one
    chip = ideal_chip(encoding=encoding, variation=variation, variation_sigma=sigma,
                      on_off_ratio=20.0, p_stuck_on=0.02, p_stuck_off=0.03)
    rng = np.random.default_rng(5)
    w = rng.integers(-127, 128, (37, 61))
    digits = physical_digits(column_kinds(w, chip))
    got = prog._program_conductance(digits, chip, np.random.default_rng(9))
    want = _one_shot(digits, chip, np.random.default_rng(9))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_physical_digits_are_the_kinds_without_a_copy():
    chip = ideal_chip()
    w = np.random.default_rng(0).integers(-127, 128, (5, 9))
    kinds = column_kinds(w, chip)
    phys = physical_digits(kinds)
    assert np.shares_memory(phys, kinds.digits)
    q = kinds.n_kinds
    for n in range(5):
        for i in range(q):
            np.testing.assert_array_equal(phys[:, n * q + i], kinds.digits[i, :, n])


@pytest.mark.parametrize("variation", ["lognormal", "gaussian"])
def test_a_variation_of_sigma_zero_programs_as_none(variation):
    """'lognormal' at sigma 0 stored float32 conductances (1 + 1/6 ...): the pair of a
    differential digital read-out with digital off-current compensation sat either side of an
    exact half-way tie and read 0 for x @ w.T = 1 (docs/hardware-model.md §9, example 2: exact).
    At sigma 0 the cells are programmed exactly, as with 'none', and no normals are drawn."""
    import cimsim

    base = cimsim.load_chip("ideal")
    x, w = np.array([[1, 1, 1]]), np.array([[1, 0, 0]])

    def chip(kind: str, sigma: float, p_stuck: float = 0.0):
        return base.replace(
            weight_bits=2, input_bits=1, weight_encoding="differential",
            differential_readout="digital", adc=base.adc.replace(bits=12),
            device=base.device.replace(cell="rram", bits_per_cell=1, on_off_ratio=7.0,
                                       off_current_compensation="digital", variation=kind,
                                       variation_sigma=sigma, p_stuck_off=p_stuck))

    assert chip(variation, 0.0).device.ideal and not chip(variation, 0.0).device.varies
    for c in (chip(variation, 0.0), chip("none", 0.0)):
        y, _ = cimsim.matmul(x, w, c)
        assert y.tolist() == [[1.0]]
    # with faults, the fault draws are those of 'none': no normals drawn before them
    d = np.arange(12).reshape(3, 4) % 2
    a = prog._program_conductance(d, chip(variation, 0.0, 0.3), np.random.default_rng(0))
    b = prog._program_conductance(d, chip("none", 0.0, 0.3), np.random.default_rng(0))
    assert np.array_equal(a, b)
    draws = prog.draw_devices((3, 4), chip(variation, 0.0, 0.3), np.random.default_rng(0))
    assert draws.z is None and draws.u is not None
