"""Tests that kill surviving mutants of a mutation round over cimsim's small helper modules.

Covered: ``cimsim._seed`` (the seed, flag and integer checks: bounds, NumPy types, the message
naming the argument and the allowed values), ``cimsim._json`` (``json_safe``'s NaN/inf, enums,
NumPy scalars and containers; ``numeric_name``'s anchors; ``saved_numbers``' read-back and its
errors), ``cimsim._digest`` (what changes a tensor digest and what must not), ``cimsim._eager``
(the graph break only while compiling), ``cimsim._modes`` (each module's own flag kept),
``cimsim._warn`` (attribution to the first frame outside the package, the category),
``cimsim._progress`` (when a bar is drawn), ``cimsim.api.matmul`` (the default seed, the
noise stream, the inferred input sign) and the deprecated ``cimsim.train.digits`` path.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import os
import sys
import types
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim._digest import hash_named, hash_tensor
from cimsim._eager import eager
from cimsim._json import json_safe, numeric_name, saved_numbers
from cimsim._modes import evaluated, module_modes, restore_modes
from cimsim._progress import bar_disabled
from cimsim._seed import SEED_MAX, check_flag, check_int, check_positive_int, check_seed
from cimsim._warn import warn_user
from cimsim.errors import ConfigError

# ---------------------------------------------------------------------------------------------
# _seed
# ---------------------------------------------------------------------------------------------


def test_seed_bounds_types_and_message():
    assert SEED_MAX == 2**64 - 1
    # both ends are seeds; one step outside either is refused
    assert check_seed(0) == 0
    assert check_seed(SEED_MAX) == SEED_MAX
    for bad in (-1, SEED_MAX + 1, True, False, 1.0, "3"):
        with pytest.raises(ConfigError,
                           match=r"allowed: an integer from 0 to 18446744073709551615$"):
            check_seed(bad)
    # NumPy integers are seeds, returned as Python ints (the noise keys hash Python ints)
    for value in (np.uint64(SEED_MAX), np.int64(7)):
        out = check_seed(value)
        assert type(out) is int and out == int(value)


def test_seed_message_names_the_field():
    with pytest.raises(ConfigError, match=r"^seed = -1 is invalid"):
        check_seed(-1)
    with pytest.raises(ConfigError, match=r"^sweep\.seed = -2 is invalid"):
        check_seed(-2, "sweep.seed")


def test_flag_accepts_python_and_numpy_bools_only():
    for value in (True, False, np.bool_(True), np.bool_(False)):
        out = check_flag(value, "f")
        assert type(out) is bool and out == bool(value)
    for bad in ("false", "no", 1, 0, None):
        with pytest.raises(ConfigError, match=rf"^calibrated = {bad!r} is invalid; allowed: "
                                              r"True or False$"):
            check_flag(bad, "calibrated")


def test_int_bounds_are_inclusive_and_the_message_states_them():
    assert check_int("n", 3, 3) == 3
    assert check_int("n", 5, 3, 5) == 5
    assert check_int("n", 0, 0, 0) == 0
    with pytest.raises(ConfigError, match=r"^n = 2 is invalid; allowed: an integer >= 3$"):
        check_int("n", 2, 3)
    with pytest.raises(ConfigError, match=r"^bits = 6 is invalid; allowed: an integer in "
                                          r"\[1, 5\]$"):
        check_int("bits", 6, 1, 5)
    # hi = 0 is an upper bound, not "no bound"
    with pytest.raises(ConfigError, match=r"in \[-3, 0\]"):
        check_int("n", 1, -3, 0)


def test_int_numpy_types():
    out = check_int("n", np.int16(4), 1, 8)  # np.arange of bits in a loop
    assert type(out) is int and out == 4
    for bad in (np.bool_(True), True, 2.0, np.float64(2.0)):
        with pytest.raises(ConfigError, match="^n = "):
            check_int("n", bad, 0)


def test_positive_int_is_at_least_one_with_no_upper_bound():
    assert check_positive_int("n", 1) == 1
    assert check_positive_int("n", 2**40) == 2**40
    with pytest.raises(ConfigError, match=r"^n = 0 is invalid; allowed: an integer >= 1$"):
        check_positive_int("n", 0)


# ---------------------------------------------------------------------------------------------
# _json
# ---------------------------------------------------------------------------------------------


class _Colour(enum.Enum):
    RED = "red-value"


def test_json_safe_special_floats_enums_numpy_and_containers():
    value = {"a": (math.nan, math.inf, -math.inf, 0.0, -0.0),
             "b": [np.float32(-np.inf), np.float64(np.nan), np.int64(3), np.bool_(True)],
             "c": {"d": _Colour.RED, "e": {"f": (np.float64(2.5),)}}}
    out = json_safe(value)
    assert out == {"a": [None, "inf", "-inf", 0.0, -0.0],
                   "b": ["-inf", None, 3, True],
                   "c": {"d": "red-value", "e": {"f": [2.5]}}}
    # plain Python types, so strict JSON writes it
    assert type(out["b"][2]) is int and type(out["b"][3]) is bool
    assert type(out["c"]["e"]["f"][0]) is float
    json.dumps(out, allow_nan=False)
    assert json_safe(math.inf) == "inf" and json_safe(-math.inf) == "-inf"
    assert json_safe(math.nan) is None


def test_json_round_trip_through_saved_numbers():
    row = {"energy_pj": math.inf, "latency_ns": -math.inf, "accuracy": math.nan,
           "n_arrays": np.int64(4), "layer": "fc1"}
    back = saved_numbers(json.loads(json.dumps(json_safe(row), allow_nan=False)), "row")
    assert back == {"energy_pj": math.inf, "latency_ns": -math.inf, "accuracy": None,
                    "n_arrays": 4, "layer": "fc1"}


@pytest.mark.parametrize("key", ["n_arrays", "energy_pj_per_inference", "latency", "area",
                                 "tops_per_w", "power", "accuracy", "cosine", "sqnr",
                                 "utilization", "drop_pct", "gain_db", "e_pj", "t_ns",
                                 "a_mm2", "cell_um2", "time_s"])
def test_numeric_name_yes(key):
    assert numeric_name(key)


@pytest.mark.parametrize("key", ["layer", "ops_convention", "chip_n_x", "x_pct_label",
                                 "x_db_name", "is_sorted", "notes", "name"])
def test_numeric_name_no(key):
    # the anchors: n_ only at the start; _pct, _db and _s only at the end
    assert not numeric_name(key)


def test_saved_numbers_reads_back_and_leaves_other_keys():
    row = {"layer": "fc", "n_arrays": 3, "energy_pj": None, "latency_ns": "inf",
           "area_mm2": "-inf", "note": ["anything"], "power": {"adc": 1.5, "dac": "-inf"}}
    out = saved_numbers(row, "where")
    assert out == {"layer": "fc", "n_arrays": 3, "energy_pj": None, "latency_ns": math.inf,
                   "area_mm2": -math.inf, "note": ["anything"],
                   "power": {"adc": 1.5, "dac": -math.inf}}
    assert row["latency_ns"] == "inf"  # the caller's row is not changed


@pytest.mark.parametrize("row, message", [
    ({"energy_pj": True}, r"^'report' row 2: 'energy_pj' is True, not a number$"),
    ({"energy_pj": "12"}, r"^'report' row 2: 'energy_pj' is '12', not a number$"),
    ({"energy_pj": "nan"}, r"'energy_pj' is 'nan'"),
    ({"power": {"adc": "x"}}, r"^'report' row 2: 'power\.adc' is 'x', not a number$"),
])
def test_saved_numbers_refuses_what_json_safe_never_writes(row, message):
    with pytest.raises(TypeError, match=message):
        saved_numbers(row, "'report' row 2")


# ---------------------------------------------------------------------------------------------
# _digest
# ---------------------------------------------------------------------------------------------


def _tensor_digest(t) -> str:
    h = hashlib.sha256()
    hash_tensor(h, t)
    return h.hexdigest()


def _named_digest(items) -> str:
    h = hashlib.sha256()
    hash_named(h, items)
    return h.hexdigest()


def test_tensor_digest_sees_dtype_shape_and_every_value():
    base = torch.zeros(2, 3, dtype=torch.int32)
    d = _tensor_digest(base)
    assert d == _tensor_digest(base.clone())
    assert d != _tensor_digest(torch.zeros(2, 3, dtype=torch.float32))  # same bytes
    assert d != _tensor_digest(torch.zeros(3, 2, dtype=torch.int32))  # same bytes
    assert d != _tensor_digest(torch.zeros(6, dtype=torch.int32))
    last = base.clone()
    last[-1, -1] = 1
    assert d != _tensor_digest(last)


def test_tensor_digest_known_answer():
    # dtype and shape as text, then the raw little-endian bytes
    t = torch.tensor([1, 2], dtype=torch.int16)
    expected = hashlib.sha256(b"torch.int16(2,)" + t.numpy().tobytes()).hexdigest()
    assert _tensor_digest(t) == expected


def test_tensor_digest_by_value_not_by_layout():
    t = torch.arange(6.0).reshape(2, 3)
    # a transposed view and its contiguous copy are the same tensor by value
    assert _tensor_digest(t.T) == _tensor_digest(t.T.contiguous())
    assert _tensor_digest(t.requires_grad_()) == _tensor_digest(t.detach().clone())


def test_tensor_digest_exotic_and_non_tensor_values():
    # a conjugate view cannot be viewed as bytes: its printed values are hashed instead
    a = torch.tensor([1 + 2j]).conj()
    b = torch.tensor([1 + 3j]).conj()
    assert _tensor_digest(a) != _tensor_digest(b)
    # a module's extra state is hashed by its repr
    assert _tensor_digest({"k": 1}) != _tensor_digest({"k": 2})
    assert _tensor_digest({"k": 1}) == hashlib.sha256(b"{'k': 1}").hexdigest()


def test_named_digest_order_free_but_name_bound():
    x, y = torch.ones(2), torch.zeros(2)
    d = _named_digest([("a", x), ("b", y)])
    assert d == _named_digest([("b", y), ("a", x)])  # state_dict order must not matter
    assert d != _named_digest([("a", y), ("b", x)])
    assert d != _named_digest([("a", x), ("c", y)])  # a renamed buffer is another model


# ---------------------------------------------------------------------------------------------
# _eager
# ---------------------------------------------------------------------------------------------


def test_eager_breaks_the_graph_only_while_compiling(monkeypatch):
    calls = []

    def disable(fn):
        calls.append(fn)
        return fn

    def add(a, b=0):
        """Adds."""
        return a + b

    wrapped = eager(add)
    assert wrapped.__name__ == "add" and wrapped.__doc__ == "Adds." and wrapped.__wrapped__ is add
    # a stand-in torch._dynamo: importing the real one costs a second
    monkeypatch.setattr(torch, "_dynamo", types.SimpleNamespace(disable=disable), raising=False)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: False)
    assert wrapped(2, b=3) == 5 and calls == []
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert wrapped(2, b=3) == 5 and calls == [add]


# ---------------------------------------------------------------------------------------------
# _modes
# ---------------------------------------------------------------------------------------------


def _nested() -> nn.Module:
    inner = nn.Sequential(nn.Linear(2, 2), nn.Dropout())
    model = nn.Sequential(inner, nn.BatchNorm1d(2))
    model.train()
    inner[1].eval()  # frozen inside a trained block: a grandchild
    return model


def test_module_modes_lists_every_module_with_its_own_flag():
    model = _nested()
    modes = module_modes(model)
    assert [m for m, _ in modes] == list(model.modules())
    assert [t for _, t in modes] == [True, True, True, False, True]


def test_restore_modes_is_not_recursive_in_any_order():
    model = _nested()
    modes = module_modes(model)
    model.eval()
    # a parent after its child must not overwrite the child's own flag
    restore_modes(list(reversed(modes)))
    assert [m.training for m in model.modules()] == [True, True, True, False, True]


def test_evaluated_sets_eval_and_restores_even_on_error():
    model = _nested()
    with evaluated(model):
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == [True, True, True, False, True]
    with pytest.raises(RuntimeError, match="boom"), evaluated(model):
        raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == [True, True, True, False, True]


# ---------------------------------------------------------------------------------------------
# _warn
# ---------------------------------------------------------------------------------------------

_CIMSIM_DIR = os.path.dirname(os.path.abspath(cimsim.__file__))


def _code_in(filename: str):
    """``relay(f, *args)`` calling ``f(*args)`` from a frame whose file is ``filename``: an
    internal frame of cimsim (or of a look-alike folder) without touching the package."""
    namespace: dict = {}
    exec(compile("def relay(f, *args):\n    return f(*args)\n", filename, "exec"), namespace)
    return namespace["relay"]


def _caught(fn, *args):
    """The one warning of ``fn(*args)`` and the line of that call (here: the caller outside
    cimsim that a warning from ``warn_user`` must point at)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        fn(*args)
    assert len(seen) == 1
    return seen[0], line


