"""The programming cache: drawn cells reused exactly when the weights, the device settings and
the seed are unchanged; another ADC or noise setting reuses them; the result is what
programming from scratch gives."""

from __future__ import annotations

import numpy as np
import pytest

import cimsim
from cimsim.arrays import cache
from cimsim.arrays.program import program
from cimsim.errors import ConfigError


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.set_max_bytes(cache.DEFAULT_MB * 2**20)
    cache.clear()


def _chip():
    base = cimsim.load_chip("rram-22nm")
    return base.replace(array=base.array.replace(n_rows=32, n_cols=32),
                        device=base.device.replace(p_stuck_on=0.01, p_stuck_off=0.02))


def _prog(w, chip, seed=3, parts=None):
    parts = parts or [(0, w.shape[1], None)]
    return cache.program_seeded(w, chip, seed, input_signed=False, parts=parts,
                                names=[f"p{i}" for i in range(len(parts))])


def _assert_same_layer(a, b):
    for f in ("digits_phys", "g_phys", "gemm_matrix", "gemm_var", "off_add", "pos", "neg",
              "out_col", "conv_coef", "x_sum_coef", "cell_rowsum", "groups"):
        va, vb = getattr(a, f), getattr(b, f)
        if va is None or vb is None:
            assert va is None and vb is None, f
        else:
            np.testing.assert_array_equal(va, vb, err_msg=f)
    assert (a.fs_lo, a.fs_hi, a.group_abs_max) == (b.fs_lo, b.fs_hi, b.group_abs_max)
    assert a.chip == b.chip


def test_cached_equals_programming_from_scratch():
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (10, 70))
    chip = _chip()
    parts = [(0, 32, None), (32, 64, None), (64, 70, None)]
    first = _prog(w, chip, parts=parts)
    again = _prog(w, chip, parts=parts)
    gen = np.random.default_rng(3)  # one generator drawn in part order, as deploy does
    scratch = [program(w[:, a:b], chip, gen) for a, b, _ in parts]
    for x, y, z in zip(first, again, scratch, strict=True):
        _assert_same_layer(x, z)
        _assert_same_layer(y, z)
        assert y.g_phys is x.g_phys  # the second call drew nothing
    info = cache.cache_info()
    assert (info.hits, info.misses, info.entries) == (1, 1, 1)


def test_adc_and_noise_changes_reuse_the_cells():
    w = np.random.default_rng(1).integers(-127, 128, (8, 40))
    chip = _chip()
    first = _prog(w, chip)[0]
    for other in (chip.replace(adc=chip.adc.replace(bits=4, range_policy="full_scale")),
                  chip.replace(noise=chip.noise.replace(thermal_sigma_lsb=2.0,
                                                        read_noise_rel=0.05)),
                  chip.replace(array=chip.array.replace(rows_per_conversion=16))):
        layer = _prog(w, other)[0]
        assert layer.g_phys is first.g_phys
        assert layer.chip == other
        _assert_same_layer(layer, program(w, other, np.random.default_rng(3)))
    assert cache.cache_info().misses == 1


@pytest.mark.parametrize("change", ["weight", "seed", "sigma", "stuck", "on_off", "bits",
                                    "encoding"])
def test_weights_device_or_seed_changes_draw_again(change):
    w = np.random.default_rng(2).integers(-127, 128, (8, 40))
    chip = _chip()
    first = _prog(w, chip)[0]
    seed = 3
    if change == "weight":
        w = w.copy()
        w[0, 0] = -w[0, 0] if w[0, 0] != 0 else 1
    elif change == "seed":
        seed = 4
    elif change == "sigma":
        chip = chip.replace(device=chip.device.replace(variation_sigma=0.06))
    elif change == "stuck":
        chip = chip.replace(device=chip.device.replace(p_stuck_off=0.03))
    elif change == "on_off":
        chip = chip.replace(device=chip.device.replace(on_off_ratio=20.0))
    elif change == "bits":
        chip = chip.replace(device=chip.device.replace(bits_per_cell=1))
    else:
        chip = chip.replace(weight_encoding="offset")
        w = np.clip(w, -127, 127)
    layer = _prog(w, chip, seed=seed)[0]
    assert layer.g_phys is not first.g_phys
    assert cache.cache_info().misses == 2
    _assert_same_layer(layer, program(w, chip, np.random.default_rng(seed)))


def test_budget_evicts_least_recently_used_and_zero_disables():
    rng = np.random.default_rng(4)
    ws = [rng.integers(-127, 128, (8, 40)) for _ in range(3)]
    chip = _chip()
    one = _prog(ws[0], chip)[0]
    per_entry = cache.cache_info().nbytes
    assert per_entry == one.digits_phys.nbytes + one.g_phys.nbytes
    cache.set_max_bytes(2 * per_entry)
    _prog(ws[1], chip)
    _prog(ws[0], chip)  # touch 0: 1 is now the least recently used
    _prog(ws[2], chip)  # evicts 1
    info = cache.cache_info()
    assert (info.entries, info.nbytes) == (2, 2 * per_entry)
    assert _prog(ws[0], chip)[0].g_phys is one.g_phys
    misses = cache.cache_info().misses
    _prog(ws[1], chip)
    assert cache.cache_info().misses == misses + 1
    cache.set_max_bytes(0)
    assert cache.cache_info().entries == 0
    a, b = _prog(ws[0], chip)[0], _prog(ws[0], chip)[0]
    assert a.g_phys is not b.g_phys and cache.cache_info().entries == 0
    np.testing.assert_array_equal(a.g_phys, b.g_phys)


