"""Arguments a new user gets wrong are refused up front, naming the argument and what is
allowed, instead of a silently wrong figure or a failure after the work (a hunt over the
public API, 2026-12-03)."""

from __future__ import annotations

import tomllib
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.config import ChipConfig
from cimsim.cost import datasheet, estimate
from cimsim.errors import ConfigError, MappingError
from cimsim.train import prepare


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))


def test_numpy_scalars_are_numbers_in_a_chip_and_save_as_toml():
    """np.int64 and np.float32 were refused ("an integer in [1, 24]" for 6); np.float64 was
    kept and written as ``np.float64(0.5)``, a file load_chip could not read."""
    chip = cimsim.load_chip("rram-22nm")
    adc = chip.adc.replace(bits=np.int64(6), zero_aligned=np.bool_(False))
    assert adc.bits == 6 and type(adc.bits) is int and adc.zero_aligned is False
    noise = chip.noise.replace(thermal_sigma_lsb=np.float32(0.5))
    assert noise.thermal_sigma_lsb == 0.5 and type(noise.thermal_sigma_lsb) is float
    saved = chip.replace(adc=adc, noise=chip.noise.replace(thermal_sigma_lsb=np.float64(0.25)))
    assert ChipConfig.from_dict(tomllib.loads(saved.to_toml())) == saved
    for bad in (True, np.bool_(True), "6", np.float64("nan")):
        with pytest.raises(ConfigError, match="ADCConfig.bits"):
            chip.adc.replace(bits=bad)


def test_one_drift_coefficient_is_one_for_every_level():
    """The message allowed "one number", and refused 0.05 written as one."""
    chip = cimsim.load_chip("pcm-22nm", overrides=["device.drift_nu_mean=0.05"])
    assert chip.device.drift_nu_mean == (0.05,)


def test_a_true_false_argument_is_true_or_false():
    """``"false"`` and ``"no"`` were truthy: a signed matmul, a pipelined estimate and a
    calibrated datasheet."""
    x = np.random.default_rng(0).integers(0, 100, (4, 64))
    w = np.random.default_rng(1).integers(-100, 100, (3, 64))
    with pytest.raises(ConfigError, match="input_signed = 'false' is invalid; allowed: True"):
        cimsim.matmul(x, w, "sram-65nm", input_signed="false")
    y, _ = cimsim.matmul(x, w, "ideal", input_signed=np.bool_(False))
    np.testing.assert_array_equal(y, x @ w.T)
    with pytest.raises(ConfigError, match="calibrated = 'no'"):
        datasheet("jia-jssc20", calibrated="no")
    sheet = datasheet("published/sinangil-jssc21", input_density=np.float32(0.5))
    assert sheet["input_density"] == 0.5
    sim = cimsim.deploy(_mlp(), "rram-22nm", torch.randn(16, 16))
    sim(torch.randn(4, 16))
    with pytest.raises(ConfigError, match="pipelined = 'no'"):
        estimate(sim.work(), pipelined="no")


