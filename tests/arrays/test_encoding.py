"""Weights -> column kinds and inputs -> DAC planes recombine exactly, within their ranges."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cimsim.arrays.encoding import (
    column_kinds,
    input_planes,
    input_range,
    plane_layout,
    weight_range,
)
from tests.conftest import ENCODINGS, ideal_chip, random_weights


def _n_kinds(enc: str, b: int, c: int) -> int:
    slices = -(-(b - 1) // c)
    return {"differential": 2 * slices, "twos_complement": slices + 1,
            "offset": -(-b // c), "signed_cell": slices}[enc]


def _check_kinds(w: np.ndarray, chip) -> None:
    kinds = column_kinds(w, chip)
    n, k = w.shape
    assert kinds.digits.shape == (kinds.n_kinds, k, n)
    assert kinds.digits.dtype == np.int8
    enc = chip.weight_encoding.value
    assert kinds.n_kinds == _n_kinds(enc, chip.weight_bits, chip.device.bits_per_cell)
    d = kinds.digits.astype(np.int64)
    assert d.min() >= kinds.digit_lo and d.max() <= kinds.digit_hi
    assert kinds.digit_hi == 2**chip.device.bits_per_cell - 1
    assert kinds.digit_lo == (-kinds.digit_hi if enc == "signed_cell" else 0)
    recombined = np.tensordot(kinds.coef, d.astype(np.float64), axes=1)  # (K, N)
    offset = 2 ** (chip.weight_bits - 1) if enc == "offset" else 0
    np.testing.assert_array_equal(recombined - offset, w.T)
    # polarity and analog pairs
    if enc == "differential":
        np.testing.assert_array_equal(kinds.polarity, np.tile([1, -1], kinds.n_kinds // 2))
        assert np.all(kinds.coef[0::2] > 0) and np.all(kinds.coef[1::2] == -kinds.coef[0::2])
        if chip.differential_readout.value == "analog":
            np.testing.assert_array_equal(kinds.pair[0::2], np.arange(1, kinds.n_kinds, 2))
            assert np.all(kinds.pair[1::2] == -1)
        else:
            assert np.all(kinds.pair == -1)
        # a weight lives in its positive or its negative columns, never both
        pos_any = (d[0::2] != 0).any(axis=0)
        neg_any = (d[1::2] != 0).any(axis=0)
        assert not np.any(pos_any & neg_any)
    else:
        assert np.all(kinds.polarity == 1) and np.all(kinds.pair == -1)


@pytest.mark.parametrize("enc", ENCODINGS)
@pytest.mark.parametrize("bpc", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("wb", [2, 3, 5, 8])
def test_column_kinds_recombine_exhaustively(enc, bpc, wb):
    chip = ideal_chip(encoding=enc, bits_per_cell=bpc, weight_bits=wb)
    lo, hi = weight_range(chip)
    w = np.arange(lo, hi + 1).reshape(1, -1)  # every representable weight
    _check_kinds(w, chip)
    _check_kinds(w.T.copy(), chip)


@settings(max_examples=150)
@given(enc=st.sampled_from(ENCODINGS), bpc=st.integers(1, 7), wb=st.integers(2, 16),
       readout=st.sampled_from(["analog", "digital"]), n=st.integers(1, 6),
       k=st.integers(1, 20), seed=st.integers(0, 2**32 - 1))
def test_column_kinds_recombine_property(enc, bpc, wb, readout, n, k, seed):
    chip = ideal_chip(encoding=enc, bits_per_cell=bpc, weight_bits=wb,
                      differential_readout=readout)
    _check_kinds(random_weights(np.random.default_rng(seed), chip, n, k), chip)


# ---------------------------------------------------------------------------------------------
# input planes
# ---------------------------------------------------------------------------------------------
MODES = [(False, "twos_complement"), (True, "twos_complement"), (True, "two_pass")]


def _check_planes(x: np.ndarray, chip, signed: bool) -> None:
    planes = input_planes(x, chip, signed)
    sig, lo, hi = plane_layout(chip, signed)
    np.testing.assert_array_equal(planes.sig, sig)
    assert (planes.value_lo, planes.value_hi) == (lo, hi)
    p = planes.planes.astype(np.int64)
    assert p.shape == (sig.shape[0],) + x.shape
    assert p.min(initial=lo) >= lo and p.max(initial=hi) <= hi
    # the DAC never drives more than dac_bits of magnitude
    assert hi <= 2**chip.dac_bits - 1 and lo >= -(2**chip.dac_bits)
    np.testing.assert_array_equal(np.tensordot(sig, p.astype(np.float64), axes=1), x)
    if signed and chip.dac.signed_inputs.value == "two_pass":
        half = sig.shape[0] // 2
        assert np.all(sig[:half] > 0) and np.all(sig[half:] < 0)
        assert lo == 0
        # a value drives only its own pass
        assert not np.any((p[:half] != 0).any(axis=0) & (p[half:] != 0).any(axis=0))
    elif not signed:
        assert lo == 0 and hi == 2**chip.dac_bits - 1
        np.testing.assert_array_equal(sig, 2.0 ** (chip.dac_bits * np.arange(chip.n_planes)))


def _dac_choices(input_bits: int):
    return [None, *range(1, input_bits + 1)]


@pytest.mark.parametrize(("signed", "mode"), MODES, ids=["u", "s-twos", "s-two_pass"])
@pytest.mark.parametrize("ib", [1, 2, 3, 5, 8])
def test_input_planes_recombine_exhaustively(signed, mode, ib):
    for dac in _dac_choices(ib):
        chip = ideal_chip(input_bits=ib, dac_bits=dac, signed_inputs=mode)
        lo, hi = input_range(chip, signed)
        x = np.arange(lo, hi + 1).reshape(1, -1)  # every representable input
        _check_planes(x, chip, signed)


@settings(max_examples=150)
@given(mode=st.sampled_from(MODES), ib=st.integers(1, 15), data=st.data(),
       m=st.integers(0, 5), k=st.integers(1, 20), seed=st.integers(0, 2**32 - 1))
def test_input_planes_recombine_property(mode, ib, data, m, k, seed):
    signed, signed_mode = mode
    dac = data.draw(st.sampled_from(_dac_choices(ib)))
    chip = ideal_chip(input_bits=ib, dac_bits=dac, signed_inputs=signed_mode)
    lo, hi = input_range(chip, signed)
    x = np.random.default_rng(seed).integers(lo, hi + 1, size=(m, k))
    if x.size:
        x.flat[0], x.flat[-1] = lo, hi
    _check_planes(x, chip, signed)


def test_input_and_weight_ranges():
    chip = ideal_chip(input_bits=4, weight_bits=4)
    assert input_range(chip, False) == (0, 15)
    assert input_range(chip, True) == (-8, 7)
    assert input_range(chip.replace(dac=chip.dac.replace(signed_inputs="two_pass")), True) == (
        -7, 7)
    assert weight_range(chip) == (-7, 7)
    assert weight_range(chip.replace(weight_encoding="twos_complement")) == (-8, 7)


def test_one_signed_plane_drives_exactly_the_signed_input_range():
    """With one DAC plane (``dac.bits = input_bits``) the plane is the two's complement input
    itself, a bipolar drive of [-2^(B-1), 2^(B-1) - 1]: the DAC's range that sets the
    hardware-fixed ADC full scale (8 b: [-128, 127]; 255 as its top would double that full
    scale). Several planes: the sign plane's bipolar low end, the others' unsigned top."""
    from cimsim.arrays.encoding import input_range, plane_layout

    for bits in (2, 4, 8):
        chip = ideal_chip(input_bits=bits, dac_bits=bits)
        sig, lo, hi = plane_layout(chip, True)
        assert list(sig) == [1.0] and (lo, hi) == input_range(chip, True)
    sig, lo, hi = plane_layout(ideal_chip(input_bits=8, dac_bits=4), True)
    assert list(sig) == [1.0, 16.0] and (lo, hi) == (-8, 15)  # sign plane [-8, 7], low [0, 15]