def test_warn_user_called_directly_points_at_the_caller():
    w, line = _caught(warn_user, "direct")
    assert w.filename == __file__ and w.lineno == line
    assert w.category is UserWarning and str(w.message) == "direct"


def test_warn_user_skips_every_internal_frame_and_keeps_the_category():
    inner = _code_in(os.path.join(_CIMSIM_DIR, "_fake_inner.py"))
    outer = _code_in(os.path.join(_CIMSIM_DIR, "sub", "_fake_outer.py"))
    w, line = _caught(outer, inner, warn_user, "deep", RuntimeWarning)
    assert w.filename == __file__ and w.lineno == line
    assert w.category is RuntimeWarning and str(w.message) == "deep"


def test_warn_user_a_look_alike_folder_is_outside_the_package():
    # "<...>/cimsim_extra/x.py" starts with "<...>/cimsim" but is not in the package
    outside = os.path.join(_CIMSIM_DIR + "_extra", "x.py")
    w, _ = _caught(_code_in(outside), warn_user, "x")
    assert w.filename == outside


def test_warn_user_stops_at_the_outermost_frame(monkeypatch):
    # every frame "inside the package": the walk ends at the root instead of running off it
    monkeypatch.setattr("cimsim._warn._PACKAGE", "")
    w, _ = _caught(warn_user, "root")
    assert str(w.message) == "root"


