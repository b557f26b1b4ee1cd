"""MRAM cells (``device.cell = 'mram'``): binary junctions with a low on/off ratio, simulated
through the same off-current, variation and encoding paths as RRAM; no drift."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.arrays.program import cell_conductance, program
from cimsim.config import CellKind, CellTech, ChipConfig, DeviceConfig, TechConfig
from cimsim.errors import ConfigError
from cimsim.train import prepare
from tests.conftest import assert_exact, exact_product, ideal_chip, random_inputs, random_weights


def mram_chip(**changes) -> ChipConfig:
    """The lossless reference chip with MRAM cells: 1 b per cell, R_AP / R_P = 2.5 (TMR 150 %),
    the off-state current subtracted by a reference column (``analog``)."""
    base = dict(bits_per_cell=1, on_off_ratio=2.5, off_current_compensation="analog",
                n_rows=64, n_cols=64)
    base.update(changes)
    chip = ideal_chip(**base)
    return chip.replace(device=chip.device.replace(cell="mram"))


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [2, 3, 7])
def test_mram_stores_one_bit_per_cell(bits):
    with pytest.raises(ConfigError, match=r"DeviceConfig\.bits_per_cell = "
                       rf"{bits} is invalid; allowed: 1 for cell = 'mram'"):
        DeviceConfig(cell="mram", bits_per_cell=bits)
    with pytest.raises(ConfigError, match="bits_per_cell"):  # the default is 2 b
        DeviceConfig(cell="mram")
    assert DeviceConfig(cell="mram", bits_per_cell=1).cell is CellTech.MRAM


def test_bad_cell_names_list_mram():
    with pytest.raises(ConfigError, match=r"DeviceConfig\.cell = 'stt'.*'mram'"):
        DeviceConfig(cell="stt", bits_per_cell=1)
    with pytest.raises(ConfigError, match=r"TechConfig\.cell_kind = 'mram'.*'mram_1t1mtj'"):
        TechConfig(cell_kind="mram")
    assert TechConfig(cell_kind="mram_1t1mtj").cell_kind is CellKind.MRAM_1T1MTJ


def test_resistive_cells():
    assert {c for c in CellTech if c.resistive} == {CellTech.RRAM, CellTech.PCM, CellTech.MRAM,
                                                   CellTech.FEFET, CellTech.FLASH}


@pytest.mark.parametrize("name", ["mram-22nm", "cimsim/presets/published/deaville-vlsi22.toml"])
def test_mram_chips_round_trip_through_toml(name, tmp_path):
    chip = cimsim.load_chip(name)
    assert chip.device.cell is CellTech.MRAM and chip.device.bits_per_cell == 1
    assert ChipConfig.from_dict(tomllib.loads(chip.to_toml())) == chip
    chip.save(tmp_path / "c.toml")
    assert cimsim.load_chip(tmp_path / "c.toml") == chip
    text = chip.to_toml()
    assert 'cell = "mram"' in text


def test_mram_preset_does_not_age():
    """A junction's two states do not drift: no aging is drawn and time changes nothing."""
    chip = cimsim.load_chip("mram-22nm")
    assert not chip.device.ages
    w = random_weights(np.random.default_rng(1), chip, 6, 40)
    layer = program(w, chip, np.random.default_rng(2))
    assert layer.aging is None
    assert layer.with_time(1e6) is layer


# ---------------------------------------------------------------------------------------------
# simulation
# ---------------------------------------------------------------------------------------------
def test_off_state_carries_one_over_ratio_minus_one_cell_lsb():
    """R_AP / R_P = 2.5: the antiparallel cell conducts G_P / 2.5, i.e. 1 / (2.5 - 1) of the
    P - AP step, and the parallel one 1 + 1 / 1.5 of it."""
    chip = mram_chip()
    assert chip.device.g_off_lsb == pytest.approx(1 / 1.5)
    g = cell_conductance(np.array([0.0, 1.0]), chip)
    assert g[1] / g[0] == pytest.approx(2.5)
    assert chip.device.g_lsb_us == pytest.approx(chip.device.g_max_us * (1 - 1 / 2.5))


