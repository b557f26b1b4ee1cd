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


def _small_chip():
    return one_digit_chip(input_bits=4, dac_bits=1, n_rows=20, n_cols=16, rows_per_conversion=8)


def test_deploy_quantizes_one_digit_to_minus_one_zero_one_and_the_twin_agrees():
    torch = pytest.importorskip("torch")
    from torch import nn

    from cimsim.train.twin import TwinMatmul, prepare

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3)).double().eval()
    chip = _small_chip()
    x_cal = torch.randn(8, 12, dtype=torch.float64)
    x = torch.randn(3, 12, dtype=torch.float64)
    sim = cimsim.deploy(model, chip, x_cal, seed=3)
    view = sim.sim_layers["0"].cores[0].view
    w = model[0].weight.detach().numpy()
    # symmetric levels {-1, 0, +1} at s = max|w| per output (a 2-b symmetric quantizer)
    s = np.abs(w).max(axis=1)
    np.testing.assert_array_equal(view.w_int, np.clip(np.rint(w / s[:, None]), -1, 1))
    assert set(np.unique(view.w_int)) == {-1, 0, 1}
    prep = prepare(model, chip, x_cal, seed=3).eval()
    torch.testing.assert_close(prep(x), sim(x), rtol=1e-9, atol=1e-9)
    # the twin's own codes are ternary too
    twin = TwinMatmul.calibrated(torch.as_tensor(w), None, chip, x_cal.abs()).eval()
    assert set(twin.quantized_weight().unique().tolist()) <= {-1.0, 0.0, 1.0}