# ---------------------------------------------------------------------------------------------
# _progress
# ---------------------------------------------------------------------------------------------


def test_bar_disabled_rules(monkeypatch):
    assert bar_disabled(True) is None  # tqdm decides: drawn on a terminal only
    assert bar_disabled(False) is True
    monkeypatch.setattr(sys, "stderr", None)  # pythonw, 2>&-
    assert bar_disabled(True) is True
    assert bar_disabled(False) is True


# ---------------------------------------------------------------------------------------------
# api.matmul
# ---------------------------------------------------------------------------------------------


def _operands():
    rng = np.random.default_rng(3)
    return rng.integers(0, 8, (6, 40)), rng.integers(-7, 8, (5, 40))


def test_matmul_default_seed_is_zero_and_the_noise_stream_is_its_own():
    from cimsim.arrays._rng import stream_key
    from cimsim.arrays.program import program
    from cimsim.engine import calibrate, run

    x, w = _operands()
    chip = "rram-22nm"
    y0, _ = cimsim.matmul(x, w, chip, calibration=x)
    np.testing.assert_array_equal(y0, cimsim.matmul(x, w, chip, 0, calibration=x)[0])
    assert not np.array_equal(y0, cimsim.matmul(x, w, chip, 1, calibration=x)[0])
    # by hand: programming from default_rng(seed), the noise from stream 1 of the seed
    layer = program(w, cimsim.load_chip(chip), np.random.default_rng(5), input_signed=False)
    y_hand, _ = run(calibrate(layer, x), x, noise_seed=stream_key(5, 1))
    np.testing.assert_array_equal(cimsim.matmul(x, w, chip, 5, calibration=x)[0], y_hand)


