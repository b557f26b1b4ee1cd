"""Known answers that pin the configuration, command-line and input-handling rules a
mutation-testing round found unpinned: each bound accepted at its edge and refused one step
beyond (a ConfigError naming the field), each derived value computed by hand."""

from __future__ import annotations

import argparse
import tomllib

import numpy as np
import pytest
import torch

import cimsim
from cimsim.config import (
    ADCConfig,
    ArrayConfig,
    ChipConfig,
    DACConfig,
    DeviceConfig,
    NoiseConfig,
    QuantConfig,
    TechConfig,
    error_sources,
)
from cimsim.errors import ConfigError

_RIPPLE = dict(device=DeviceConfig(cell="sram", bits_per_cell=1),
               adc=ADCConfig(kind="digital", bits=8),
               array=ArrayConfig(n_rows=16, n_cols=16, cols_per_adc=1))

# (accepted at the bound, refused one step beyond, the field the refusal names)
EDGES = [
    (lambda: ArrayConfig(tile_buffer_kib=1e-6), lambda: ArrayConfig(tile_buffer_kib=0.0),
     "ArrayConfig.tile_buffer_kib"),
    (lambda: DeviceConfig(g_max_us=1e-3), lambda: DeviceConfig(g_max_us=9.9e-4),
     "DeviceConfig.g_max_us"),
    (lambda: DeviceConfig(p_stuck_on=0.5, p_stuck_off=0.5),
     lambda: DeviceConfig(p_stuck_on=0.5, p_stuck_off=0.51), "p_stuck_on + p_stuck_off"),
    (lambda: DeviceConfig(drift_t0_s=1e-9), lambda: DeviceConfig(drift_t0_s=0.0),
     "DeviceConfig.drift_t0_s"),
    (lambda: DeviceConfig(drift_nu_mean=(0.0, 0.0, 0.05, 10.0)),
     lambda: DeviceConfig(drift_nu_mean=(0.0, 0.0, 0.05, 10.01)), "DeviceConfig.drift_nu_mean"),
    (lambda: DACConfig(bits=16), lambda: DACConfig(bits=17), "DACConfig.bits"),
    (lambda: ADCConfig(bits=24), lambda: ADCConfig(bits=25), "ADCConfig.bits"),
    (lambda: ADCConfig(kind="ramp", range_policy="calibrated", bits=16),
     lambda: ADCConfig(kind="ramp", range_policy="calibrated", bits=17), "ADCConfig.bits"),
    (lambda: ADCConfig(range_policy="fixed", fixed_lo=5.0, fixed_hi=5.001),
     lambda: ADCConfig(range_policy="fixed", fixed_lo=5.0, fixed_hi=5.0), "ADCConfig.fixed_hi"),
    (lambda: ADCConfig(calibration_margin=10.0), lambda: ADCConfig(calibration_margin=10.01),
     "ADCConfig.calibration_margin"),
    (lambda: NoiseConfig(poly_coeffs=(0.01,) * 6), lambda: NoiseConfig(poly_coeffs=(0.01,) * 7),
     "NoiseConfig.poly_coeffs"),
    (lambda: TechConfig(node_nm=180.0), lambda: TechConfig(node_nm=180.5), "TechConfig.node_nm"),
    (lambda: TechConfig(v_read_v=0.3, read_supply_v=0.3),
     lambda: TechConfig(v_read_v=0.3, read_supply_v=0.29), "TechConfig.read_supply_v"),
    (lambda: TechConfig(vdd_v=0.8, wordline_high_v=0.8),
     lambda: TechConfig(vdd_v=0.8, wordline_high_v=0.79), "TechConfig.wordline_high_v"),
    (lambda: TechConfig(wordline_driver_cap_ff=100000.0),
     lambda: TechConfig(wordline_driver_cap_ff=100001.0), "TechConfig.wordline_driver_cap_ff"),
    (lambda: QuantConfig(act_format="block_fp", act_exponent_bits=8),
     lambda: QuantConfig(act_format="block_fp", act_exponent_bits=9),
     "QuantConfig.act_exponent_bits"),
    (lambda: QuantConfig(smooth_alpha=0.0), lambda: QuantConfig(smooth_alpha=-0.01),
     "QuantConfig.smooth_alpha"),
    (lambda: ChipConfig(accumulator_bits=64), lambda: ChipConfig(accumulator_bits=65),
     "ChipConfig.accumulator_bits"),
    (lambda: ChipConfig(input_bits=4, dac=DACConfig(bits=4)),
     lambda: ChipConfig(input_bits=4, dac=DACConfig(bits=5)), "DACConfig.bits"),
    (lambda: ChipConfig(**_RIPPLE, tech=TechConfig(digital_column="ripple",
                                                   pipeline_registers_per_column=16)),
     lambda: ChipConfig(**_RIPPLE, tech=TechConfig(digital_column="ripple",
                                                   pipeline_registers_per_column=17)),
     "TechConfig.pipeline_registers_per_column"),
]


