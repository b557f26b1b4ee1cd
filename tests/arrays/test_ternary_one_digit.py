"""One balanced-ternary digit per weight (``weight_encoding = 'ternary'``, ``weight_bits = 1``):
a ternary weight {-1, 0, +1} in one differential pair of binary cells, as dual-cell ternary
SRAM macros store it (docs/validation.md, bscha-arxiv26).

Known answers: the range is [-1, 1]; the digit sits +1 in the positive and -1 in the negative
cell of one pair; the lossless chip reproduces ``x @ w.T`` exactly with one conversion per
output and input bit (analog differential read-out); the chip round-trips through TOML; other
encodings still refuse 1-b weights by name.
"""

from __future__ import annotations

import numpy as np
import pytest

import cimsim
from cimsim.arrays.encoding import column_kinds, conversion_kinds, weight_range
from cimsim.config import WeightEncoding
from cimsim.errors import ConfigError
from tests.conftest import assert_exact, ideal_chip


def one_digit_chip(**changes):
    return ideal_chip(encoding="ternary", weight_bits=1, bits_per_cell=1, **changes)


def test_one_digit_range_and_columns():
    chip = one_digit_chip()
    assert weight_range(chip) == (-1, 1)
    kinds = column_kinds(np.array([[-1, 0, 1]]), chip)
    assert kinds.n_kinds == 2
    assert list(kinds.coef) == [1.0, -1.0]
    # digits (kind, k, out): +1 only in the positive cell, -1 only in the negative one
    assert kinds.digits[0][:, 0].tolist() == [0, 0, 1]
    assert kinds.digits[1][:, 0].tolist() == [1, 0, 0]


@pytest.mark.parametrize("input_bits", [1, 4])
def test_one_digit_weights_are_exact_on_the_lossless_chip(input_bits):
    chip = one_digit_chip(input_bits=input_bits, differential_readout="analog")
    rng = np.random.default_rng(input_bits)
    x = rng.integers(0, 2**input_bits, size=(7, chip.array.n_rows))
    w = rng.integers(-1, 2, size=(5, chip.array.n_rows))
    y, events = cimsim.matmul(x, w, chip, seed=0)
    assert_exact(np.asarray(y), x, w)
    # one conversion per output and input bit: the pair is read as one analog difference
    assert conversion_kinds(chip).n_conversions == 1
    assert events.get(("adc", "convert", chip.adc.bits)) == 7 * 5 * input_bits


def test_one_digit_toml_round_trip(tmp_path):
    chip = one_digit_chip()
    chip.save(tmp_path / "t.toml")
    back = cimsim.load_chip(tmp_path / "t.toml")
    assert back == chip
    assert back.weight_encoding is WeightEncoding.TERNARY and back.weight_bits == 1


@pytest.mark.parametrize("encoding", ["twos_complement", "differential", "offset",
                                      "signed_cell"])
def test_other_encodings_still_refuse_one_bit_weights(encoding):
    base = cimsim.load_chip("ideal")
    with pytest.raises(ConfigError, match="weight_encoding") as err:
        base.replace(weight_encoding=encoding, weight_bits=1,
                     device=base.device.replace(bits_per_cell=1))
    assert "'binary' for weight_bits = 1, or 'ternary'" in str(err.value)