def test_matmul_infers_the_input_sign_from_negative_values_only():
    x, w = _operands()
    x[0, 0] = 0  # zeros do not make inputs signed
    chip = "sram-65nm"  # its signed-input mode reads the same inputs differently

    def y(x_cal, **kw):
        return cimsim.matmul(x, w, chip, 2, calibration=x_cal, **kw)[0]

    y_unsigned, y_signed = y(x, input_signed=False), y(x, input_signed=True)
    assert not np.array_equal(y_unsigned, y_signed)
    np.testing.assert_array_equal(y(x), y_unsigned)
    np.testing.assert_array_equal(cimsim.matmul(x, w, chip, 2)[0], y_unsigned)
    # one negative calibration input makes the run signed
    cal = x.copy()
    cal[0, 0] = -1
    np.testing.assert_array_equal(y(cal), y(cal, input_signed=True))


def test_matmul_checks_seed_and_flag():
    x, w = _operands()
    with pytest.raises(ConfigError, match=r"^seed = 18446744073709551616 is invalid"):
        cimsim.matmul(x, w, "ideal", 2**64)
    with pytest.raises(ConfigError, match=r"^input_signed = 1 is invalid"):
        cimsim.matmul(x, w, "ideal", input_signed=1)


# ---------------------------------------------------------------------------------------------
# train.digits (deprecated path)
# ---------------------------------------------------------------------------------------------


