"""The simulation core, ``cimsim.matmul`` / ``cimsim.engine.run``.

Anchors: on the ideal chip every configuration reproduces ``x @ w.T`` exactly; with noise and
non-idealities on, the engine equals the plain-loop oracle ``matmul_reference``; the Numba
kernel equals its NumPy twin whatever the chunking; events are counted by hand on a tiny case.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cimsim
from cimsim import engine
from cimsim.arrays import _gemm
from cimsim.arrays._reference import matmul_reference
from cimsim.arrays._rng import stream_key
from cimsim.arrays.encoding import input_range, weight_range
from cimsim.arrays.program import program
from cimsim.config import ChipConfig
from cimsim.errors import ConfigError, MappingError
from cimsim.events import EventKey, Events
from tests.conftest import (
    ENCODINGS,
    assert_exact,
    exact_product,
    ideal_chip,
    random_inputs,
    random_weights,
)

SIGNEDNESS = (
    # (input_signed, dac.signed_inputs)
    (False, "twos_complement"),
    (True, "twos_complement"),
    (True, "two_pass"),
)


def _sign_id(signed: bool, mode: str) -> str:
    return f"s-{mode}" if signed else "u"


# ---------------------------------------------------------------------------------------------
# 1. lossless exactness on the ideal chip
# ---------------------------------------------------------------------------------------------
def _encoding_cases():
    for enc in ENCODINGS:
        for readout in ("analog", "digital") if enc == "differential" else ("analog",):
            for bpc in (1, 2, 4):
                for dac in (1, 2, None):
                    for signed, mode in SIGNEDNESS:
                        yield pytest.param(
                            enc, readout, bpc, dac, signed, mode,
                            id=f"{enc}-{readout}-c{bpc}-d{dac}-{_sign_id(signed, mode)}",
                        )


@pytest.mark.parametrize(("enc", "readout", "bpc", "dac", "signed", "mode"),
                         list(_encoding_cases()))
def test_ideal_chip_is_exact_on_ragged_tiling(enc, readout, bpc, dac, signed, mode):
    # K = 100 over 37-row arrays read 16 rows at a time; N = 7 outputs over 23-column arrays
    chip = ideal_chip(encoding=enc, differential_readout=readout, bits_per_cell=bpc,
                      dac_bits=dac, signed_inputs=mode, n_rows=37, n_cols=23,
                      rows_per_conversion=16)
    rng = np.random.default_rng(hash((enc, readout, bpc, dac, signed, mode)) % 2**32)
    x = random_inputs(rng, chip, signed, 5, 100, zeros=0.2)
    w = random_weights(rng, chip, 7, 100)
    y, ev = cimsim.matmul(x, w, chip)  # signedness inferred from x (it holds its minimum)
    assert y.dtype == np.float64
    assert_exact(y, x, w)
    assert ev[("layer", "mac", 0)] == 5 * 100 * 7


@pytest.mark.parametrize("enc", ENCODINGS)
@pytest.mark.parametrize("signed", [False, True], ids=["u", "s"])
@pytest.mark.parametrize(
    ("m", "k", "n"),
    [(1, 1, 1), (1, 1, 7), (4, 1, 1), (1, 100, 1), (3, 37, 23), (2, 74, 46), (2, 16, 3),
     (2, 17, 3), (1, 38, 24)],
)
def test_ideal_chip_is_exact_on_edge_shapes(enc, signed, m, k, n):
    chip = ideal_chip(encoding=enc, n_rows=37, n_cols=23, rows_per_conversion=16)
    rng = np.random.default_rng(m * 10007 + k * 101 + n)
    x = random_inputs(rng, chip, signed, m, k)
    w = random_weights(rng, chip, n, k)
    y, _ = cimsim.matmul(x, w, chip, input_signed=signed)
    assert_exact(y, x, w)


@pytest.mark.parametrize("enc", ENCODINGS)
def test_zero_input_vectors_give_an_empty_result(enc):
    chip = ideal_chip(encoding=enc, n_rows=37, n_cols=23, rows_per_conversion=16)
    w = random_weights(np.random.default_rng(0), chip, 7, 100)
    x = np.zeros((0, 100), dtype=np.int64)
    y, ev = cimsim.matmul(x, w, chip)
    assert y.shape == (0, 7)
    assert y.dtype == np.float64
    assert all(v == 0 for v in ev.values())


def _bits_cases():
    for enc in ENCODINGS:
        for ib in (1, 3, 8):
            for wb in (2, 5, 8):
                for dac in (1, 2, None):
                    if dac is not None and dac > ib:
                        continue
                    for signed, mode in SIGNEDNESS:
                        yield pytest.param(enc, ib, wb, dac, signed, mode,
                                           id=f"{enc}-x{ib}-w{wb}-d{dac}-{_sign_id(signed, mode)}")


@pytest.mark.parametrize(("enc", "ib", "wb", "dac", "signed", "mode"), list(_bits_cases()))
def test_ideal_chip_is_exact_for_operand_widths(enc, ib, wb, dac, signed, mode):
    chip = ideal_chip(encoding=enc, input_bits=ib, weight_bits=wb, dac_bits=dac,
                      signed_inputs=mode, bits_per_cell=3, n_rows=19, n_cols=11,
                      rows_per_conversion=7)
    rng = np.random.default_rng(ib * 1000 + wb * 10 + (dac or 0))
    x = random_inputs(rng, chip, signed, 3, 45)
    w = random_weights(rng, chip, 5, 45)
    y, _ = cimsim.matmul(x, w, chip, input_signed=signed)
    assert_exact(y, x, w)


def test_an_outputs_columns_never_span_two_arrays_when_n_cols_is_not_a_multiple():
    """99 columns hold 24 outputs of 4 physical columns (pos/neg x 2 slices): 96 used, 3 left
    empty, so no output (and no analog pair, converted as one) is split across two arrays.
    Guards ``cols_per_tile`` against filling all 99 columns, which put output 24's columns
    in two arrays whose analog pair could not be subtracted before one ADC."""
    chip = ideal_chip(n_cols=99, bits_per_cell=2, weight_bits=5, encoding="differential",
                      differential_readout="analog")
    w = random_weights(np.random.default_rng(0), chip, 30, 8)
    layer = program(w, chip)
    assert layer.kinds.n_kinds == 4
    assert layer.cols_per_tile == 96 and layer.n_col_tiles == 2  # 120 columns: 96 + 24
    tile_of = np.where(layer.conv_phys >= 0, layer.conv_phys // layer.cols_per_tile, -1)
    for n in range(30):
        tiles = set(tile_of[layer.out_col == n].ravel()) - {-1}
        assert tiles == {n // 24}, n
    assert np.array_equal(layer.conv_col_tile, layer.out_col // 24)
    x = random_inputs(np.random.default_rng(1), chip, False, 5, 8)
    y, _ = engine.run(layer, x)
    assert_exact(y, x, w)


def test_custom_row_tiles_are_exact_and_validated():
    chip = ideal_chip(n_rows=9, n_cols=16, rows_per_conversion=4)
    rng = np.random.default_rng(3)
    x = random_inputs(rng, chip, False, 4, 27)
    w = random_weights(rng, chip, 5, 27)
    tiles = [(0, 9), (9, 18), (18, 27)]  # e.g. kernel-preserving: one 3x3 kernel per tile
    y, _ = cimsim.matmul(x, w, chip, row_tiles=[(0, 6), (6, 9), (9, 18), (18, 27)])
    assert_exact(y, x, w)
    y, _ = cimsim.matmul(x, w, chip, row_tiles=tiles)
    assert_exact(y, x, w)
    for bad in ([(0, 10), (10, 27)], [(0, 9), (10, 27)], [(0, 9), (9, 20)], [(0, 0), (0, 9)]):
        with pytest.raises(MappingError, match="row_tiles"):
            cimsim.matmul(x, w, chip, row_tiles=bad)


@pytest.mark.parametrize("dac", [1, None])
def test_sixteen_bit_inputs_are_simulated_exactly(dac):
    # ChipConfig allows input_bits up to 16 (bit-serial or a one-shot 16-bit DAC); such inputs
    # are simulated (int32 planes, the float64 GEMM), exactly on the ideal chip. 17 is refused.
    chip = ideal_chip(input_bits=16, dac_bits=dac, n_rows=4)
    assert chip.input_bits == 16 and chip.dac_bits == (16 if dac is None else dac)
    x = np.array([[65535, 1, 40000], [0, 65535, 65534]])
    w = np.array([[1, -2, 3], [127, -127, 5]])
    layer = program(w, chip)
    for kernel in ("numba", "numpy"):
        y, _ = engine.run(layer, x, kernel=kernel)
        assert_exact(y, x, w)
    with pytest.raises(ConfigError, match="input_bits"):
        ideal_chip(input_bits=17, dac_bits=dac)


# ---------------------------------------------------------------------------------------------
# 2. exactness, property-based
# ---------------------------------------------------------------------------------------------
def _draw_mapping(draw, input_bits: int, n_rows: int, max_cell_bits: int, max_weight_bits: int,
                  max_cols: int) -> dict:
    """Encoding, cell and DAC bits, signed-input mode and tiling of a drawn ``ideal_chip``."""
    return dict(
        encoding=draw(st.sampled_from(ENCODINGS)),
        differential_readout=draw(st.sampled_from(["analog", "digital"])),
        bits_per_cell=draw(st.integers(1, max_cell_bits)),
        input_bits=input_bits,
        weight_bits=draw(st.integers(2, max_weight_bits)),
        dac_bits=draw(st.none() | st.integers(1, input_bits)),
        signed_inputs=draw(st.sampled_from(["twos_complement", "two_pass"])),
        n_rows=n_rows,
        rows_per_conversion=draw(st.none() | st.integers(1, n_rows)),
        n_cols=draw(st.integers(2, max_cols)),
    )


@st.composite
def ideal_problems(draw):
    input_bits = draw(st.integers(1, 8))
    n_rows = draw(st.integers(1, 40))
    chip = ideal_chip(**_draw_mapping(draw, input_bits, n_rows, 4, 8, 30))
    m, k, n = draw(st.integers(1, 6)), draw(st.integers(1, 80)), draw(st.integers(1, 12))
    signed = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = random_inputs(rng, chip, signed, m, k, zeros=draw(st.sampled_from([0.0, 0.5])))
    w = random_weights(rng, chip, n, k)
    chunk = draw(st.sampled_from([None, 1, 2]))
    return chip, x, w, signed, chunk


@settings(max_examples=200)
@given(ideal_problems())
def test_ideal_chip_is_exact_property(problem):
    chip, x, w, signed, chunk = problem
    y, ev = cimsim.matmul(x, w, chip, input_signed=signed, chunk_vectors=chunk)
    assert_exact(y, x, w)
    assert ev[("layer", "mac", 0)] == x.shape[0] * x.shape[1] * w.shape[0]


# ---------------------------------------------------------------------------------------------
# 3. engine == plain-loop reference, noise and non-idealities on
# ---------------------------------------------------------------------------------------------
_NONLINEARITY = st.sampled_from(["none", "saturating", "polynomial", "ir_drop"])


@st.composite
def noisy_problems(draw):
    input_bits = draw(st.integers(1, 5))
    n_rows = draw(st.integers(1, 10))
    nl = draw(_NONLINEARITY)
    variation = draw(st.sampled_from(["none", "lognormal", "gaussian"]))
    chip = ideal_chip(
        **_draw_mapping(draw, input_bits, n_rows, 3, 5, 12),
        on_off_ratio=draw(st.sampled_from([math.inf, 5.0, 17.0, 100.0])),
        off_current_compensation=draw(st.sampled_from(["none", "analog", "digital"])),
        variation=variation,
        variation_sigma=0.0 if variation == "none" else draw(st.floats(0.01, 0.4)),
        p_stuck_on=draw(st.sampled_from([0.0, 0.05])),
        p_stuck_off=draw(st.sampled_from([0.0, 0.05])),
        noise=dict(
            thermal_sigma_lsb=draw(st.sampled_from([0.0, 0.3, 2.0])),
            read_noise_rel=draw(st.sampled_from([0.0, 0.05])),
            nonlinearity=nl,
            saturation_fraction=draw(st.floats(0.2, 2.0)),
            poly_coeffs=tuple(draw(st.lists(st.floats(-0.3, 0.3), min_size=1, max_size=3)))
            if nl == "polynomial" else (),
            ir_drop_beta=draw(st.floats(0.0, 0.8)),
        ),
        adc=draw_adc(draw, 60.0),
    )
    return noisy_operands(draw, chip)


def draw_adc(draw, max_span: float) -> dict:
    """A lossy linear ADC's settings: policy, range (a fixed one up to ``max_span`` wide),
    calibration, gain, offset and comparator noise."""
    fixed_lo = draw(st.floats(-40.0, 10.0))
    return dict(
        bits=draw(st.integers(2, 9)),
        range_policy=draw(st.sampled_from(["full_scale", "fixed", "calibrated"])),
        full_scale_factor=draw(st.floats(1.0, 4.0)),
        fixed_lo=fixed_lo,
        fixed_hi=fixed_lo + draw(st.floats(1.0, max_span)),
        calibration_granularity=draw(st.sampled_from(["layer", "array", "column"])),
        calibration_stat=draw(st.sampled_from(["minmax", "percentile", "mean_std"])),
        percentile=draw(st.floats(90.0, 100.0)),
        n_sigma=draw(st.floats(0.5, 4.0)),
        gain_error=draw(st.sampled_from([0.0, -0.03, 0.05])),
        offset_error_lsb=draw(st.sampled_from([0.0, 0.4, -0.7])),
        comparator_noise_lsb=draw(st.sampled_from([0.0, 0.3])),
    )


def noisy_operands(draw, chip):
    """``(chip, x, x_cal, w, signed, prog_seed, noise_seed)``: small operands for ``chip``."""
    m, k, n = draw(st.integers(1, 3)), draw(st.integers(1, 14)), draw(st.integers(1, 3))
    signed = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = random_inputs(rng, chip, signed, m, k, zeros=0.3)
    x_cal = random_inputs(rng, chip, signed, draw(st.integers(1, 6)), k, extremes=False)
    w = random_weights(rng, chip, n, k)
    prog_seed = draw(st.integers(0, 2**32 - 1))
    noise_seed = draw(st.integers(0, 2**63 - 1))
    return chip, x, x_cal, w, signed, prog_seed, noise_seed


def test_reference_keeps_code_ties_under_analog_off_current_compensation():
    """Nominal cells with a finite on/off ratio and analog compensation: the engine sums the
    digits exactly, the reference summed (d + g_off) and took g_off * sum(x) back, and the
    float residue pushed an integer sum on a code boundary (a tie, step 2 here) to either side:
    12 of 32 outputs apart, by up to 16384 (a fuzz hunt)."""
    chip = cimsim.load_chip("ideal")
    chip = chip.replace(
        device=chip.device.replace(cell="rram", on_off_ratio=10.0,
                                   off_current_compensation="analog"),
        adc=chip.adc.replace(bits=4, range_policy="fixed", fixed_lo=0.0, fixed_hi=30.0))
    rng = np.random.default_rng(0)
    w, x = rng.integers(0, 128, (8, 64)), rng.integers(0, 256, (4, 64))
    layer = program(w, chip, np.random.default_rng(0), input_signed=False)
    y, _ = engine.run(layer, x)
    np.testing.assert_array_equal(y, matmul_reference(x, layer))


@settings(max_examples=100)
@given(noisy_problems())
def test_engine_equals_reference_with_nonidealities(problem):
    chip, x, x_cal, w, signed, prog_seed, noise_seed = problem
    layer = program(w, chip, np.random.default_rng(prog_seed), input_signed=signed)
    layer = engine.calibrate(layer, x_cal)  # unchanged unless the policy is 'calibrated'
    y, _ = engine.run(layer, x, noise_seed=noise_seed)
    y_ref = matmul_reference(x, layer, noise_seed=noise_seed)
    close = np.isclose(y, y_ref, rtol=1e-9, atol=1e-6)
    if layer.gemm_matrix.dtype == np.float32 and not close.all():
        # Programmed conductances are multiplied in float32 (docs/hardware-model.md), the
        # reference sums in float64: a noisy value within ~1e-6 LSB of a code boundary can
        # convert one code apart. That must be rare, and the float64 GEMM must match exactly.
        assert close.mean() >= 0.99
        y, _ = engine.run(layer, x, noise_seed=noise_seed, gemm="float64")
    np.testing.assert_allclose(y, y_ref, rtol=1e-9, atol=1e-6)


@pytest.mark.parametrize("stat", ["minmax", "percentile", "mean_std"])
@pytest.mark.parametrize("granularity", ["layer", "array", "column"])
def test_calibrated_ranges_engine_equals_reference(granularity, stat):
    chip = ideal_chip(n_rows=6, n_cols=6, rows_per_conversion=3, input_bits=4, weight_bits=4,
                      variation="lognormal", variation_sigma=0.1,
                      noise=dict(thermal_sigma_lsb=0.5),
                      adc=dict(bits=4, range_policy="calibrated",
                               calibration_granularity=granularity, calibration_stat=stat,
                               percentile=95.0, n_sigma=2.0))
    rng = np.random.default_rng(11)
    w = random_weights(rng, chip, 4, 13)
    x_cal = random_inputs(rng, chip, False, 40, 13)
    x = random_inputs(rng, chip, False, 3, 13)
    layer = program(w, chip, np.random.default_rng(5))
    layer = engine.calibrate(layer, x_cal)
    assert layer.adc.lo.shape == (layer.n_groups, layer.n_conversions)
    n_distinct = len(np.unique(layer.adc.lo))
    if granularity == "layer":
        assert n_distinct == 1
    y, _ = engine.run(layer, x, noise_seed=9)
    np.testing.assert_allclose(y, matmul_reference(x, layer, noise_seed=9), rtol=1e-9,
                               atol=1e-6)
    # cimsim.matmul with calibration= does the same: programming rng default_rng(seed), ranges
    # from the calibration inputs (not from x), conversion noise from stream_key(seed, 1); the
    # plain-loop oracle on that layer gives its values
    y_api, _ = cimsim.matmul(x, w, chip, seed=5, calibration=x_cal)
    y_oracle = matmul_reference(x, layer, noise_seed=stream_key(5, 1))
    np.testing.assert_allclose(y_api, y_oracle, rtol=1e-9, atol=1e-6)
    assert not np.allclose(y_api, y, rtol=1e-9, atol=1e-6)  # another noise draw than seed 9


# ---------------------------------------------------------------------------------------------
# 4. Numba kernel == NumPy twin, independent of the chunking
# ---------------------------------------------------------------------------------------------
def _noisy_chip(**changes):
    base = dict(
        n_rows=37, n_cols=23, rows_per_conversion=16, bits_per_cell=2, on_off_ratio=17.0,
        off_current_compensation="digital", variation="lognormal", variation_sigma=0.1,
        p_stuck_on=0.01, p_stuck_off=0.01,
        noise=dict(thermal_sigma_lsb=0.7, read_noise_rel=0.03, nonlinearity="saturating",
                   saturation_fraction=0.8),
        adc=dict(bits=5, full_scale_factor=2.0, gain_error=0.02, offset_error_lsb=0.3,
                 comparator_noise_lsb=0.2),
    )
    base.update(changes)
    return ideal_chip(**base)


KERNEL_CHIPS = {
    "noisy-diff-analog": _noisy_chip(),
    "noisy-diff-digital": _noisy_chip(differential_readout="digital"),
    "noisy-twos-two-pass": _noisy_chip(encoding="twos_complement", signed_inputs="two_pass",
                                       off_current_compensation="none"),
    "noisy-offset-polynomial": _noisy_chip(encoding="offset", dac_bits=2,
                                           noise=dict(thermal_sigma_lsb=1.0,
                                                      nonlinearity="polynomial",
                                                      poly_coeffs=(0.05, -0.02))),
    "signed-cell-ir-drop": _noisy_chip(encoding="signed_cell", dac_bits=None,
                                       noise=dict(nonlinearity="ir_drop", ir_drop_beta=0.3)),
    "ideal-digits-thermal": ideal_chip(n_rows=37, n_cols=23, rows_per_conversion=16,
                                       noise=dict(thermal_sigma_lsb=1.5),
                                       adc=dict(bits=6)),
}


@pytest.mark.parametrize("name", list(KERNEL_CHIPS))
@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (7, 100, 9), (5, 37, 23)])
@pytest.mark.parametrize("signed", [False, True], ids=["u", "s"])
def test_numba_kernel_equals_numpy_twin_for_any_chunking(name, m, k, n, signed):
    chip = KERNEL_CHIPS[name]
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    w = random_weights(rng, chip, n, k)
    x = random_inputs(rng, chip, signed, m, k, zeros=0.2)
    layer = program(w, chip, np.random.default_rng(1), input_signed=signed)
    outs, events = {}, {}
    for kernel in ("numba", "numpy"):
        for chunk in (1, 3, None):
            outs[kernel, chunk], events[kernel, chunk] = engine.run(
                layer, x, noise_seed=123, kernel=kernel, chunk_vectors=chunk)
    ref, ref_ev = outs["numba", None], events["numba", None]
    assert ref.shape == (m, n)
    for key, y in outs.items():
        np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-9, err_msg=str(key))
        assert dict(events[key]) == pytest.approx(dict(ref_ev), rel=1e-12), key


def test_numba_kernel_equals_twin_when_the_adc_saturates_by_far():
    # a valid fixed ADC range of 1e-14 cell-LSB: 255 x 3-digit sums are ~4e19 steps above it
    chip = ideal_chip(dac_bits=None, adc=dict(bits=8, range_policy="fixed", fixed_lo=0.0,
                                              fixed_hi=1e-14))
    x, w = np.array([[255, 255]]), np.array([[127, 127]])
    layer = program(w, chip)
    y_ref = matmul_reference(x, layer)
    np.testing.assert_allclose(engine.run(layer, x, kernel="numpy")[0], y_ref, rtol=1e-12)
    np.testing.assert_allclose(engine.run(layer, x, kernel="numba")[0], y_ref, rtol=1e-12)


def test_events_do_not_depend_on_the_chunking():
    chip = KERNEL_CHIPS["noisy-diff-analog"]
    rng = np.random.default_rng(2)
    w = random_weights(rng, chip, 9, 100)
    x = random_inputs(rng, chip, False, 7, 100, zeros=0.4)
    layer = program(w, chip, np.random.default_rng(1))
    _, ev1 = engine.run(layer, x, chunk_vectors=1)
    _, ev3 = engine.run(layer, x, chunk_vectors=3)
    _, ev = engine.run(layer, x)
    assert set(ev1) == set(ev) == set(ev3)
    for key in ev:
        assert ev1[key] == pytest.approx(ev[key], rel=1e-12)
        assert ev3[key] == pytest.approx(ev[key], rel=1e-12)


# ---------------------------------------------------------------------------------------------
# 5. GEMM paths agree exactly on ideal digits
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("enc", "dac", "input_bits", "signed"),
    [("differential", 1, 8, False), ("twos_complement", 2, 8, True), ("offset", None, 7, False),
     ("signed_cell", 4, 8, True), ("differential", None, 8, True)],
)
@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (6, 100, 7)])
def test_gemm_kinds_agree_exactly(enc, dac, input_bits, signed, m, k, n):
    chip = ideal_chip(encoding=enc, dac_bits=dac, input_bits=input_bits, n_rows=37, n_cols=23,
                      rows_per_conversion=16)
    rng = np.random.default_rng(k + n)
    w = random_weights(rng, chip, n, k)
    x = random_inputs(rng, chip, signed, m, k)
    layer = program(w, chip, np.random.default_rng(0), input_signed=signed)
    assert layer.gemm_matrix.dtype == np.int8
    lo, hi = input_range(chip, signed)
    planes_lo, planes_hi = _plane_bounds(chip, signed)
    a_max = max(abs(planes_lo), abs(planes_hi))
    b_max = int(np.abs(layer.gemm_matrix.astype(np.int64)).max())
    kinds = ["float32", "float64", "auto"]
    if _gemm.choose(a_max, b_max, chip.array.rows_per_group, True) == "int8":
        kinds.append("int8")
    else:
        assert a_max > 127  # only 8-bit one-shot planes keep the int8 path out
    results = {kind: engine.run(layer, x, gemm=kind)[0] for kind in kinds}
    for kind, y in results.items():
        assert_exact(y, x, w), kind
    assert lo <= x.min() and x.max() <= hi


def _plane_bounds(chip: ChipConfig, signed: bool) -> tuple[int, int]:
    from cimsim.arrays.encoding import plane_layout

    _, lo, hi = plane_layout(chip, signed)
    return lo, hi


def test_gemm_choose_picks_the_narrowest_exact_kind():
    if _gemm.int8_matmul() is not None:
        assert _gemm.choose(127, 127, 256, True) == "int8"
    assert _gemm.choose(127, 127, 256, True, allow_int8=False) == "float32"
    assert _gemm.choose(128, 3, 256, True) == "float32"
    assert _gemm.choose(3, 3, 256, False) == "float32"  # conductances are never int8
    assert _gemm.choose(255, 15, 2**24 // (255 * 15), False) == "float32"
    assert _gemm.choose(255, 15, 2**24 // (255 * 15) + 1, False) == "float64"


def test_gemm_kinds_exact_within_their_bounds():
    rng = np.random.default_rng(8)
    a = rng.integers(-127, 128, size=(5, 300))
    b = rng.integers(-127, 128, size=(300, 4))
    expected = a @ b
    for kind in ("int8", "float32", "float64") if _gemm.int8_matmul() else ("float32", "float64"):
        out = _gemm.gemm(a.astype(np.int8), b.astype(np.int8), kind)
        assert np.array_equal(out.astype(np.int64), expected), kind
    # 12-bit one-shot planes x 7-bit digits x 64 rows exceed float32's 2^24 integers
    a = np.full((2, 64), 4095) - np.arange(64)
    b = np.full((64, 3), 127) - np.arange(3)
    assert _gemm.choose(4095, 127, 64, True) == "float64"
    assert np.array_equal(_gemm.gemm(a, b, "float64").astype(np.int64), a @ b)


def test_forced_int8_gemm_is_refused_beyond_int8_and_exact_within():
    # one-shot 8-bit planes reach 255, outside int8: forcing the int8 GEMM is refused up front
    chip = ideal_chip(dac_bits=None)
    x = np.array([[255, 200, 3]])
    w = np.array([[1, 1, 1]])
    with pytest.raises(ValueError, match="gemm = 'int8' needs plane values .* planes reach 255"):
        engine.run(program(w, chip), x, gemm="int8")
    # 7-bit one-shot planes (<= 127) fit: the forced int8 GEMM runs and is exact
    chip7 = ideal_chip(dac_bits=None, input_bits=7)
    x7 = np.array([[127, 100, 3], [0, 1, 126]])
    if _gemm.int8_matmul() is None:
        pytest.skip("no int8 GEMM here (torch._int_mm); the fallback is tested below")
    y, _ = engine.run(program(w, chip7), x7, gemm="int8")
    assert_exact(y, x7, w)


def test_without_the_int8_gemm_float32_gives_the_same_result(monkeypatch):
    chip = ideal_chip(encoding="twos_complement", dac_bits=2, n_rows=37, n_cols=23,
                      rows_per_conversion=16)
    rng = np.random.default_rng(3)
    w = random_weights(rng, chip, 7, 100)
    x = random_inputs(rng, chip, True, 6, 100)
    layer = program(w, chip, np.random.default_rng(0), input_signed=True)
    y_auto, ev_auto = engine.run(layer, x)
    a = rng.integers(-127, 128, size=(5, 300)).astype(np.int8)
    b = rng.integers(-127, 128, size=(300, 4)).astype(np.int8)
    with monkeypatch.context() as m:
        m.setattr(_gemm, "int8_matmul", lambda: None)  # torch without _int_mm
        assert _gemm.choose(127, 127, 256, True) == "float32"
        y_float, ev_float = engine.run(layer, x)
        with pytest.raises(RuntimeError, match="torch._int_mm.*gemm = 'auto'"):
            _gemm.gemm(a, b, "int8")
    assert np.array_equal(y_float, y_auto)
    assert dict(ev_float) == dict(ev_auto)
    assert_exact(y_float, x, w)
    assert np.array_equal(_gemm.gemm(a, b, "float32").astype(np.int64),
                          a.astype(np.int64) @ b.astype(np.int64))


# ---------------------------------------------------------------------------------------------
# 6. determinism
# ---------------------------------------------------------------------------------------------
def _noisy_problem():
    chip = cimsim.load_chip("rram-22nm")
    chip = chip.replace(array=chip.array.replace(n_rows=32, n_cols=32, cols_per_adc=8))
    rng = np.random.default_rng(4)
    w = random_weights(rng, chip, 6, 70)
    x = random_inputs(rng, chip, False, 64, 70, zeros=0.3)
    return chip, x, w


def test_same_seed_same_result_different_seed_different_result():
    chip, x, w = _noisy_problem()
    y1, ev1 = cimsim.matmul(x, w, chip, seed=7, calibration=x)
    y2, ev2 = cimsim.matmul(x, w, chip, seed=7, calibration=x)
    y3, _ = cimsim.matmul(x, w, chip, seed=8, calibration=x)
    assert np.array_equal(y1, y2)
    assert dict(ev1) == dict(ev2)
    assert not np.array_equal(y1, y3)
    # noise only: same programmed layer, different noise seeds
    layer = engine.calibrate(program(w, chip, np.random.default_rng(0)), x)
    ya, _ = engine.run(layer, x, noise_seed=1)
    yb, _ = engine.run(layer, x, noise_seed=1)
    yc, _ = engine.run(layer, x, noise_seed=2)
    assert np.array_equal(ya, yb)
    assert not np.array_equal(ya, yc)


_THREADS_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import numba
    import cimsim
    from tests.test_matmul import _noisy_problem

    chip, x, w = _noisy_problem()
    y, _ = cimsim.matmul(x, w, chip, seed=3, calibration=x, chunk_vectors=16)
    np.save(sys.argv[1], y)
    print(numba.get_num_threads())
    """
)