@pytest.mark.parametrize(("ok", "bad", "field"), EDGES,
                         ids=[f"{i:02d}-{e[2]}" for i, e in enumerate(EDGES)])
def test_a_value_at_its_bound_is_accepted_and_one_step_beyond_refused(ok, bad, field):
    """Each validator's bound is inclusive or exclusive as documented: the value at it builds,
    the next one is a ConfigError naming the field."""
    ok()
    with pytest.raises(ConfigError, match=field.replace(".", r"\.").replace("+", r"\+")):
        bad()


def test_device_with_bits_per_cell_keeps_the_spreads_in_conductance():
    """2 -> 3 b: a cell-LSB becomes (2^3 - 1) / (2^2 - 1) = 7/3 of a new one; a gaussian
    sigma and the retention spread (cell-LSB) scale by it, a lognormal sigma is kept, and a
    4-level table is resampled linearly onto 8 levels."""
    dev = DeviceConfig(variation="gaussian", variation_sigma=0.3, retention_sigma_lsb=0.6,
                       drift_nu_mean=(0.0, 0.1, 0.2, 0.3))
    assert dev.lsb_ratio(3) == pytest.approx(7 / 3)
    new = dev.with_bits_per_cell(3)
    assert new.bits_per_cell == 3
    assert new.variation_sigma == pytest.approx(0.7)
    assert new.retention_sigma_lsb == pytest.approx(1.4)
    assert new.drift_nu_mean == pytest.approx(tuple(0.3 * k / 7 for k in range(8)))
    logn = DeviceConfig(variation="lognormal", variation_sigma=0.3).with_bits_per_cell(3)
    assert logn.variation_sigma == 0.3


def test_chip_with_bits_per_cell_keeps_the_column_quantities_in_current():
    """A fixed ADC range (both ends) and the thermal noise, in cell-LSB, scale by 7/3 at
    2 -> 3 b per cell."""
    chip = ChipConfig(adc=ADCConfig(range_policy="fixed", fixed_lo=-3.0, fixed_hi=30.0),
                      noise=NoiseConfig(thermal_sigma_lsb=0.6))
    new = chip.with_bits_per_cell(3)
    assert new.adc.fixed_lo == pytest.approx(-7.0)
    assert new.adc.fixed_hi == pytest.approx(70.0)
    assert new.noise.thermal_sigma_lsb == pytest.approx(1.4)


def test_a_description_holding_a_del_character_round_trips_through_toml():
    """TOML forbids a bare DEL (U+007F) in a basic string: it is written escaped."""
    chip = ChipConfig(description="rub\x7fout")
    assert ChipConfig.from_dict(tomllib.loads(chip.to_toml())) == chip


def test_a_ramp_converter_keeps_the_range_policy_written():
    """``adc.range_policy = 'calibrated'`` is filled in for a ramp only where none is
    written: one written is checked as written (full_scale is refused for a ramp)."""
    with pytest.raises(ConfigError, match=r"ADCConfig\.range_policy"):
        ChipConfig.from_dict({"adc": {"kind": "ramp", "range_policy": "full_scale"}})