def test_a_report_before_any_inference_says_so():
    sim = cimsim.deploy(_mlp(), "rram-22nm", torch.randn(16, 16))
    with pytest.warns(UserWarning, match="no inference since it was deployed"):
        sim.report()
    sim(torch.randn(4, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim.report()


def test_batch_dim_and_seed_and_exclude_are_checked_up_front():
    model, x = _mlp(), torch.randn(64, 16)
    # batch_dim 5 read the whole batch as one sample: energy per inference 32x
    with pytest.raises(MappingError, match=r"batch_dim = 5 is invalid .* allowed: 0 to 1"):
        cimsim.deploy(model, "rram-22nm", x, batch_dim=5)
    with pytest.raises(ConfigError, match="seed = -1"):  # was refused by deploy, after training
        prepare(model, "rram-22nm", x, seed=-1)
    prep = prepare(model, "rram-22nm", x)
    for bad in (-1, 2):  # -1 counted the features as samples
        with pytest.raises(MappingError, match=f"batch_dim = {bad} is invalid"):
            prep.deploy(batch_dim=bad)
    with pytest.raises(ConfigError, match="seed = 1.5"):
        prep.deploy(seed=1.5)
    sim = prep.deploy()
    sim(x[:32])
    assert sim.n_inferences == 32
    for bad, what in (([0], "exclude holds 0"), (None, "exclude = None"),
                      ("", "exclude holds '', an empty pattern")):
        with pytest.raises(MappingError, match=what):
            cimsim.deploy(model, "ideal", x, exclude=bad)
        with pytest.raises(MappingError, match=what):
            prepare(model, "ideal", x, exclude=bad)


def test_run_sweep_refuses_a_bad_seed_and_labels_beyond_the_classes(tmp_path):
    """Every point failed on seed -1 after the files were written; labels 10..13 of a
    4-class model scored 0 % as 'ok'."""
    from cimsim.sweep import run_sweep

    x, y = torch.randn(64, 16), torch.randint(0, 4, (64,))
    with pytest.raises(ConfigError, match="seed = -1"):
        run_sweep(_mlp(), (x, y), "rram-22nm", {"adc_bits": [4]}, tmp_path / "a",
                  calibration=16, seed=-1)
    with pytest.raises(ConfigError, match="label 13 is out of range .* 4 classes"):
        run_sweep(_mlp(), (x, y + 10), "rram-22nm", {"adc_bits": [4]}, tmp_path / "b",
                  calibration=16)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_odd_arguments_are_named_not_python_errors():
    """Each failed on a bare AttributeError / TypeError naming no argument."""
    sim = cimsim.deploy(_mlp(), "rram-22nm", torch.randn(16, 16))
    sim(torch.randn(4, 16))
    for kw, name in (({"calibration": False}, "calibration = False"),
                     ({"table": "x"}, "table = 'x'")):
        with pytest.raises(ValueError, match=name):
            estimate(sim.work(), **kw)
    for bad in (None, 3):
        with pytest.raises(ConfigError, match=f"chip = {bad!r} is invalid"):
            cimsim.load_chip(bad)
    with pytest.raises(ConfigError, match="key 1 is not a field name"):
        ChipConfig.from_dict({1: 2})
    x, w = np.ones((2, 64), dtype=np.int64), np.ones((3, 64), dtype=np.int64)
    for tiles in ([(0, 32.0), (32.0, 64)], [(0,)]):
        with pytest.raises(MappingError, match=r"row_tiles\[0\] = .* pair of integers"):
            cimsim.matmul(x, w, "ideal", row_tiles=tiles)


def test_a_mistyped_preset_name_gets_the_nearest():
    with pytest.raises(ConfigError, match=r"'rram-22mn' \(did you mean 'rram-22nm'\?\)"):
        cimsim.load_chip("rram-22mn")
    with pytest.raises(ConfigError, match="did you mean 'published/sinangil-jssc21'"):
        cimsim.load_chip("sinangil-jssc21")


def test_the_datasheet_of_a_reference_chip_says_its_figures_mean_nothing(capsys):
    """The report's headline said so; the datasheet printed 543,152 mm2 without a word."""
    from cimsim.cli import main

    assert datasheet("ideal")["caveat"].startswith("reference chip, not hardware")
    assert datasheet("published/sinangil-jssc21")["caveat"] == ""
    assert main(["datasheet", "ideal"]) == 0
    assert "caveat: reference chip, not hardware" in capsys.readouterr().out


def test_a_time_after_programming_on_a_device_that_does_not_age_is_warned_of():
    """The command line's --time said so and the sweep's time_s axis refuses; deploy and
    prepare took it without a word (the same chip at every time)."""
    model, x = _mlp(), torch.randn(16, 16)
    for call, who in ((cimsim.deploy, "deploy"), (prepare, "prepare")):
        with pytest.warns(UserWarning, match=f"{who}: t_inference_s = 3600: the chip's device "
                                             "does not change"):
            call(model, "rram-22nm", x, t_inference_s=3600.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cimsim.deploy(model, "pcm-22nm", x, t_inference_s=3600.0)


def test_estimate_prices_a_run_only_with_a_chip_that_would_have_counted_its_events():
    """Another chip priced the run's conversions and cell reads silently as if it had made
    them (another array, converter or precision); another node or supply (``tech``) is the
    what-if the same events answer."""
    chip = cimsim.load_chip("rram-22nm")
    sim = cimsim.deploy(_mlp(), chip, torch.randn(16, 16))
    sim(torch.randn(4, 16))
    work = sim.work()
    other_tech = chip.replace(name="x", tech=chip.tech.replace(vdd_v=0.9))
    a, b = estimate(work).totals, estimate(work, other_tech).totals
    assert b["energy_pj_per_inference"] != a["energy_pj_per_inference"]
    for other, named in ((chip.replace(adc=chip.adc.replace(bits=4)), "adc.bits"),
                         (chip.replace(input_bits=6), "input_bits")):
        with pytest.raises(ValueError, match=f"differs from the one the work ran on .* {named}"):
            estimate(work, other)
    x, w = np.ones((2, 40), dtype=np.int64), np.ones((3, 40), dtype=np.int64)
    _, ev = cimsim.matmul(x, w, chip, calibration=x)
    slow = chip.replace(tech=chip.tech.replace(t_read_ns=100.0))
    t_slow = cimsim.deploy(_mlp(), slow, torch.randn(16, 16))
    t_slow(torch.randn(4, 16))
    # a slower read pulse re-prices the run's time as a run on that chip times it (the
    # latency read the run's own chip: 3585 ns against 12801 ns on rram-22nm)
    assert (estimate(work, slow).totals["latency_ns_per_inference"]
            == pytest.approx(estimate(t_slow.work()).totals["latency_ns_per_inference"]))
    layer = cimsim.arrays.program(w, chip)
    with pytest.raises(ValueError, match="array.n_rows"):
        estimate([cimsim.cost.layer_work(ev, layer)],
                 chip.replace(array=chip.array.replace(n_rows=64)))


def test_process_settings_are_checked_and_a_sweep_tells_them_apart(monkeypatch):
    """CIMSIM_GEMM=NUMPY (or a typo) silently meant float32; CIMSIM_PROGRAM_CACHE_MB=inf failed
    on an OverflowError; a sweep rerun under CIMSIM_NOISE_SAMPLER=exact resumed the Gaussian
    sampler's rows (the same ids)."""
    from cimsim.arrays import _gemm
    from cimsim.arrays.cache import _budget_from_env
    from cimsim.sweep.store import context_hash

    chip = cimsim.load_chip("rram-22nm")
    plain = context_hash("m", "d", 8, chip, 0)
    for bad in ("NUMPY", "flaot32", ""):
        monkeypatch.setenv("CIMSIM_GEMM", bad)
        with pytest.raises(ConfigError, match="CIMSIM_GEMM = .* allowed: 'auto', 'int8'"):
            _gemm.gemm_setting()
    monkeypatch.setenv("CIMSIM_GEMM", "numpy")
    assert context_hash("m", "d", 8, chip, 0) != plain
    monkeypatch.setenv("CIMSIM_GEMM", "float32")
    assert context_hash("m", "d", 8, chip, 0) == plain
    monkeypatch.setenv("CIMSIM_NOISE_SAMPLER", "exact")
    assert context_hash("m", "d", 8, chip, 0) != plain
    for bad in ("inf", "1e400"):
        monkeypatch.setenv("CIMSIM_PROGRAM_CACHE_MB", bad)
        with pytest.raises(ConfigError, match="CIMSIM_PROGRAM_CACHE_MB = .* a finite number"):
            _budget_from_env()


def test_a_deployed_layers_cells_are_read_only():
    """The programming cache hands the same arrays to every later deploy of those weights: a
    fault written by hand into one model's layer changed every later deploy in the process."""
    model, x = _mlp(), torch.randn(16, 16)
    first = cimsim.deploy(model, "rram-22nm", x)
    layer = next(iter(first.sim_layers.values())).cores[0].parts[0][2]
    with pytest.raises(ValueError, match="read-only"):
        layer.g_phys[:] = 0
    assert not layer.digits_phys.flags.writeable
    # and torch, which only reads them, does not warn of it (cimsim datasheet printed it)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="The given NumPy array is not writable")
        first(x)
        first.use_backend("torch")(x)
        cimsim.cost.datasheet(cimsim.load_chip("sram-65nm"))


def test_estimate_refuses_layer_works_that_share_a_name():
    """Two layer works left at layer_work's default name were priced as one layer: the
    chip's time was the last layer's alone (half the layer-by-layer sum: TOPS doubled) and
    each took the other's blocks' leakage. Refused, naming the name."""
    from cimsim.arrays.program import program
    from cimsim.cost import layer_work
    chip = cimsim.load_chip("rram-22nm")
    rng = np.random.default_rng(0)
    works = []
    for k, n in ((300, 40), (128, 20)):
        x, w = rng.integers(0, 256, (8, k)), rng.integers(-127, 128, (n, k))
        _, ev = cimsim.matmul(x, w, chip, calibration=x)
        works.append((ev, program(w, chip)))
    with pytest.raises(ValueError, match=r"share the name\(s\) 'layer'.*name='fc1'"):
        estimate([layer_work(ev, p) for ev, p in works], chip)
    named = [layer_work(ev, p, name=f"l{i}") for i, (ev, p) in enumerate(works)]
    alone = [estimate([w], chip).totals["latency_ns_per_inference"] for w in named]
    assert estimate(named, chip).totals["latency_ns_per_inference"] == pytest.approx(sum(alone))


def test_layer_work_refuses_counts_and_blocks_it_cannot_price():
    """n_vectors = -8 or NaN priced a layer of no time and no leakage, silently; a weight
    array for ``programmed`` failed on an attribute, an empty list on an index."""
    from cimsim.arrays import program
    from cimsim.cost import estimate, layer_work
    from cimsim.errors import ConfigError

    w = np.ones((4, 16), dtype=np.int64)
    x = np.ones((8, 16), dtype=np.int64)
    _, ev = cimsim.matmul(x, w, "ideal")
    block = program(w, cimsim.load_chip("ideal"))
    for bad in (-8, float("nan"), float("inf"), True, "8"):
        with pytest.raises(ConfigError, match="n_vectors = .* is invalid; allowed: a finite"):
            layer_work(ev, block, n_vectors=bad)
    for bad in (w, []):
        with pytest.raises(TypeError, match="programmed is .*; allowed: a ProgrammedLayer"):
            layer_work(ev, bad)
    totals = estimate([layer_work(ev, block, n_vectors=8)], "ideal").totals
    assert totals["latency_ns_per_inference"] > 0


def test_pareto_front_takes_finite_accuracies_only_and_any_index():
    """An infinite accuracy (a trace's sqnr_db of an exact layer) took the front and pushed
    finite rows off it; a repeated index failed in pandas."""
    import pandas as pd

    from cimsim.sweep import pareto_front

    frame = pd.DataFrame({"accuracy": [0.9, float("inf"), 0.95, 0.97],
                          "energy_pj_per_inference": [1.0, 2.0, 3.0, 4.0]})
    assert pareto_front(frame).tolist() == [True, False, True, True]
    twice = pd.concat([frame.iloc[[0, 2]], frame.iloc[[3]]])
    twice.index = [0, 0, 1]
    assert pareto_front(twice).tolist() == [True, True, True]


def test_trace_counts_and_unstated_inputs_scope_are_checked():
    """trace(max_code_vectors=-1) ran and reported NaN code use; unstated_inputs read the
    scope 'chp' as the macro's, where datasheet refuses the same typo."""
    from cimsim.config import unstated_inputs
    from cimsim.errors import ConfigError

    model, x = nn.Sequential(nn.Linear(4, 3)), torch.randn(8, 4)
    sim = cimsim.deploy(model, "ideal", x)
    for kw in ({"max_code_vectors": -1}, {"max_code_vectors": 1.5}, {"batch_size": 0}):
        with pytest.raises(ValueError, match=f"trace: {next(iter(kw))} = .* is invalid"):
            sim.trace(x, **kw)
    assert len(sim.trace(x, max_code_vectors=1)) == 1
    with pytest.raises(ConfigError, match="scope = 'chp' is invalid; allowed: 'macro', 'chip'"):
        unstated_inputs("rram-22nm", scope="chp")
    assert unstated_inputs("rram-22nm", scope="chip") is not None


def test_estimate_refuses_a_chip_that_moves_to_or_from_bit_plane_drive():
    """A bit-plane drive's run counts the cells' reads (popcount(x)); the other drives count
    |x|: a run re-priced across the two came out 9x too dear (or 4 % too cheap) without a
    word. Between the other drives the same events re-price (pulse width vs amplitude)."""
    chip = cimsim.load_chip("rram-22nm", overrides=["tech.cost_model='physical'",
                                                    "dac.bits='all'"])
    sim = cimsim.deploy(_mlp(), chip, torch.randn(16, 16))
    sim(torch.randn(4, 16))
    planes = chip.replace(tech=chip.tech.replace(input_drive="bit_planes"))
    with pytest.raises(ValueError, match=r"tech\.input_drive to or from 'bit_planes'"):
        estimate(sim.work(), planes)
    width = chip.replace(tech=chip.tech.replace(input_drive="pulse_width"))
    assert estimate(sim.work(), width).totals["energy_pj_per_inference"] > 0


def test_arguments_of_the_second_circle_are_named(tmp_path):
    """A hunt over the public API's docstrings (2026-12-05): each of these ended in a Python
    error naming nothing (or was taken for something else) where the docstring promised an
    error naming the argument."""
    from cimsim.data import load_digits_split
    from cimsim.models.digits_cnn import train_digits_cnn
    from cimsim.models.resnet_digits import ResNetDigits
    from cimsim.sweep import run_sweep
    from cimsim.sweep.grid import chip_for_point
    from cimsim.train import distill

    model, x = _mlp().eval(), torch.randn(8, 16)
    for fn in (cimsim.deploy, prepare):  # the batches' note failed comparing with 'a'
        with pytest.raises(MappingError, match=r"batch_size = 'a' is invalid"):
            fn(model, "ideal", x, batch_size="a")
        with pytest.raises(MappingError, match=r"batch_dim = 'a' is invalid"):
            fn(model, "ideal", x, batch_dim="a")
    with pytest.raises(ConfigError, match=r"overrides = 5 is invalid"):
        cimsim.load_chip("ideal", overrides=5)
    with pytest.raises(ConfigError, match=r"unknown sweep axis/axes \['foo'\]"):
        chip_for_point("ideal", {"foo": 4})  # returned the chip unchanged
    assert chip_for_point("ideal", {"adc_bits": 5}).adc.bits == 5  # a preset name is a chip
    with pytest.raises(ConfigError, match=r"grid = \[\('adc_bits', \[4\]\)\] is invalid"):
        run_sweep(model, (x,), "ideal", [("adc_bits", [4])], tmp_path)
    for kwargs, match in (({"progress": "x"}, r"progress = 'x' is invalid"),
                          ({"model_name": 5}, r"model_name = 5 is invalid")):
        with pytest.raises(ConfigError, match=match):
            run_sweep(model, (x,), "ideal", {"adc_bits": [4]}, tmp_path, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = cimsim.deploy(model, "ideal", x)
        twin = prepare(model, "ideal", x)
    with pytest.raises(ConfigError, match=r"noise = 'yes' is invalid"):
        sim.reset(noise="yes")
    with pytest.raises(MappingError, match=r"trace: batch_size = 0 is invalid"):
        sim.trace(x, batch_size=0)
    for kwargs, match in (({"layers": 5}, r"layers = 5 is invalid"),
                          ({"loss": ["mse"]}, r"loss = \['mse'\] is invalid"),
                          ({"progress": "x"}, r"progress = 'x' is invalid")):
        with pytest.raises(ConfigError, match=match):
            distill(twin, model, x, **kwargs)
    for kwargs, match in (({"test_fraction": "a"}, r"test_fraction = 'a' is invalid"),
                          ({"test_fraction": float("nan")}, r"test_fraction = nan is invalid"),
                          ({"seed": -1}, r"seed = -1 is invalid")):
        with pytest.raises(ConfigError, match=match):
            load_digits_split(**kwargs)
    for kwargs, match in (({"epochs": 0}, r"epochs = 0 is invalid"),
                          ({"batch_size": 0}, r"batch_size = 0 is invalid")):
        with pytest.raises(ConfigError, match=match):  # 0 epochs: an untrained model
            train_digits_cnn(**kwargs)
    with pytest.raises(ConfigError, match=r"widths = \(4, 4\) is invalid"):
        ResNetDigits(widths=(4, 4))


def test_overrides_none_or_any_iterable_of_settings_still_load():
    """The check of ``overrides`` refused None (argparse's append action with no --set) and a
    generator, set or array, which loaded before; a generator was read twice (no set note)."""
    for given in (None, ()):
        assert cimsim.load_chip("ideal", overrides=given) == cimsim.load_chip("ideal")
    for given in ((s for s in ["adc.bits=5"]), {"adc.bits=5"}, np.array(["adc.bits=5"]),
                  iter(["adc.bits=5"])):
        chip = cimsim.load_chip("ideal", overrides=given)
        assert chip.adc.bits == 5 and chip.description.endswith("(with --set adc.bits=5)")


@pytest.mark.parametrize("value", [0, -1.5, float("nan"), float("inf"), True, np.bool_(True),
                                   "2", None, 1 + 0j, 10**400])
def test_one_rule_for_a_positive_number_refuses(value):
    """``check_positive_number`` serves the learning rates, ColumnQuant's ``num_sigma``, LoRA's
    ``alpha`` and ``mobilenet_v2``'s ``width_mult`` (four copies of the rule before, two of
    which took True or a string)."""
    from cimsim._seed import check_positive_number

    with pytest.raises(ConfigError, match=r"^width = .* is invalid; allowed: a finite number > 0$"):
        check_positive_number("width", value)


@pytest.mark.parametrize("value", [1, 0.25, np.float32(0.5), np.int64(3), 10**30])
def test_one_rule_for_a_positive_number_takes_numbers_as_floats(value):
    from cimsim._seed import check_positive_number

    out = check_positive_number("width", value)
    assert type(out) is float and out == float(value)


@pytest.mark.parametrize("exclude", [b"0", bytearray(b"0")])
def test_exclude_as_bytes_is_named_whole(exclude):
    """Bytes iterate as integers: ``exclude=b"0"`` was refused as "exclude holds 48, which
    is not a string" (the byte's value); now named as given."""
    with pytest.raises(MappingError, match=r"^exclude = (b|bytearray\(b)'0'\)? is invalid; "
                                           r"allowed: a layer name"):
        cimsim.deploy(_mlp(), "ideal", torch.randn(4, 16), exclude=exclude)
