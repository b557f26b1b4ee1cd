"""Metamorphic relations between equivalent ways of doing the same thing (a hunt): the command
line against the Python API, ``--set`` against ``--vary`` against ``chip.replace``, a sweep point
against ``simulate``, mapping geometry on a lossless chip, data files of several formats.

The first section holds the relations that FAIL (each docstring: the relation, the doc sentence
it rests on, observed against expected, and the suspected cause); the second the relations that
held and that no other test checked in this form.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.cost import datasheet
from cimsim.errors import ConfigError
from cimsim.evaluate import accuracy
from cimsim.sweep import chip_for_point, run_sweep


def _quiet():
    warnings.simplefilter("ignore")


# =============================================================================================
# 1. Failing relations
# =============================================================================================

@pytest.mark.parametrize("name", ["sram-65nm", "rram-22nm"])
def test_vary_cost_model_physical_is_the_chip_set_gives_on_a_preset_that_writes_its_window(name):
    """Relation: a sweep point ``--vary tech.cost_model=physical`` is the chip
    ``--set tech.cost_model=physical`` gives (``cimsim.load_chip(name, overrides=...)``).

    Docs (docs/sweep.md, "Chip fields as axes"): "A point sets the fields first, exactly as
    ``--set`` would"; "Defaults the chip leaves unwritten stay so: ``--vary
    tech.cost_model=physical`` on ``ideal`` predicts the window, as ``--set`` does on a file
    that states none"; docs/cost-model.md (`window_stated`): false only "for a ``physical``
    description of an analog read-out that writes none of ``t_read_ns``, ``t_integrate_ns``,
    ``window_stated``". ``sram-65nm.toml`` and ``rram-22nm.toml`` write ``t_read_ns = 10.0``
    in ``[tech]``: they state their window.

    Observed: ``--set`` keeps ``tech.window_stated = true`` (the file states its window), the
    sweep point gets ``false`` (window predicted). On ``sram-65nm`` the datasheet's TOPS falls
    from 0.609 to 0.0825 and ``cimsim sweep --model demo --chip sram-65nm --vary
    tech.cost_model=physical --adc-bits 8 --limit 24 --calibration 32`` prints 87,055 ns per
    inference where ``--set tech.cost_model=physical --adc-bits 8`` (and ``cimsim simulate``
    with the same ``--set`` and ``--batch-size 256``) print 11,851 ns: one chip, two sets of
    figures (7.3x). Expected: the same chip, the same figures.
    Even a chip file that writes ``window_stated = true`` explicitly (``chip.save()`` of the
    preset) gets ``false`` at the point, while ``--set`` on that file keeps ``true``.

    Suspected cause: ``cimsim/sweep/grid.py`` ``_unwritten_defaults`` (line ~159), used by
    ``_with_fields_cached`` (line ~116): it drops every field whose value equals the
    dataclass default, here the file's ``t_read_ns = 10.0``, and checks only that the base
    chip comes back (under the ``tables`` model the window is not derived), not the chip with
    the point's fields set; ``ChipConfig.from_dict``'s ``_window_predicted_by_default``
    (cimsim/config.py ~1723) then sees a description that writes no window. (The fix for
    ``ideal``, tests/sweep/test_field_axes_hunt.py, over-corrected.)"""
    _quiet()
    base = cimsim.load_chip(name)
    by_set = cimsim.load_chip(name, overrides=["tech.cost_model=physical"])
    point = chip_for_point(base, {"tech.cost_model": "physical"})
    assert by_set.tech.window_stated is True  # the file writes t_read_ns
    assert point.tech.window_stated == by_set.tech.window_stated
    assert point == by_set.replace(description=base.description)
    assert datasheet(point)["tops"] == pytest.approx(datasheet(by_set)["tops"])


def test_vary_cost_model_sweep_point_matches_deploy_on_the_set_chip(tmp_path):
    """The same relation end to end (docs/sweep.md: "A point's row is what
    ``cimsim.deploy(model, chip, calibration=x_cal, seed=seed)`` then ``accuracy(...)`` and
    ``sim.report().totals`` give for that chip"): ``run_sweep`` with the grid
    ``{"tech.cost_model": ["physical"]}`` on ``sram-65nm`` against ``deploy`` on
    ``load_chip("sram-65nm", overrides=["tech.cost_model=physical"])``. Observed: the sweep's
    latency per inference is 6.7x the deployed model's report (1,211 against 181 ns: the
    predicted window); expected
    equal. Cause: as above (``cimsim/sweep/grid.py`` ``_unwritten_defaults``)."""
    _quiet()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)).eval()
    x = torch.rand(24, 16)
    y = torch.randint(0, 4, (24,))
    frame = run_sweep(model, (x, y), cimsim.load_chip("sram-65nm"),
                      {"tech.cost_model": ["physical"]}, tmp_path / "s", calibration=8,
                      progress=False)
    assert frame["status"].tolist() == ["ok"]
    chip = cimsim.load_chip("sram-65nm", overrides=["tech.cost_model=physical"])
    sim = cimsim.deploy(model, chip, calibration=x[:8], seed=0, progress=False)
    acc = accuracy(sim, x[8:], y[8:], batch_size=256)
    totals = sim.report().totals
    assert frame["accuracy"].iloc[0] == pytest.approx(acc)
    assert frame["latency_ns_per_inference"].iloc[0] == pytest.approx(
        totals["latency_ns_per_inference"])
    assert frame["energy_pj_per_inference"].iloc[0] == pytest.approx(
        totals["energy_pj_per_inference"])


def test_vary_device_cell_is_refused_where_set_refuses_it():
    """Relation: ``--vary device.cell=sram`` on ``rram-22nm`` is ``--set device.cell=sram``
    (docs/sweep.md: "A point sets the fields first, exactly as ``--set`` would"; "A value the
    chip cannot take stops the sweep before any point runs with the chip's message").

    ``rram-22nm.toml`` writes ``bits_per_cell = 2``; ``--set device.cell=sram`` is refused (an
    SRAM cell holds one bit). Observed: the sweep point's chip is built without complaint, an
    SRAM chip at ``bits_per_cell = 1`` (the sweep drops the written 2, DeviceConfig's default,
    and ``_one_bit_cells_by_default`` then fills in 1): the sweep runs a chip the file with
    that field set is not. Expected: the same ConfigError as ``--set``.

    Suspected cause: ``cimsim/sweep/grid.py`` ``_unwritten_defaults`` (~159) dropping the
    written ``device.bits_per_cell = 2`` (equal to the default), then ``from_dict``'s
    ``_one_bit_cells_by_default`` (cimsim/config.py ~1671)."""
    _quiet()
    with pytest.raises(ConfigError):
        cimsim.load_chip("rram-22nm", overrides=["device.cell=sram"])
    with pytest.raises(ConfigError):
        chip_for_point(cimsim.load_chip("rram-22nm"), {"device.cell": "sram"})


# =============================================================================================
# 2. Relations that held (not checked in this form elsewhere)
# =============================================================================================

def _digits_npz(tmp_path, n=64):
    from cimsim.data import load_digits_split

    _, _, x, y = load_digits_split()
    path = tmp_path / "d.npz"
    np.savez(path, x=x[:n].numpy(), y=y[:n].numpy())
    return path, x[:n], y[:n]


def test_cli_simulate_equals_deploy_accuracy_and_report_by_hand(tmp_path):
    """``cimsim simulate --model M --data D --chip C --set F=V --seed S --calibration N
    --batch-size B`` against ``load_chip(C, overrides=...)``, ``deploy(seed=S,
    calibration=x[:N])``, ``accuracy(sim, x[N:], y[N:], batch_size=B)`` and ``report()``: the
    same accuracy and the same report.json totals (README: simulate "calibrates on the first
    --calibration inputs and measures accuracy on the rest")."""
    from cimsim.cli import main
    from cimsim.models import load_digits_cnn

    _quiet()
    path, x, y = _digits_npz(tmp_path, 48)
    out = tmp_path / "o"
    assert main(["simulate", "--model", "cimsim.models:load_digits_cnn", "--data", str(path),
                 "--chip", "rram-22nm", "--set", "adc.bits=4", "--seed", "3",
                 "--calibration", "16", "--batch-size", "8", "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    chip = cimsim.load_chip("rram-22nm", overrides={"adc.bits": 4})
    sim = cimsim.deploy(load_digits_cnn(), chip, calibration=x[:16], seed=3, progress=False)
    acc = accuracy(sim, x[16:], y[16:], batch_size=8)
    totals = sim.report().totals
    assert rep["summary"]["simulated_accuracy"] == acc
    assert rep["summary"]["n_eval_inputs"] == 32
    for key in ("energy_pj_per_inference", "latency_ns_per_inference", "area_mm2",
                "n_conversions_per_inference", "n_inferences"):
        assert rep["totals"][key] == totals[key], key


def test_lossless_chip_outputs_do_not_depend_on_mapping_geometry():
    """docs/hardware-model.md / DESIGN.md §2.5: "with ideal devices, no noise and an ADC that
    covers the full range, the layer output must equal the integer matmul exactly": on
    ``ideal`` a conv + grouped conv + MLP model gives bit-identical outputs at every array size,
    row group, ADC sharing, kernel-preserving tiling, time multiplexing (enough arrays or too
    few), slice read-out, diagonal group packing, input slices, bits per cell and weight
    encoding; the MACs counted do not move."""
    _quiet()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(6, 8, 3, groups=2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 4 * 4, 20), nn.Tanh(), nn.Linear(20, 5)).eval()
    cal, x = torch.randn(16, 3, 6, 6), torch.randn(7, 3, 6, 6)
    base = cimsim.load_chip("ideal")

    def run(chip):
        sim = cimsim.deploy(model, chip, calibration=cal, seed=0, progress=False)
        with torch.no_grad():
            return sim(x), sim.report().totals["n_macs_per_inference"]

    def arr(**kw):
        return base.replace(array=base.array.replace(**kw))

    y0, macs0 = run(base)
    variants = [arr(n_rows=37), arr(n_cols=7), arr(rows_per_conversion=5), arr(cols_per_adc=4),
                arr(kernel_preserving_tiling=True, n_rows=20),
                arr(allow_time_multiplexing=True),
                arr(n_tiles=1, arrays_per_tile=1, allow_time_multiplexing=True),
                arr(slice_readout="analog"), arr(group_packing="diagonal"),
                base.replace(dac=base.dac.replace(bits=8)), base.with_bits_per_cell(1),
                base.replace(weight_encoding="offset"),
                base.replace(weight_encoding="twos_complement"),
                base.replace(differential_readout="digital")]
    for chip in variants:
        y, macs = run(chip)
        assert torch.equal(y, y0)
        assert macs == macs0


def test_data_files_of_every_format_load_the_same_inputs(tmp_path):
    """README: ``--data`` "an .npz with x (and y labels) or a tensor file read with
    torch.load(weights_only=True)"; integer x "becomes float32" for a float model: uint8,
    float32 and float64 .npz, int32 labels, a (x, y) tensor tuple and an {x, y} dict give the
    same float32 inputs and int64 labels."""
    from cimsim.mapping import load_data

    rng = np.random.default_rng(0)
    xi = rng.integers(0, 17, (12, 1, 8, 8)).astype(np.uint8)
    y = rng.integers(0, 10, 12)
    np.savez(tmp_path / "u8.npz", x=xi, y=y)
    np.savez(tmp_path / "f32.npz", x=xi.astype(np.float32), y=y)
    np.savez(tmp_path / "f64.npz", x=xi.astype(np.float64), y=y.astype(np.int32))
    torch.save((torch.tensor(xi.astype(np.float32)), torch.tensor(y)), tmp_path / "tup.pt")
    torch.save({"x": torch.tensor(xi), "y": torch.tensor(y)}, tmp_path / "dict.pt")
    want = torch.tensor(xi.astype(np.float32))
    for name in ("u8.npz", "f32.npz", "f64.npz", "tup.pt", "dict.pt"):
        x, labels = load_data(tmp_path / name)
        assert x.dtype == torch.float32 and torch.equal(x, want), name
        assert labels.dtype == torch.int64 and labels.tolist() == y.tolist(), name