def test_result_does_not_depend_on_the_thread_count(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digests = {}
    for threads in ("1", "2"):
        out = tmp_path / f"y{threads}.npy"
        env = {**os.environ, "NUMBA_NUM_THREADS": threads,
               "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT, str(out)], env=env,
                              cwd=root, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split()[-1] == threads
        digests[threads] = hashlib.sha256(np.load(out).tobytes()).hexdigest()
    assert digests["1"] == digests["2"]


# ---------------------------------------------------------------------------------------------
# 7. noise statistics
# ---------------------------------------------------------------------------------------------
def _single_conversion_chip(**noise):
    # 2 magnitude bits in 2-bit cells: one slice; one-shot DAC: one plane; 16 <= 256 rows:
    # one conversion (a differential pair read in analog) per output
    return ideal_chip(weight_bits=3, bits_per_cell=2, input_bits=4, dac_bits=None,
                      noise=noise)


@pytest.mark.parametrize("sigma", [0.8, 2.0, 5.0])
def test_thermal_noise_std_matches_config(sigma):
    chip = _single_conversion_chip(thermal_sigma_lsb=sigma)
    rng = np.random.default_rng(0)
    w = random_weights(rng, chip, 4, 16)
    x = np.repeat(random_inputs(rng, chip, False, 1, 16), 2000, axis=0)
    layer = program(w, chip)
    assert layer.n_groups == 1 and layer.n_conversions == 4
    y, _ = engine.run(layer, x, noise_seed=17)
    err = (y - exact_product(x, w)).ravel()  # 8000 draws
    # the lossless ADC rounds to whole cell-LSB: variance sigma^2 + 1/12 (Sheppard)
    expected = math.sqrt(sigma**2 + 1 / 12)
    assert np.std(err) == pytest.approx(expected, rel=0.05)
    assert abs(np.mean(err)) < 4 * expected / math.sqrt(err.size)
    # every output of every vector gets fresh noise
    assert np.std(err.reshape(2000, 4)[:, 0]) > 0.5 * sigma


def test_read_noise_variance_matches_prediction():
    rel = 0.05
    chip = _single_conversion_chip(read_noise_rel=rel)
    rng = np.random.default_rng(1)
    w = random_weights(rng, chip, 3, 16)
    x1 = random_inputs(rng, chip, False, 1, 16)
    x = np.repeat(x1, 4000, axis=0)
    layer = program(w, chip)
    y, _ = engine.run(layer, x, noise_seed=5)
    err = y - exact_product(x, w)
    # per cell sigma = rel * G with G = |w| (one slice, one polarity per weight):
    # var = sum_k x_k^2 rel^2 w_k^2, plus 1/12 of ADC rounding
    predicted = rel**2 * (x1.astype(float) ** 2 @ (w.T.astype(float) ** 2)).ravel() + 1 / 12
    assert np.all(predicted > 4)
    np.testing.assert_allclose(err.var(axis=0), predicted, rtol=0.08)
    assert np.all(np.abs(err.mean(axis=0)) < 4 * np.sqrt(predicted / err.shape[0]))


# ---------------------------------------------------------------------------------------------
# 9. events, counted by hand
# ---------------------------------------------------------------------------------------------
def _tiny_chip():
    return ideal_chip(n_rows=4, n_cols=8, rows_per_conversion=2, bits_per_cell=2,
                      encoding="differential", differential_readout="analog", weight_bits=5,
                      dac_bits=1, input_bits=3)


TINY_X = np.array([[0, 1, 2, 3, 0, 7],
                   [5, 0, 0, 4, 6, 0]])
TINY_W = np.array([[15, -15, 0, 1, -1, 5],
                   [0, 3, -4, 12, 7, -8],
                   [-9, 2, 15, 0, 10, -15]])


def test_events_counted_by_hand():
    chip = _tiny_chip()
    y, ev = cimsim.matmul(TINY_X, TINY_W, chip)
    assert_exact(y, TINY_X, TINY_W)
    # Layout. weight_bits 5 -> 4 magnitude bits -> 2 slices of 2 bits; differential: Q = 4
    # physical columns per output (pos/neg x 2 slices), 12 in all; the analog pair is one
    # conversion: C = 2 per output, 6 in all. 8 columns per array hold 2 outputs:
    # 2 column tiles. K = 6 over 4-row arrays: row tiles (0,4), (4,6); 2 rows per conversion:
    # row groups (0,2), (2,4), (4,6): G = 3. 3 input bits, 1 per cycle: P = 3 planes.
    m, p, g, c, col_tiles, phys_cols, row_tiles = 2, 3, 3, 6, 2, 12, 2
    assert ev[("adc", "convert", 24)] == m * p * g * c == 108
    assert ev[("shift_add", "add", 32)] == 108
    assert ev[("accumulator", "add", 32)] == m * 3 * g == 18
    assert ev[("layer", "mac", 0)] == m * 6 * 3 == 36
    assert ev[("array", "activation", 0)] == m * p * g * col_tiles == 36
    # nonzero (plane, vector, row) drives = popcounts:
    #   vector 0: 0,1,2,3,0,7 -> 0+1+1+2+0+3 = 7;  vector 1: 5,0,0,4,6,0 -> 2+0+0+1+2+0 = 5
    active = 7 + 5
    # each drive pulses the row in every column tile and reads every physical column
    assert ev[("dac", "pulse", 1)] == active * col_tiles == 24
    assert ev[("cell", "read", 2)] == active * phys_cols == 144
    # sum of V^2 G: per row k, popcount summed over vectors x the row's digit sum over all
    # physical columns; a magnitude v in 2-bit slices has digit sum v % 4 + v // 4:
    #   row digit sums: k0: 15,0,9 -> 6+0+3 = 9;   k1: 15,3,2 -> 6+3+2 = 11;
    #                   k2: 0,4,15 -> 0+1+6 = 7;   k3: 1,12,0 -> 1+3+0 = 4;
    #                   k4: 1,7,10 -> 1+4+4 = 9;   k5: 5,8,15 -> 2+2+6 = 10
    #   popcounts per row over both vectors: 2, 1, 1, 3, 2, 3
    assert ev[("cell", "v2g_lsb", 0)] == 2 * 9 + 1 * 11 + 1 * 7 + 3 * 4 + 2 * 9 + 3 * 10 == 96
    # every column tile reads every input from the buffer, every output is written once
    assert ev[("buffer", "read_bit", 0)] == m * 6 * 3 * col_tiles == 72
    assert ev[("buffer", "write_bit", 0)] == m * 3 * 32 == 192
    # partial outputs of the second row tile travel to the first
    assert ev[("interconnect", "bit", 0)] == m * 3 * 32 * (row_tiles - 1) == 192
    assert ev.get(("digital", "correction_add", 32)) == 0  # nothing to correct
    assert ev.get(("adc", "convert", 8)) == 0  # other widths are absent


@pytest.mark.parametrize("kernel", ["numba", "numpy"])
def test_events_counted_by_hand_with_a_2_bit_dac(kernel):
    """A 2-b DAC drives each row at the value of its 2-b slice, so the read energy's sum is
    Σ x_p[k]² · (row's conductance), not Σ |x_p[k]| (they agree only for 1-b planes, which is
    all the by-hand count above checks). Guards the plane builders' squared drive (the Numba
    kernel's and the NumPy path's ``cell.v2g_lsb``)."""
    chip = _tiny_chip().replace(dac=_tiny_chip().dac.replace(bits=2))
    layer = program(TINY_W, chip)
    y, ev = engine.run(layer, TINY_X, kernel=kernel)
    assert_exact(y, TINY_X, TINY_W)
    # 3 input bits in 2-b slices: planes (x & 3, x >> 2), P = 2
    #   vector 0: 0,1,2,3,0,7 -> (0,0) (1,0) (2,0) (3,0) (0,0) (3,1)
    #   vector 1: 5,0,0,4,6,0 -> (1,1) (0,0) (0,0) (0,1) (2,1) (0,0)
    m, p, g, c, col_tiles = 2, 2, 3, 6, 2
    assert ev[("adc", "convert", 24)] == m * p * g * c == 72
    active = 5 + 5  # nonzero slices: vector 0 rows 1, 2, 3 and 5 (twice); vector 1: 5
    assert ev[("dac", "pulse", 2)] == active * col_tiles == 20
    # Σ over vectors and planes of the slice squared, per row: k0 1+1 = 2, k1 1, k2 4,
    # k3 9+1 = 10, k4 4+1 = 5, k5 9+1 = 10; times the row digit sums above (9, 11, 7, 4, 9, 10)
    assert ev[("cell", "v2g_lsb", 0)] == 2 * 9 + 1 * 11 + 4 * 7 + 10 * 4 + 5 * 9 + 10 * 10 == 242


@pytest.mark.parametrize("kernel", ["numba", "numpy"])
@pytest.mark.parametrize("mode,v2g", [("twos_complement", 205), ("two_pass", 299)])
def test_signed_2_bit_slices_are_squared_in_the_read_energy(mode, v2g, kernel):
    """Signed 4-b inputs in 2-b slices: the read energy's sum squares every slice, the
    two's-complement top plane's negative digit (-7 = 1 - 2·4: -2 -> 4) and the two-pass
    magnitudes' (3 -> 9) too. Guards the plane builder's signed branches against summing
    |slice| there."""
    chip = _tiny_chip().replace(input_bits=4, dac=_tiny_chip().dac.replace(
        bits=2, signed_inputs=mode))
    x = np.array([[-7, 7, -3, 2, 0, 5]])  # (4-b signed: [-7, 7])
    y, ev = engine.run(program(TINY_W, chip, input_signed=True), x, kernel=kernel)
    assert_exact(y, x, TINY_W)
    # slices squared, summed per row (row digit sums 9, 11, 7, 4, 9, 10, as above):
    #   two's complement (x & 3, x >> 2): -7 (1, -2) 5; 7 (3, 1) 10; -3 (1, -1) 2; 2 (2, 0) 4;
    #     5 (1, 1) 2 -> 5·9 + 10·11 + 2·7 + 4·4 + 0·9 + 2·10 = 205
    #   two passes (|x| & 3, |x| >> 2 on the sign's pass): -7 (3, 1) 10; 7 (3, 1) 10;
    #     -3 (3, 0) 9; 2 (2, 0) 4; 5 (1, 1) 2 -> 10·9 + 10·11 + 9·7 + 4·4 + 0·9 + 2·10 = 299
    assert ev[("cell", "v2g_lsb", 0)] == v2g


def test_offset_encoding_counts_its_digital_correction():
    chip = _tiny_chip().replace(weight_encoding="offset")
    _, ev = cimsim.matmul(TINY_X, TINY_W, chip)
    assert ev[("digital", "correction_add", 32)] == 2 * 3


def test_sparser_inputs_give_fewer_dac_pulses():
    chip = _tiny_chip()
    sparse = TINY_X.copy()
    sparse[:, ::2] = 0
    _, dense_ev = cimsim.matmul(TINY_X, TINY_W, chip)
    _, sparse_ev = cimsim.matmul(sparse, TINY_W, chip)
    key = ("dac", "pulse", 1)
    assert sparse_ev[key] < dense_ev[key]
    assert sparse_ev[("cell", "read", 2)] < dense_ev[("cell", "read", 2)]
    assert sparse_ev[("adc", "convert", 24)] == dense_ev[("adc", "convert", 24)]
    _, zero_ev = cimsim.matmul(np.zeros_like(TINY_X), TINY_W, chip)
    assert zero_ev[key] == 0 and zero_ev[("cell", "v2g_lsb", 0)] == 0


def test_events_add_up():
    chip = _tiny_chip()
    _, ev_a = cimsim.matmul(TINY_X[:1], TINY_W, chip)
    _, ev_b = cimsim.matmul(TINY_X[1:], TINY_W, chip)
    _, ev_ab = cimsim.matmul(TINY_X, TINY_W, chip)
    total = ev_a + ev_b
    assert isinstance(total, Events)
    assert dict(total) == pytest.approx(dict(ev_ab))
    assert dict(sum([ev_a, ev_b], Events())) == pytest.approx(dict(ev_ab))
    assert dict({("adc", "convert", 24): 1.0} + ev_a)[EventKey("adc", "convert", 24)] == (
        ev_a[("adc", "convert", 24)] + 1.0)
    assert dict(ev_ab.scaled(0.5)) == pytest.approx({k: v / 2 for k, v in ev_ab.items()})
    assert ev_a[("adc", "convert", 24)] == 54  # addition did not mutate its operands


# ---------------------------------------------------------------------------------------------
# 10. bad inputs: clear errors, never a Numba traceback
# ---------------------------------------------------------------------------------------------
def _ok_operands(chip):
    rng = np.random.default_rng(0)
    return random_inputs(rng, chip, False, 2, 6), random_weights(rng, chip, 3, 6)


@pytest.mark.parametrize(
    ("make", "exc", "fragment"),
    [
        (lambda x, w: (x.astype(np.float64), w), ValueError, "x_int must have an integer dtype"),
        (lambda x, w: (x, w.astype(np.float32)), ValueError, "w_int must have an integer dtype"),
        (lambda x, w: (np.where(x == x[0, 0], np.nan, x), w), ValueError, "integer dtype"),
        (lambda x, w: (x.astype(bool), w), ValueError, "integer dtype"),
        (lambda x, w: (x + 256, w), ValueError, "[0, 255]"),
        (lambda x, w: (x - 129, w), ValueError, "[-128, 127]"),
        (lambda x, w: (x, w + 200), ValueError, "[-127, 127]"),
        (lambda x, w: (x[:, :5], w), ValueError, "K = 5"),
        (lambda x, w: (x[0], w), ValueError, "x_int must be 2-D"),
        (lambda x, w: (x[None], w), ValueError, "x_int must be 2-D"),
        (lambda x, w: (x, w[0]), ValueError, "w_int must be 2-D"),
        (lambda x, w: (x, w[None]), ValueError, "w_int must be 2-D"),
        (lambda x, w: (x, w[:0]), ValueError, "must not be empty"),
        (lambda x, w: (x[:, :0], w[:, :0]), ValueError, "must not be empty"),
    ],
    ids=["float-x", "float-w", "nan-x", "bool-x", "x-too-big", "x-too-small", "w-too-big",
         "k-mismatch", "x-1d", "x-3d", "w-1d", "w-3d", "no-outputs", "no-inputs"],
)
def test_bad_operands_raise_clear_errors(ideal, make, exc, fragment):
    x, w = make(*_ok_operands(ideal))
    with pytest.raises(exc) as info:
        cimsim.matmul(x, w, ideal)
    assert fragment in str(info.value)
    assert "numba" not in type(info.value).__module__


def test_out_of_range_messages_name_the_allowed_range():
    chip = ideal_chip(encoding="twos_complement", signed_inputs="two_pass", input_bits=4,
                      weight_bits=4)
    x, w = np.array([[-8, 1]]), np.array([[-8, 7]])  # -8 fits twos_complement weights
    with pytest.raises(ValueError, match=r"\[-7, 7\].*signed input_bits=4"):
        cimsim.matmul(x, w, chip)
    with pytest.raises(ValueError, match=r"\[-8, 7\].*'twos_complement'"):
        cimsim.matmul(np.array([[1, 1]]), np.array([[-9, 0]]), chip)
    with pytest.raises(ValueError, match=r"\[0, 15\] for unsigned"):
        cimsim.matmul(np.array([[-1, 1]]), np.array([[1, 1]]), chip, input_signed=False)


@pytest.mark.parametrize("chip", [{"name": "ideal"}, None, 3])
def test_chip_must_be_a_chip_config_or_name_it(chip):
    with pytest.raises(ConfigError, match="chip = .* allowed: a ChipConfig .*a preset name"):
        cimsim.matmul(np.ones((1, 2), int), np.ones((1, 2), int), chip)
    y, _ = cimsim.matmul(np.ones((1, 2), int), np.ones((1, 2), int), "ideal")
    assert y.tolist() == [[2.0]]


def test_calibrated_policy_without_calibration_data():
    chip = cimsim.load_chip("rram-22nm")
    x, w = _ok_operands(chip)
    with pytest.raises(ConfigError, match="calibration"):
        cimsim.matmul(x, w, chip)
    layer = program(w, chip)
    with pytest.raises(ConfigError, match="calibration"):
        engine.run(layer, x)
    with pytest.raises(ConfigError, match="empty"):
        engine.calibrate(layer, x[:0])
    with pytest.raises(ValueError, match="calibration has K = 5"):
        engine.calibrate(layer, x[:, :5])


@pytest.mark.parametrize(("kwargs", "fragment"),
                         [({"gemm": "int16"}, "gemm = 'int16'"),
                          ({"gemm": "INT8"}, "allowed: 'auto'"),
                          ({"kernel": "cuda"}, "kernel = 'cuda'")])
def test_bad_engine_options(ideal, kwargs, fragment):
    x, w = _ok_operands(ideal)
    layer = program(w, ideal)
    with pytest.raises(ValueError) as info:
        engine.run(layer, x, **kwargs)
    assert fragment in str(info.value)


def test_differential_pair_needs_two_columns():
    chip = ideal_chip(n_cols=1)
    x, w = _ok_operands(chip)
    with pytest.raises(MappingError, match="n_cols = 1"):
        cimsim.matmul(x, w, chip)


def test_weight_range_matches_encoding():
    for enc, expected in [("differential", (-127, 127)), ("signed_cell", (-127, 127)),
                          ("twos_complement", (-128, 127)), ("offset", (-128, 127))]:
        assert weight_range(ideal_chip(encoding=enc)) == expected
    assert input_range(ideal_chip(), False) == (0, 255)
    assert input_range(ideal_chip(), True) == (-128, 127)
    assert input_range(ideal_chip(signed_inputs="two_pass"), True) == (-127, 127)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_chunk_vectors_must_be_a_positive_integer_issue16(bad):
    chip = cimsim.load_chip("ideal")
    x, w = np.ones((3, 4), dtype=np.int64), np.ones((2, 4), dtype=np.int64)
    with pytest.raises(ConfigError, match="chunk_vectors"):
        cimsim.matmul(x, w, chip, chunk_vectors=bad)
    y, _ = cimsim.matmul(x, w, chip, chunk_vectors=1)
    assert (y == x @ w.T).all()


def test_float32_gemms_stay_ieee_under_a_reduced_matmul_precision():
    """``torch.set_float32_matmul_precision("medium")`` lets torch run float32 GEMMs in
    bfloat16 (oneDNN) or TF32 (CUDA): 8 or 10 mantissa bits, which would round conductances
    and digits beyond them. The engine's, the torch backend's and the twin's GEMMs run in IEEE
    float32 within the call and leave the caller's setting as it was."""
    import torch

    mkl, cuda = torch.backends.mkldnn.matmul, torch.backends.cuda.matmul
    saved = mkl.fp32_precision, cuda.fp32_precision
    try:
        mkl.fp32_precision, cuda.fp32_precision = "bf16", "tf32"
        with _gemm.ieee_float32(torch):
            assert (mkl.fp32_precision, cuda.fp32_precision) == ("ieee", "ieee")
        assert (mkl.fp32_precision, cuda.fp32_precision) == ("bf16", "tf32")
        rng = np.random.default_rng(0)
        a = rng.integers(0, 2, (16, 256)).astype(np.float32)
        b = rng.integers(-4000, 4000, (256, 8)).astype(np.float32)  # 12 bits: not bf16
        assert np.array_equal(_gemm.gemm(a, b, "float32"), a.astype(np.int64) @ b.astype(np.int64))
    finally:
        mkl.fp32_precision, cuda.fp32_precision = saved


def test_ieee_float32_holds_while_another_thread_leaves_its_block():
    """torch's matmul precision is the process's: two threads' blocks overlapping (A enters, B
    enters, A leaves) must keep IEEE under B's GEMM, and the caller's setting must come back
    when the last block closes. Saved and restored per block, A's exit put bfloat16 back under
    B, and threaded ``cimsim.matmul`` calls under ``set_float32_matmul_precision("medium")``
    differed from the same calls made serially (by ~3 % on a CPU with bf16 units)."""
    import threading

    import torch

    mkl, cuda = torch.backends.mkldnn.matmul, torch.backends.cuda.matmul
    saved = mkl.fp32_precision, cuda.fp32_precision
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[tuple[str, str]] = []

    def a() -> None:
        with _gemm.ieee_float32(torch):
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def b() -> None:
        a_in.wait(10)
        with _gemm.ieee_float32(torch):
            b_in.set()
            a_out.wait(10)
            seen.append((mkl.fp32_precision, cuda.fp32_precision))  # what B's GEMM runs under

    try:
        mkl.fp32_precision, cuda.fp32_precision = "bf16", "tf32"
        threads = [threading.Thread(target=a), threading.Thread(target=b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert seen == [("ieee", "ieee")]
        assert (mkl.fp32_precision, cuda.fp32_precision) == ("bf16", "tf32")
    finally:
        mkl.fp32_precision, cuda.fp32_precision = saved


def test_a_block_opened_while_another_threads_block_is_open_is_ieee_too():
    """The caller reduces the precision while another thread's block is open: a block opened
    after must still run IEEE float32 (the counted override looked at the backends at the first
    block only, and a later block ran in bfloat16), and the last close restores the caller's
    latest setting."""
    import threading

    import torch

    mkl = torch.backends.mkldnn.matmul
    saved = mkl.fp32_precision
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with _gemm.ieee_float32(torch):
            inside.set()
            leave.wait(20)

    thread = threading.Thread(target=hold)
    try:
        thread.start()
        assert inside.wait(20)
        mkl.fp32_precision = "bf16"  # the caller, meanwhile
        with _gemm.ieee_float32(torch):
            assert mkl.fp32_precision == "ieee"
        assert mkl.fp32_precision == "ieee"  # the other block is still open
        leave.set()
        thread.join(20)
        assert mkl.fp32_precision == "bf16"
    finally:
        leave.set()
        thread.join(20)
        mkl.fp32_precision = saved


def test_ieee_float32_restores_the_callers_latest_setting_and_forgets_it_after():
    """Pins the counted override's bookkeeping, single-threaded with nested blocks: a reduced
    precision the caller set while a block was open is the one restored (not the first one
    saved); a setting the caller made inside a block, other than IEEE, is left as made at the
    last close (not overwritten by the saved one); and what a block saved is forgotten once
    the last closes (a later block under an IEEE setting restores nothing stale)."""
    import torch

    mkl = torch.backends.mkldnn.matmul
    saved = mkl.fp32_precision
    try:
        mkl.fp32_precision = "bf16"
        with _gemm.ieee_float32(torch):
            mkl.fp32_precision = "tf32"  # the caller, meanwhile
            with _gemm.ieee_float32(torch):
                assert mkl.fp32_precision == "ieee"
            assert mkl.fp32_precision == "ieee"  # the outer block is still open
        assert mkl.fp32_precision == "tf32"  # the latest, not the first saved
        mkl.fp32_precision = "bf16"
        with _gemm.ieee_float32(torch):
            mkl.fp32_precision = "tf32"  # set inside the block: kept at its close
        assert mkl.fp32_precision == "tf32"
        mkl.fp32_precision = "ieee"  # nothing to override: nothing saved, nothing restored
        with _gemm.ieee_float32(torch):
            assert mkl.fp32_precision == "ieee"
        assert mkl.fp32_precision == "ieee"
    finally:
        mkl.fp32_precision = saved
