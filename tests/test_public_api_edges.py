"""The public API's edges a researcher's script meets (a hunt over the API, 2026-12-04)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import cimsim
from cimsim.errors import ConfigError
from cimsim.events import Action, Component, EventKey, Events

C, A = Component, Action


def test_events_refuse_an_unregistered_key_or_fractional_bits_where_made():
    """EventKey(ADC, WRITE) was accepted and failed deep in estimate; bits 6.5 were kept, and
    6 beside "6" made two keys that repr() and to_records() could not sort."""
    with pytest.raises(ValueError, match=r"\(<Component.ADC: 'adc'>, <Action.WRITE: 'write'>\)"
                       r" is not registered"):
        Events({EventKey(C.ADC, A.WRITE, 0): 1})
    with pytest.raises(ValueError, match=r"bits = 6\.5 is invalid; allowed: an integer"):
        Events({EventKey(C.ADC, A.CONVERT, 6.5): 1})
    with pytest.raises(ValueError, match=r"bits = '6' is invalid"):
        Events({("adc", "convert", "6"): 1})
    ev = Events([(EventKey(C.ADC, A.CONVERT, np.int64(6)), 1), (("adc", "convert", 6.0), 2)])
    assert list(ev) == [EventKey(C.ADC, A.CONVERT, 6)] and ev[("adc", "convert", 6)] == 3
    assert type(next(iter(ev)).bits) is int
    assert repr(ev) == "Events(adc.convert[6]=3)"


def test_events_mapping_manners():
    ev = Events([(EventKey(C.ADC, A.CONVERT, 6), 2.0)])  # (key, count) pairs, as dict() takes
    assert ev == {EventKey(C.ADC, A.CONVERT, 6): 2.0}
    assert ("foo", "bar", 0) not in ev and ev.get(("foo", "bar"), -1.0) == -1.0
    assert EventKey(C.ADC, A.CONVERT, 6) in ev and ("adc", "convert", 6) in ev
    with pytest.raises(TypeError, match="unsupported operand"):
        ev + 1  # noqa: B018 (was an AttributeError)
    assert sum([ev, ev]) == {EventKey(C.ADC, A.CONVERT, 6): 4.0}


def test_program_takes_what_matmul_takes():
    """A preset name was an AttributeError, an int seed one on a varied chip (and ignored on
    'ideal'), input_signed = "false" read as signed."""
    w = np.random.default_rng(0).integers(-7, 8, size=(4, 16))
    by_name = cimsim.arrays.program(w, "rram-22nm", 3)
    by_gen = cimsim.arrays.program(w, cimsim.load_chip("rram-22nm"), np.random.default_rng(3))
    assert np.array_equal(by_name.cell_rowsum, by_gen.cell_rowsum)
    with pytest.raises(ConfigError, match=r"input_signed = 'false' is invalid; allowed: True "
                       "or False"):
        cimsim.arrays.program(w, "ideal", input_signed="false")
    with pytest.raises(ConfigError, match="rng"):
        cimsim.arrays.program(w, "ideal", "seed")


def test_a_file_named_as_a_preset_does_not_hide_it(tmp_path, monkeypatch):
    """A log file called rram-22nm in the working folder made load_chip('rram-22nm') (and so
    every --chip rram-22nm) fail as an invalid TOML; ./rram-22nm still reads the file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rram-22nm").write_text("a log, not a chip\n")
    assert cimsim.load_chip("rram-22nm").name == "rram-22nm"
    with pytest.raises(ConfigError, match="invalid TOML"):
        cimsim.load_chip(os.path.join(".", "rram-22nm"))


def test_input_planes_refuses_what_the_chip_cannot_drive():
    """cimsim.arrays.input_planes returned 300 as 44 at 8 b, -5 unsigned as 251, 2.9 as 2."""
    from cimsim.arrays import input_planes

    chip = cimsim.load_chip("ideal")
    for x, signed, said in ((np.array([[300]]), False, r"\[0, 255\] for unsigned"),
                            (np.array([[-5]]), False, r"\[0, 255\] for unsigned"),
                            (np.array([[200]]), True, r"\[-128, 127\] for signed")):
        with pytest.raises(ValueError, match=r"x_int values must lie in " + said):
            input_planes(x, chip, signed)
    with pytest.raises(ValueError, match="integer dtype"):
        input_planes(np.array([[2.9]]), chip, False)
    ok = input_planes(np.array([[255, 0]]), chip, False)  # 8 bit-serial planes
    assert np.array_equal(np.tensordot(ok.sig, ok.planes, axes=1), [[255, 0]])


def test_objects_display_readably_in_a_notebook():
    """A notebook showed a Report as a 12 KB dataclass dump (a 5,000-character line), a
    ChipConfig as one 3,000-character line and a SimModel's layers as ``SimConv()``."""
    import tomllib

    from cimsim.data import load_digits_split
    from cimsim.models import load_digits_cnn

    x_train, _, x, _ = load_digits_split()
    sim = cimsim.deploy(load_digits_cnn(), "rram-22nm", x_train[:32], progress=False)
    sim(x[:4])
    report = sim.report()
    text = repr(report)
    assert text.startswith("Report(chip='rram-22nm', layers=5, inferences=4)\n")
    assert "energy per inference" in text and len(text) < 1000
    page = report._repr_html_()
    assert page.count("<table") == 1 and "data:image" not in page and "TOPS/W" in page
    chip = cimsim.load_chip("rram-22nm")
    assert cimsim.config.ChipConfig.from_dict(tomllib.loads(str(chip))) == chip
    assert str(chip.adc).splitlines()[0] == 'kind = "sar"'
    shown = repr(sim)
    assert "chip='rram-22nm', seed=0, backend='numba', arrays=16, inferences=4" in shown
    assert "SimConv('features.2', matrices (out x in): 32x144, arrays=4)" in shown
    # and the estimator's inputs and output (132 KB and 26 KB lines)
    work = sim.work()
    assert repr(work) == ("ModelWork(chip='rram-22nm', layers=5, inferences=4, "
                          "arrays_needed=16)")
    cost = repr(cimsim.cost.estimate(work))
    assert cost.startswith("CostReport(chip='rram-22nm', layers=5, inferences=4)\n  energy "
                           "per inference") and len(cost) < 1000
