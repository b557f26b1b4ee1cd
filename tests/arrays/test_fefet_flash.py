"""FeFET and NOR-flash cells (``device.cell = 'fefet' / 'flash'``): transistors whose threshold
is programmed (ferroelectric polarization, floating-gate charge), read through the channel as a
programmed conductance, so simulated through the same level, off-current, variation and
encoding paths as RRAM; the presets ``fefet-28nm`` and ``flash-40nm``."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.arrays.program import program
from cimsim.config import CellKind, CellTech, ChipConfig, DeviceConfig, TechConfig
from cimsim.errors import ConfigError
from tests.conftest import assert_exact, ideal_chip, random_inputs, random_weights

PRESETS = {"fefet-28nm": CellTech.FEFET, "flash-40nm": CellTech.FLASH}


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
def test_cells_and_their_kinds_are_named():
    assert CellTech("fefet") is CellTech.FEFET and CellTech("flash") is CellTech.FLASH
    assert CellTech.FEFET.resistive and CellTech.FLASH.resistive  # read as a conductance
    assert TechConfig(cell_kind="fefet_1t").cell_kind is CellKind.FEFET_1T
    assert TechConfig(cell_kind="flash_nor").cell_kind is CellKind.FLASH_NOR


def test_bad_cell_and_kind_names_list_the_new_ones():
    with pytest.raises(ConfigError, match=r"DeviceConfig\.cell = 'feram'.*'fefet', 'flash'"):
        DeviceConfig(cell="feram")
    with pytest.raises(ConfigError, match=r"TechConfig\.cell_kind = 'fefet'.*'fefet_1t', "
                                          r"'flash_nor'"):
        TechConfig(cell_kind="fefet")
    with pytest.raises(ConfigError, match=r"TechConfig\.cell_kind = 'nor'.*'flash_nor'"):
        TechConfig(cell_kind="nor")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_bad_fields_of_the_presets_name_the_field(name):
    chip = cimsim.load_chip(name)
    data = chip.to_dict()
    for section, field, value in (("device", "bits_per_cell", 8), ("device", "g_max_us", 0.0),
                                  ("device", "on_off_ratio", 1.0), ("tech", "v_read_v", -0.5),
                                  ("tech", "cell_kind", "fefet"), ("device", "cell", "nand")):
        bad = {**data, section: {**data[section], field: value}}
        with pytest.raises(ConfigError, match=rf"\.{field} = "):
            ChipConfig.from_dict(bad)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_load_by_name_and_round_trip_through_toml(name, tmp_path):
    chip = cimsim.load_chip(name)
    assert chip.name == name and name in cimsim.list_presets()
    assert chip.device.cell is PRESETS[name]
    assert ChipConfig.from_dict(tomllib.loads(chip.to_toml())) == chip
    chip.save(tmp_path / "c.toml")
    assert cimsim.load_chip(tmp_path / "c.toml") == chip
    assert f'cell = "{PRESETS[name].value}"' in chip.to_toml()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_do_not_age(name):
    """No drift law was found for either cell (docs/technology.md): nothing ages, and time
    changes nothing."""
    chip = cimsim.load_chip(name)
    assert not chip.device.ages
    w = random_weights(np.random.default_rng(1), chip, 6, 40)
    layer = program(w, chip, np.random.default_rng(2))
    assert layer.aging is None and layer.with_time(1e6) is layer


# ---------------------------------------------------------------------------------------------
# simulation: the same paths as RRAM's, lossless where the model is
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell,bits,ratio", [("fefet", 2, 17.0), ("flash", 4, 1000.0)])
@pytest.mark.parametrize("encoding", ["differential", "twos_complement", "offset"])
def test_ideal_transistor_cells_are_exact_with_compensated_off_current(cell, bits, ratio,
                                                                      encoding):
    chip = ideal_chip(bits_per_cell=bits, on_off_ratio=ratio, off_current_compensation="analog",
                      n_rows=64, n_cols=64, encoding=encoding, rows_per_conversion=32)
    chip = chip.replace(device=chip.device.replace(cell=cell))
    rng = np.random.default_rng(5)
    w = random_weights(rng, chip, 13, 150)
    x = random_inputs(rng, chip, True, 7, 150)
    y, _ = cimsim.matmul(x, w, chip, seed=0)
    assert_exact(y, x, w)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_deploy_a_small_model(name):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)).eval()
    x = torch.randn(32, 16)
    ref = model(x).detach()
    sim = cimsim.deploy(model, cimsim.load_chip(name), x, seed=0)
    y = sim(x)
    assert y.shape == (32, 4) and torch.isfinite(y).all()
    corr = float(torch.corrcoef(torch.stack([y.flatten(), ref.flatten()]))[0, 1])
    # 8-b weights, calibrated 6-b column converters: the float model's outputs (rram-22nm
    # gives ~0.9 on this model with its 5 % spread and 0.5-LSB noise)
    assert corr > 0.85
    rep = sim.report()
    energy = rep.totals["energy_pj_per_inference"]
    assert np.isfinite(energy) and energy > 0
    comps = rep.components
    cell = comps[comps["component"] == "cell"]["energy_pj_per_inference"].sum()
    assert np.isfinite(cell) and cell > 0  # the channel reads are priced
    assert rep.totals["area_mm2"] > 0
