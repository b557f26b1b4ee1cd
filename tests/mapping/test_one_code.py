"""deploy warns about matrices whose ADCs read one code for every calibration input (a
full-scale range far wider than the signal: the layer outputs its bias, whatever its input).
The model x chip audit (docs/model-chip-matrix.md) finds most layers so on one published
macro's chip (sinangil-jssc21: 469 of 473 in its first run, 874 of 882 over zoos 1-11,
961 of 969 over zoos 1-12), silent
until then but for SimModel.trace's code use."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import cimsim


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)).eval()


def _deploy(model, chip, x):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sim = cimsim.deploy(model, chip, x)
    return sim, [str(w.message) for w in caught if "one ADC code" in str(w.message)]


def _full_scale(bits: int = 4) -> cimsim.ChipConfig:
    chip = cimsim.load_chip("rram-22nm")
    return chip.replace(adc=chip.adc.replace(bits=bits, range_policy="full_scale"),
                        noise=chip.noise.replace(thermal_sigma_lsb=0.0))


def test_a_full_scale_adc_wider_than_the_signal_is_named_and_trace_agrees():
    model, x = _mlp(), torch.rand(32, 16)
    sim, said = _deploy(model, _full_scale(4), x)
    assert len(said) == 1 and "2 matrices" in said[0] and ": '0', '2';" in said[0]
    assert "adc.range_policy = 'calibrated'" in said[0]
    assert all(c.one_code for layer in sim.sim_layers.values() for c in layer.cores)
    # SimModel.trace measures the same: one code of 2^4 per ADC setting
    fidelity = sim.trace(x[:8])
    assert list(fidelity["adc_code_use_pct"]) == pytest.approx([100 / 16, 100 / 16])


def test_no_warning_where_the_codes_follow_the_signal():
    model, x = _mlp(), torch.rand(32, 16)
    for chip in (cimsim.load_chip("rram-22nm"), cimsim.load_chip("ideal"), _full_scale(12)):
        sim, said = _deploy(model, chip, x)
        assert said == [], chip.name
        assert not any(c.one_code for layer in sim.sim_layers.values() for c in layer.cores)


def test_an_all_zero_matrix_is_left_to_its_own_warning():
    model = _mlp()
    with torch.no_grad():
        model[2].weight.zero_()
    sim, said = _deploy(model, _full_scale(4), torch.rand(32, 16))
    assert said and ": '0';" in said[0] and "1 matrix converts" in said[0]  # layer 0 only


def test_inputs_that_do_not_vary_are_not_blamed_on_the_adc_range():
    """One code for inputs that are all the same (a depthwise group whose channel is dead
    after a ReLU, constant calibration data) says nothing about the range: no warning, and
    the lossless chip is exact to quantization there; a live group still is checked."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, 3, padding=1, groups=4).eval()
    x = torch.rand(16, 4, 8, 8)
    x[:, 1] = 0  # one dead channel
    sim, one_code = _deploy(conv, "ideal", x)
    assert one_code == []
    with torch.no_grad():
        assert torch.allclose(sim(x), conv(x), atol=0.01)
    _, one_code = _deploy(nn.Linear(4, 8).eval(), "ideal", torch.ones(16, 4))
    assert one_code == []


@pytest.mark.parametrize("k", [1, 2, 3])
def test_few_partial_sums_are_not_blamed_on_the_adc_range(k):
    """A matrix of a few rows, read by 1-b input planes and 2-b cells, holds a few partial
    sums per conversion on any range: the lossless chip's exact converters read every one of
    them, so no code-use warning (they were warned about as barely following their inputs,
    at 70-90 dB SQNR). Wide ranges that merge the signal are still named (the tests above and
    ``test_calibration_data.py -k barely_follow``)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(k, 4)).eval()
    x = torch.relu(torch.randn(64, k) - 2.5)  # sparse, non-negative: few values per plane
    x[0, 0] = 1.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sim = cimsim.deploy(model, "ideal", x, seed=0)
    assert [str(w.message) for w in caught if "codes" in str(w.message)] == []
    core = sim.sim_layers["0"].cores[0]
    assert not (core.one_code or core.few_codes)
    assert sim.trace(x)["sqnr_db"].iloc[0] > 60