def test_old_digits_path_targets_dir_and_attribution():
    import cimsim.train.digits as old

    assert dir(old) == ["DEFAULT_WEIGHTS", "DigitsCNN", "evaluate", "load_digits_cnn",
                        "load_digits_split", "save_weights", "train_digits_cnn"]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        split = old.load_digits_split
    assert split is cimsim.data.load_digits_split
    (w,) = seen
    assert w.category is DeprecationWarning
    assert str(w.message) == ("cimsim.train.digits.load_digits_split moved to "
                              "cimsim.data.load_digits_split; import it from there")
    assert w.filename == __file__ and w.lineno == line
    with pytest.raises(AttributeError, match=r"'cimsim\.train\.digits' has no attribute "
                                             r"'nothing'"):
        old.nothing  # noqa: B018


def test_matmul_passes_its_arguments_on(monkeypatch):
    x, w = _operands()
    # an empty batch has no minimum: it is unsigned, not a ValueError
    y, _ = cimsim.matmul(np.zeros((0, 40), dtype=np.int64), w, "ideal")
    assert y.shape == (0, 5)
    # a non-numeric array is not compared with 0 on the way: the engine names the dtype
    with pytest.raises(ValueError, match="x_int must have an integer dtype"):
        cimsim.matmul(x.astype(str), w, "ideal")
    with pytest.raises(ConfigError, match=r"^chunk_vectors = 0 is invalid"):
        cimsim.matmul(x, w, "ideal", chunk_vectors=0)
    with pytest.raises(cimsim.errors.MappingError, match="row_tiles cover 0..39"):
        cimsim.matmul(x, w, "ideal", row_tiles=[(0, 20), (20, 39)])
    # the calibration pass gets the chunk size too (its memory bound)
    seen = []
    real = cimsim.engine.calibrate

    def calibrate(layer, x_cal, **kw):
        seen.append(kw.get("chunk_vectors"))
        return real(layer, x_cal, **kw)

    monkeypatch.setattr(cimsim.engine, "calibrate", calibrate)
    cimsim.matmul(x, w, "rram-22nm", calibration=x, chunk_vectors=2)
    assert seen == [2]