def test_a_ternary_description_gets_one_bit_cells_unwritten():
    """Ternary weights are binary cells: a description that leaves bits_per_cell out gets 1."""
    chip = ChipConfig.from_dict({"weight_encoding": "ternary", "weight_bits": 4})
    assert chip.device.bits_per_cell == 1


def test_error_sources_names_each_error_that_is_set():
    """Stuck-off cells alone are an error source; a per-level table with some zero levels is
    set (any nonzero level), one of zeros is not."""
    assert error_sources(ChipConfig()) == ()
    assert error_sources(ChipConfig(device=DeviceConfig(p_stuck_off=0.01))) == (
        "device.p_stuck_off",)
    assert error_sources(ChipConfig(device=DeviceConfig(drift_nu_mean=(0.0, 0.0, 0.1, 0.1)))
                         ) == ("device.drift_nu_mean",)
    assert error_sources(ChipConfig(device=DeviceConfig(drift_nu_mean=(0.0,)))) == ()


def test_unstated_inputs_names_the_tiles_for_a_whole_chip_only(tmp_path):
    """``scope='chip'`` adds the tiles, arrays per tile and tile buffer a description leaves
    out; 'macro' (the default) does not."""
    path = tmp_path / "c.toml"
    path.write_text('name = "c"\n')
    tiles = {"array.n_tiles = 64", "array.arrays_per_tile = 16", "array.tile_buffer_kib = 64.0"}
    assert not tiles & set(cimsim.config.unstated_inputs(path))
    assert tiles <= set(cimsim.config.unstated_inputs(path, scope="chip"))


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def test_a_range_of_values_includes_both_ends_and_drops_repeats():
    """``3-5`` is 3, 4, 5; ``4-4`` is 4; a value given twice is run once, in the order given."""
    from cimsim.cli import _int_values

    assert _int_values("--adc-bits", "3-5") == [3, 4, 5]
    assert _int_values("--adc-bits", "4-4") == [4]
    assert _int_values("--adc-bits", "6,3-5,4") == [6, 3, 4, 5]
    with pytest.raises(ConfigError, match="empty range"):
        _int_values("--adc-bits", "5-4")


def test_the_calibration_split_is_the_first_n_inputs_and_the_rest():
    """10 inputs, ``--calibration 4``: inputs 0-3 calibrate, 4-9 (and their labels) are
    evaluated; with 10 or more all of them do both."""
    from cimsim.cli import _calibration_split

    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    x_cal, x_eval, y_eval, _ = _calibration_split(x, y, 4)
    assert x_cal[:, 0].tolist() == [0, 1, 2, 3]
    assert x_eval[:, 0].tolist() == [4, 5, 6, 7, 8, 9]
    assert y_eval.tolist() == [4, 5, 6, 7, 8, 9]
    x_cal, x_eval, y_eval, _ = _calibration_split(x, y, 10)
    assert x_cal is x and x_eval is x and y_eval is y


def test_unseen_classes_are_warned_about_when_half_are_missing(capsys):
    """Calibration inputs of class 0 only, evaluated inputs of classes 0 and 1: half the
    evaluated classes were never calibrated on, the threshold of the warning."""
    from cimsim.cli import _warn_unseen_classes

    _warn_unseen_classes(np.array([0, 0, 0, 0, 0, 1, 0, 1]), 4)
    assert "never calibrated on" in capsys.readouterr().err
    _warn_unseen_classes(np.array([0, 1, 0, 1, 0, 1, 2, 1]), 4)
    assert capsys.readouterr().err == ""


def test_count_and_density_arguments_accept_their_bounds():
    """``--calibration 1`` and ``--limit 0`` (all) are allowed, ``--calibration 0`` is not;
    ``--input-density 1`` is allowed, 0 is not."""
    from cimsim.cli import _LIMIT, _POSITIVE, _density

    assert _POSITIVE("1") == 1
    assert _LIMIT("0") == 0
    with pytest.raises(argparse.ArgumentTypeError):
        _POSITIVE("0")
    assert _density("1") == 1.0
    with pytest.raises(argparse.ArgumentTypeError):
        _density("0")