@pytest.mark.parametrize("encoding", ["differential", "twos_complement", "offset"])
@pytest.mark.parametrize("signed", [False, True])
def test_mram_chip_is_exact_with_compensated_off_current(encoding, signed):
    chip = mram_chip(encoding=encoding, rows_per_conversion=32)
    rng = np.random.default_rng(7)
    w = random_weights(rng, chip, 21, 150)
    x = random_inputs(rng, chip, signed, 9, 150)
    y, _ = cimsim.matmul(x, w, chip, seed=0)
    assert_exact(y, x, w)


def test_uncompensated_off_current_stays_in_the_result():
    """With ``none`` the antiparallel cells' current is summed too (a single-column encoding
    has no pair to cancel it): the result is off by g_off per driven unit of input."""
    chip = mram_chip(encoding="twos_complement", off_current_compensation="none")
    rng = np.random.default_rng(3)
    w = random_weights(rng, chip, 5, 64)
    x = random_inputs(rng, chip, False, 4, 64)
    y, _ = cimsim.matmul(x, w, chip, seed=0)
    assert not np.array_equal(y, exact_product(x, w))


def test_read_events_sum_the_antiparallel_cells_too():
    """The summed conductance of a read (cell.v2g_lsb) counts every cell on a driven row:
    the parallel ones at 1 + g_off and the antiparallel ones at g_off cell-LSB."""
    chip = mram_chip(encoding="offset", weight_bits=2, input_bits=1)
    w = np.array([[1, -2, 0, -1]])  # offset digits w + 2: 3, 0, 2, 1 -> bits (1,1),(0,0),..
    x = np.array([[1, 1, 0, 1]])
    _, ev = cimsim.matmul(x, w, chip, seed=0)
    layer = program(w, chip)
    g_off = chip.device.g_off_lsb
    digits = layer.digits_phys.astype(float)
    assert layer.cell_rowsum == pytest.approx((digits + g_off).sum(axis=1))
    want = float(x[0] @ layer.cell_rowsum)
    assert ev.get(("cell", "v2g_lsb", 0)) == pytest.approx(want)


def test_mram_preset_deploys_end_to_end():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)).eval()
    x = torch.randn(32, 16)
    ref = model(x).detach()
    chip = cimsim.load_chip("mram-22nm")
    quiet = chip.replace(noise=chip.noise.replace(thermal_sigma_lsb=0.0),
                         device=chip.device.replace(variation="none", variation_sigma=0.0))
    corr = {}
    for name, c in (("preset", chip), ("quiet", quiet)):
        sim = cimsim.deploy(model, c, x, seed=0)
        y = sim(x)
        assert y.shape == (32, 4) and torch.isfinite(y).all()
        corr[name] = float(torch.corrcoef(torch.stack([y.flatten(), ref.flatten()]))[0, 1])
        assert sim.report().totals["energy_pj_per_inference"] > 0
    # 8-b weights on 14 binary-junction columns and 6-b calibrated column ADCs: the float
    # model's outputs without device spread and noise; the preset's 5 % spread and 0.5-LSB
    # noise cost what they cost rram-22nm on this model (both ~0.9)
    assert corr["quiet"] > 0.99
    assert corr["preset"] > 0.85


# ---------------------------------------------------------------------------------------------
# the training twin
# ---------------------------------------------------------------------------------------------
def test_twin_is_the_deployed_mram_chip():
    """prepare() on an MRAM chip with variation: the eval twin computes what deploy() gives."""
    chip = mram_chip(input_bits=4, weight_bits=4, n_rows=12, n_cols=32, rows_per_conversion=6,
                     variation="lognormal", variation_sigma=0.05,
                     off_current_compensation="digital",
                     adc=dict(bits=6, range_policy="calibrated",
                              calibration_granularity="column"))
    assert_twin_is_deployed(chip)


def assert_twin_is_deployed(chip: ChipConfig) -> tuple:
    """A small MLP prepared on ``chip``: the eval twin's outputs are deploy()'s (99 % of them
    to 1e-9: the same draws, the same quantization). Returns the prepared model."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 7), nn.ReLU(), nn.Linear(7, 3)).double()
    x = torch.randn(64, 20, dtype=torch.float64)
    prep = prepare(model, chip, x, seed=3)
    y_twin = prep.eval()(x).detach().numpy()
    y_sim = prep.deploy(3)(x).numpy()
    assert np.isclose(y_sim, y_twin, rtol=1e-9, atol=1e-9).mean() >= 0.99
    return prep, x