def test_bad_budget_is_a_config_error():
    with pytest.raises(ConfigError, match="max_bytes"):
        cache.set_max_bytes(-1)


def test_deploy_reuses_programming_across_adc_settings():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(24, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 4))
    x = torch.randn(32, 24)
    chip = _chip()
    sim_a = cimsim.deploy(model, chip, calibration=x, seed=5)
    assert cache.cache_info().misses == 2
    sim_b = cimsim.deploy(model, chip.replace(adc=chip.adc.replace(bits=5)), calibration=x,
                          seed=5)
    assert cache.cache_info().misses == 2 and cache.cache_info().hits == 2
    cache.clear()
    cache.set_max_bytes(0)
    sim_c = cimsim.deploy(model, chip.replace(adc=chip.adc.replace(bits=5)), calibration=x,
                          seed=5)
    with torch.no_grad():  # the first forward of each (its noise seed counts the calls)
        y_a, y_b, y_c = sim_a(x), sim_b(x), sim_c(x)
    assert not torch.equal(y_a, y_b)  # the ADC did change
    assert torch.equal(y_b, y_c)  # cached = programmed from scratch


def test_a_digital_read_out_senses_cells_an_analog_one_sums():
    """The cells a digital read-out senses to bits (off-current not summed, a varied cell its
    sensed bit) are not those an analog read-out sums: switching the converter between them
    draws anew; before, a sweep over adc.kind on a faulty MRAM device reused the other's
    cells (an off-current of 0 where the analog chip sums 1 cell-LSB)."""
    base = cimsim.load_chip("ideal")
    chip = base.replace(
        weight_bits=4, input_bits=4, weight_encoding="twos_complement",
        dac=base.dac.replace(bits=1),
        device=base.device.replace(cell="mram", bits_per_cell=1, on_off_ratio=2.0,
                                   variation="lognormal", variation_sigma=0.2),
        array=base.array.replace(n_rows=32, n_cols=32, cols_per_adc=1),
        adc=base.adc.replace(kind="digital", bits=7, range_policy="full_scale"))
    w = np.random.default_rng(4).integers(-8, 8, (6, 32))
    digital = _prog(w, chip)[0]
    analog = chip.replace(adc=chip.adc.replace(kind="sar", bits=8))
    layer = _prog(w, analog)[0]
    assert layer.g_phys is not digital.g_phys and cache.cache_info().misses == 2
    _assert_same_layer(layer, program(w, analog, np.random.default_rng(3)))
    assert set(np.unique(digital.g_phys)) <= {0.0, 1.0} and layer.g_phys.min() > 0.5



def _sram_mlp():
    """A small MLP deployed on ``sram-65nm`` (ideal devices: the GEMM reads the programming
    cache's read-only cells), and its input."""
    import warnings

    import torch
    from torch import nn

    import cimsim

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    x = torch.randn(8, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cimsim.deploy(model, "sram-65nm", x, progress=False), x


def test_a_forward_leaves_the_processs_once_only_warnings_once():
    """On chips with ideal devices the cells the GEMM reads are the programming cache's
    read-only array, and each GEMM held torch's warning about it in a ``catch_warnings``
    block, which clears Python's warning registries: a once-only warning of the user's printed
    at every forward (200 times in 200 calls on ``sram-65nm``)."""
    import warnings

    sim, x = _sram_mlp()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        for _ in range(20):
            warnings.warn("a user's warning, once", stacklevel=1)
            sim(x)
    assert [str(w.message) for w in seen] == ["a user's warning, once"]


def test_torchs_read_only_warning_held_at_every_call_under_warn_always():
    """Only the first GEMM held torch's read-only-array warning (torch gives it once per
    process), but ``torch.set_warn_always(True)`` makes it warn at every call: the second
    forward on sram-65nm printed it, and raised it under ``simplefilter('error')``."""
    import warnings

    import torch

    sim, x = _sram_mlp()
    was = torch.is_warn_always_enabled()
    torch.set_warn_always(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for _ in range(3):
                sim(x)
    finally:
        torch.set_warn_always(was)


def test_the_same_weights_cut_at_other_column_ranges_are_drawn_anew():
    """The parts are in the key: the same weights and seed cut into other column ranges (a
    row tile moved, ``weight_granularity`` changed) draw their own cells, as programming each
    range from scratch does; keyed without them, the second cut took the first's cells, the
    wrong columns (same count of parts) or a list of the wrong length."""
    rng = np.random.default_rng(1)
    w = rng.integers(-127, 128, (6, 64))
    chip = _chip()
    _prog(w, chip, parts=[(0, 32, None), (32, 64, None)])
    moved = [(0, 20, None), (20, 64, None)]
    got = _prog(w, chip, parts=moved)
    gen = np.random.default_rng(3)
    for x, (a, b, _) in zip(got, moved, strict=True):
        _assert_same_layer(x, program(w[:, a:b], chip, gen))


def test_weights_of_the_same_bytes_in_another_shape_are_drawn_anew():
    """The digest covers the shape: a (3, 8) and a (6, 4) matrix of the same bytes, both read
    at columns 0:4, are other matrices (3 and 6 outputs) and draw their own cells; keyed by the
    bytes alone, the second got the first's 3-output cells."""
    rng = np.random.default_rng(2)
    flat = rng.integers(-127, 128, 24)
    chip = _chip()
    _prog(flat.reshape(3, 8), chip, parts=[(0, 4, None)])
    w = flat.reshape(6, 4)
    (got,) = _prog(w, chip, parts=[(0, 4, None)])
    _assert_same_layer(got, program(w, chip, np.random.default_rng(3)))