def _train_args(*extra: str) -> argparse.Namespace:
    from cimsim.cli import build_parser

    argv = ["train", "--model", "demo", "--chip", "ideal", "--out", "unused", *extra]
    args = build_parser().parse_args(argv)
    args.argv = argv
    return args


def test_train_adc_bits_accepts_24_and_refuses_25():
    """``--train-adc-bits`` is an integer in 1..24 (the ADC's own range)."""
    from cimsim.cli import _check_train_args

    _check_train_args(_train_args("--method", "pim-qat", "--train-adc-bits", "24"))
    with pytest.raises(ConfigError, match="--train-adc-bits"):
        _check_train_args(_train_args("--method", "pim-qat", "--train-adc-bits", "25"))


def test_a_checkpoint_s_identity_holds_the_limit_and_the_cosine_epochs():
    """Another ``--limit`` is another run; ``--epochs`` belongs to the identity under a
    cosine schedule only; ``--option`` in any order is one run."""
    from cimsim.cli import _run_identity

    base = _run_identity(_train_args())
    assert _run_identity(_train_args("--limit", "50")) != base
    assert _run_identity(_train_args("--epochs", "7")) == base
    cosine = _run_identity(_train_args("--schedule", "cosine"))
    assert _run_identity(_train_args("--schedule", "cosine", "--epochs", "7")) != cosine
    assert _run_identity(_train_args("--option", "a=1", "--option", "b=2")) == _run_identity(
        _train_args("--option", "b=2", "--option", "a=1"))


def test_train_holds_out_the_last_quarter_of_a_data_file_rounded_down(monkeypatch):
    """10 inputs of a file: the first 7 (3 * 10 // 4) train, the last 3 evaluate."""
    import cimsim.cli
    import cimsim.mapping.loaders as loaders

    x, y = torch.arange(10.0)[:, None], torch.arange(10) % 2
    monkeypatch.setattr(loaders, "load_data", lambda path, integers: (x, y))
    monkeypatch.setattr(loaders, "load_model_for", lambda spec, data: (torch.nn.Identity(), data))
    monkeypatch.setattr(cimsim.cli, "_check_scores", lambda *a: None)
    args = argparse.Namespace(model="m:f", data="d.npz", limit=0)
    _, x_train, y_train, x_eval, y_eval, what = cimsim.cli._train_data(args)
    assert x_train[:, 0].tolist() == list(range(7)) and x_eval[:, 0].tolist() == [7, 8, 9]
    assert y_eval.tolist() == [1, 0, 1]
    assert "inputs 0-6 of d.npz train, 7-9 evaluate" in what


class _Deployed(Exception):
    pass


def test_simulate_passes_the_seed_and_calibrates_on_the_first_training_images(monkeypatch,
                                                                              tmp_path):
    """``simulate --seed 7 --calibration 5 --limit 3`` deploys with seed 7 on the first 5
    training images of the digits split (``--limit`` cuts the evaluated test inputs only)."""
    from cimsim.cli import build_parser, cmd_simulate
    from cimsim.data import load_digits_split

    seen = {}

    def deploy(model, chip, x_cal, **kwargs):
        seen.update(kwargs, x_cal=x_cal)
        raise _Deployed

    monkeypatch.setattr(cimsim, "deploy", deploy)
    args = build_parser().parse_args(["simulate", "--model", "demo", "--chip", "ideal",
                                      "--seed", "7", "--calibration", "5", "--limit", "3",
                                      "--out", str(tmp_path / "out")])
    with pytest.raises(_Deployed):
        cmd_simulate(args)
    assert seen["seed"] == 7
    assert torch.equal(seen["x_cal"], load_digits_split()[0][:5])


# ---------------------------------------------------------------------------------------------
# seeds, flags, integers
# ---------------------------------------------------------------------------------------------
def test_seed_and_int_checks_accept_their_bounds():
    """A seed is 0 .. 2**64 - 1; ``check_int`` includes ``hi``; a NumPy bool is a flag."""
    from cimsim._seed import SEED_MAX, check_flag, check_int, check_seed

    assert SEED_MAX == 2**64 - 1
    assert check_seed(2**64 - 1) == 2**64 - 1
    with pytest.raises(ConfigError, match="seed"):
        check_seed(2**64)
    assert check_int("n", 5, 1, 5) == 5
    with pytest.raises(ConfigError, match="n = 6"):
        check_int("n", 6, 1, 5)
    assert check_flag(np.bool_(True), "flag") is True


# ---------------------------------------------------------------------------------------------
# inputs and evaluation
# ---------------------------------------------------------------------------------------------
def test_a_dict_s_samples_are_counted_by_its_first_tensor_of_more_than_one_row():
    """A ``(1, S)`` position_ids first and a ``(3, S)`` input_ids: 3 samples, the shared
    position_ids passed whole when the rows are cut."""
    from cimsim._inputs import input_count, input_rows

    x = {"position_ids": torch.arange(5)[None], "input_ids": torch.zeros(3, 5)}
    assert input_count(x) == 3
    part = input_rows(x, 1, 3)
    assert part["input_ids"].shape == (2, 5) and part["position_ids"].shape == (1, 5)


def test_a_key_padding_mask_of_a_sequence_first_input_is_cut_along_its_first_dimension():
    """Sequence-first ``(S, B, E)`` inputs (batch_dim 1) and a ``(B, S)`` mask, S = B = 4:
    the mask holds its samples in dimension 0 (its rows), not in dimension 1."""
    from cimsim._inputs import input_rows

    x = {"src": torch.zeros(4, 4, 2), "mask": torch.arange(16).reshape(4, 4)}
    part = input_rows(x, 1, 3, batch_dim=1)
    assert part["src"].shape == (4, 2, 2)
    assert torch.equal(part["mask"], x["mask"][1:3])


def test_accuracy_over_batches_counts_inputs_not_batches():
    """Two batches of two inputs, three correct: 3/4."""
    from cimsim.evaluate import accuracy

    scores = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    batches = [(scores[:2], torch.tensor([0, 1])), (scores[2:], torch.tensor([0, 1]))]
    assert accuracy(lambda s: s, batches) == 0.75


def test_output_cosine_of_zero_outputs_is_zero_and_shared_nans_agree():
    """All-zero outputs have no direction: 0.0. A NaN in the same place of both outputs is
    left out (no warning), the rest compared."""
    import warnings

    from cimsim.evaluate import output_cosine

    x = torch.zeros(4, 3)
    assert output_cosine(lambda t: t, lambda t: t, x) == 0.0
    x = torch.tensor([[1.0, float("nan")], [2.0, 3.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert output_cosine(lambda t: t, lambda t: t, x) == pytest.approx(1.0)


def test_labels_one_past_the_classes_are_refused():
    """A model scoring 3 classes takes labels 0..2: label 3 is refused by accuracy and named
    by score_problem."""
    from cimsim.evaluate import accuracy, score_problem

    x = torch.eye(3)
    with pytest.raises(ValueError, match="label 3"):
        accuracy(lambda t: t, x, torch.tensor([0, 1, 3]))
    assert "label 3" in score_problem(lambda t: t, x[:2], torch.tensor([0, 3]))


def test_digits_split_rounds_the_test_count_and_follows_the_seed():
    """test_fraction 0.1 of 1797 is 179.7: 180 test images; seed 1's split is the first 180
    of default_rng(1)'s permutation; pixels are counts / 16 (max exactly 1.0)."""
    from cimsim.data import load_digits_split

    x_tr, _, x_te, y_te = load_digits_split(test_fraction=0.1, seed=1)
    assert x_te.shape[0] == 180 and x_tr.shape[0] == 1797 - 180
    from sklearn.datasets import load_digits

    digits = load_digits()
    perm = np.random.default_rng(1).permutation(1797)
    assert y_te.tolist() == digits.target[perm[:180]].tolist()
    assert float(x_tr.max()) == 1.0
    assert torch.equal(x_te[0, 0], torch.from_numpy(digits.images[perm[0]] / 16.0).float())
