"""A hunt of the promise docs/sweep.md ("Chip fields as axes") makes: "A point sets the fields
first, exactly as ``--set`` would", i.e. ``chip_for_point(load_chip(P, overrides=O), {F: v})``
is ``load_chip(P, overrides={**O, F: v})`` (the description's set note aside), refused exactly
where ``--set`` is, after the fix that reads what a preset writes (``cimsim/sweep/grid.py``
``_unwritten_defaults`` and, at 9e761cd, ``_preset_written``; ``cimsim/config.py``
``set_overrides``).

Searched: every bundled and published preset (59) x every field of every table of
``ChipConfig`` (89 sweepable, 294 values valid and invalid) x O in {}, ``{"tech.cost_model":
"physical"}``, ``["input_bits=6", "tech.vdd_v=0.9"]`` (~50,000 comparisons); ~6,000 random pairs
of fields and ~6,000 fields with a named axis (``adc_bits``, ``adc_kind``, ``array_size``,
``cols_per_adc``, ``bits_per_cell``, ``thermal_sigma_lsb``, ``time_s``); every pair of 10
window / cell / encoding fields on every preset. Besides the documented rule of a digital
read-out (its adder tree takes the point's sums' width: ``adc.bits`` differs, or ``--set``
refuses, on fujiwara, lee-vlsi22, yuan, chih, colonnade, guo, nvdcim, tien, yan), the
disagreements are those of section 1. Section 2 holds what held.
"""

from __future__ import annotations

import multiprocessing
import warnings

import pytest

import cimsim
from cimsim.config import set_overrides
from cimsim.cost import datasheet
from cimsim.errors import ConfigError
from cimsim.sweep import chip_for_point

PHYSICAL = {"tech.cost_model": "physical"}


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _same(point, by_set):
    """The point's chip is the ``--set`` chip, its description (set note) aside."""
    return point == by_set.replace(description=point.description)


# =============================================================================================
# 1. Disagreements (each FAILS)
# =============================================================================================

@pytest.mark.parametrize("field, value", [("tech.t_read_ns", 5.0), ("tech.t_read_ns", 10.0),
                                          ("tech.cost_model", "tables")])
def test_a_point_of_a_preset_loaded_with_set_physical_does_not_keep_a_derived_window(
        field, value):
    """``cimsim sweep --chip ideal --set tech.cost_model=physical --vary tech.t_read_ns=5,20``.

    Observed: every point has ``tech.window_stated = False`` (the window predicted), where
    ``--set tech.cost_model=physical --set tech.t_read_ns=5`` states it (True); the swept read
    pulse changes nothing: the datasheet's TOPS is 0.0839 at 5 ns and at 20 ns (``--set``:
    0.120 and 0.102). ``--vary tech.cost_model=tables`` likewise keeps ``window_stated =
    False`` where ``--set`` gives the default True. Found on ``ideal`` (the one preset writing
    no window) with O = ``{"tech.cost_model": "physical"}``: 2 x ``tech.t_read_ns``, 1 x
    ``tech.cost_model``, and with a second field every pair holding one of them.
    Expected: the ``--set`` chip.

    Suspected cause: ``cimsim/sweep/grid.py`` ``_unwritten_defaults``'s ``kept`` (line ~172):
    a field is kept written where it is not at its default *or* the preset writes it, so on a
    preset's chip a value a default's rule derived at load (``window_stated = False``,
    ``_window_predicted_by_default``, cimsim/config.py ~1724), written by neither the file nor
    ``--set``, is written at the point, and ``from_dict`` no longer derives the window from the
    point's fields. Where the preset is known only what it (and its ``--set``) writes should
    stay written."""
    base = cimsim.load_chip("ideal", overrides=PHYSICAL)
    by_set = cimsim.load_chip("ideal", overrides={**PHYSICAL, field: value})
    point = chip_for_point(base, {field: value})
    assert point.tech.window_stated == by_set.tech.window_stated
    assert _same(point, by_set)


def test_a_swept_read_pulse_moves_the_figures_of_a_preset_loaded_with_set_physical():
    """The figures of the case above: ``--vary tech.t_read_ns=5,20`` on ``ideal`` with
    ``--set tech.cost_model=physical``. Observed: TOPS 0.0839 at both points (the predicted
    window, the swept field ignored); ``--set``: 0.120 at 5 ns, 0.102 at 20 ns. Cause: as
    above (``cimsim/sweep/grid.py`` ``_unwritten_defaults`` ~172)."""
    base = cimsim.load_chip("ideal", overrides=PHYSICAL)
    tops = {t: datasheet(chip_for_point(base, {"tech.t_read_ns": t}))["tops"] for t in (5.0, 20.0)}
    by_set = {t: datasheet(cimsim.load_chip("ideal", overrides={**PHYSICAL, "tech.t_read_ns": t}))
              ["tops"] for t in (5.0, 20.0)}
    assert tops[5.0] != tops[20.0]
    assert tops == pytest.approx(by_set)


def test_a_point_is_refused_where_set_takes_an_integration_window():
    """``--vary tech.t_integrate_ns=5`` on ``ideal`` with ``--set tech.cost_model=physical``.
    Observed: every such point is refused ("TechConfig.window_stated = False is invalid with
    t_integrate_ns = 5.0"), the sweep stops, where ``--set tech.t_integrate_ns=5`` loads (a
    given window is a stated one). 2 single-field values and every pair with it. Cause: as
    above, the derived ``window_stated = False`` written at the point
    (``cimsim/sweep/grid.py`` ``_unwritten_defaults`` ~172)."""
    by_set = cimsim.load_chip("ideal", overrides={**PHYSICAL, "tech.t_integrate_ns": 5.0})
    point = chip_for_point(cimsim.load_chip("ideal", overrides=PHYSICAL),
                           {"tech.t_integrate_ns": 5.0})
    assert _same(point, by_set)


@pytest.mark.parametrize("overrides", [{"name": "my-sram"}, {"description": "my SRAM macro"}],
                         ids=["name", "description"])
def test_a_preset_loaded_with_set_name_or_description_keeps_what_its_file_writes(overrides):
    """``cimsim sweep --chip sram-65nm --set name=my-sram --vary tech.cost_model=physical``
    (or ``--set description=...``): a chip loaded from a preset, which docs/sweep.md says keeps
    what the preset file writes. Observed: ``window_stated = False`` at the point (the file's
    ``t_read_ns = 10.0`` dropped, the window predicted: the bug the fix was for), where
    ``--set`` keeps the stated window (True).

    Suspected cause: ``cimsim/sweep/grid.py`` ``_preset_written`` (line ~214) finds the preset
    by the chip's ``name`` only (a renamed preset is no preset), and reads its overrides from
    the description's set note, which ``_overridden`` (cimsim/config.py ~2049) does not write
    where ``description`` is one of them; the chip then falls back to its non-default
    fields."""
    base = cimsim.load_chip("sram-65nm", overrides=overrides)
    by_set = cimsim.load_chip("sram-65nm", overrides={**overrides, **PHYSICAL})
    assert by_set.tech.window_stated is True
    point = chip_for_point(base, PHYSICAL)
    assert point.tech.window_stated is True
    assert _same(point, by_set)


@pytest.mark.parametrize("overrides", [["tech.vdd_v = 0.9", "input_bits = 6"],
                                       {"source": "measured at vdd=0.9 V"}],
                         ids=["spaces-around-equals", "string-holding-equals"])
def test_a_set_note_that_does_not_split_back_keeps_what_the_preset_writes(overrides):
    """``--set "tech.vdd_v = 0.9" --set "input_bits = 6"`` (``--set`` takes spaces around
    ``=``) or ``--set 'source="measured at vdd=0.9 V"'``, then ``--vary
    tech.cost_model=physical`` on ``sram-65nm``. Observed: the point predicts the window
    (``window_stated = False``), ``--set`` keeps the file's stated one (True): the note
    ``(with --set tech.vdd_v = 0.9 input_bits = 6)`` reads back as one override (``tech.vdd_v``
    = the text ``"0.9 input_bits = 6"``), ``source="measured at vdd=0.9 V"`` as two
    (``source="measured at`` and ``vdd=0.9 V"``); neither rebuilds the chip, so the chip falls
    back to its non-default fields. Expected: the ``--set`` chip (a single override with
    spaces, ``["tech.vdd_v = 0.9"]``, does).

    Suspected cause: ``cimsim/config.py`` ``set_overrides`` (line ~2004) re-splits the note's
    text on `` name=`` (no space allowed before ``=``, any ``word=`` inside a string cut);
    ``_overridden`` (~2044) joins the overrides with spaces, so the note cannot be split back
    in general: the overrides themselves (not their text) would have to travel with the chip,
    or the note quote each."""
    base = cimsim.load_chip("sram-65nm", overrides=overrides)
    more = overrides + ["tech.cost_model=physical"] if isinstance(overrides, list) else \
        {**overrides, **PHYSICAL}
    by_set = cimsim.load_chip("sram-65nm", overrides=more)
    assert by_set.tech.window_stated is True
    assert chip_for_point(base, PHYSICAL).tech.window_stated is True
    assert _same(chip_for_point(base, PHYSICAL), by_set)


# =============================================================================================
# 2. What held
# =============================================================================================

_SAMPLE = {  # a sample of the exhaustive search (every field there), valid and invalid values
    "input_bits": [6, 0], "weight_bits": [4], "weight_encoding": ["offset", "binary"],
    "differential_readout": ["digital"], "accumulator_bits": [16],
    "array.n_rows": [128], "array.rows_per_conversion": [16], "array.n_tiles": [8],
    "array.allow_time_multiplexing": [True], "array.group_packing": ["diagonal"],
    "device.cell": ["sram", "rram", "bogus"], "device.g_max_us": [20.0, -1.0],
    "device.drift_nu_mean": [[0.05]], "device.variation": ["gaussian"],
    "dac.bits": [2], "adc.range_policy": ["calibrated"], "adc.fixed_hi": [100.0],
    "adc.t_conversion_ns": [5.0], "noise.nonlinearity": ["polynomial"],
    "noise.poly_coeffs": [[0.1, -0.05]], "tech.cost_model": ["physical", "tables"],
    "tech.t_read_ns": [10.0, 5.0], "tech.t_integrate_ns": [5.0], "tech.window_stated": [False],
    "tech.vdd_v": [0.7, -1.0], "tech.node_nm": [7.0], "tech.cell_kind": ["sram_6t"],
    "tech.compute_domain": ["charge"], "tech.input_drive": ["temporal"],
    "quant.smooth_alpha": [0.5], "quant.act_format": ["fp"],
}


def _outcome(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ConfigError:
        return "refused"


@pytest.mark.parametrize("name", ["ideal", "rram-22nm", "sram-65nm", "pcm-22nm", "mram-22nm",
                                  "published/jia-jssc22", "published/wan-nature22"])
def test_a_field_point_is_the_set_chip_or_refused_alike(name):
    """A sample of the exhaustive comparison that held (analog read-outs, O empty and a list
    of overrides): the point's chip equals the ``--set`` chip, or both are refused."""
    for overrides in ({}, {"input_bits": 6, "tech.vdd_v": 0.9}):
        base = cimsim.load_chip(name, overrides=overrides)
        for field, values in _SAMPLE.items():
            for value in values:
                point = _outcome(chip_for_point, base, {field: value})
                by_set = _outcome(cimsim.load_chip, name,
                                  overrides={**overrides, field: value})
                assert isinstance(point, str) == isinstance(by_set, str), (field, value)
                if not isinstance(point, str):
                    assert _same(point, by_set), (name, overrides, field, value)


def test_named_axes_come_after_the_fields():
    """``chip_for_point(base, {F: v, axis: a})`` is ``chip_for_point(load_chip(P, {F: v}),
    {axis: a})`` ("then the named axes above"), for every named axis (a sample)."""
    cases = [("rram-22nm", "tech.cost_model", "physical", "adc_bits", 5),
             ("sram-65nm", "tech.cost_model", "physical", "array_size", 128),
             ("rram-22nm", "input_bits", 6, "bits_per_cell", 1),
             ("pcm-22nm", "device.drift_t0_s", 10.0, "time_s", 100.0),
             ("rram-22nm", "tech.vdd_v", 0.7, "adc_kind", "ramp:uniform"),
             ("rram-22nm", "array.n_cols", 128, "cols_per_adc", 16),
             ("rram-22nm", "noise.read_noise_rel", 0.02, "thermal_sigma_lsb", 0.5)]
    for name, field, value, axis, a in cases:
        one = chip_for_point(cimsim.load_chip(name), {field: value, axis: a})
        two = chip_for_point(cimsim.load_chip(name, overrides={field: value}), {axis: a})
        assert _same(one, two), (name, field, axis)


def test_preset_names_are_distinct_and_set_notes_read_back():
    """No two presets share a chip name (the lookup's ``setdefault`` never chooses); lists,
    strings with spaces, floats and repeated keys given as a list or a dict read back from the
    note and rebuild the chip; a preset's chip with its description edited in Python is still
    read as that preset's (its differing fields as overrides); one renamed and redescribed is
    no preset's (documented)."""
    from cimsim.sweep.grid import _preset_description

    ids = cimsim.list_presets() + cimsim.list_presets(published=True)
    names = [cimsim.load_chip(p).name for p in ids]
    assert len(set(names)) == len(names)
    for overrides in (["tech.vdd_v=0.9", "input_bits=6"], {"tech.vdd_v": 0.1 + 0.2},
                      {"noise.poly_coeffs": [0.1, -0.05], "noise.nonlinearity": "polynomial"},
                      ["source=my own paper"], ["adc.bits=5", "adc.bits=6"],
                      ["tech.vdd_v = 0.9"]):
        chip = cimsim.load_chip("sram-65nm", overrides=overrides)
        assert _preset_description(chip) is not None, overrides
        assert chip_for_point(chip, PHYSICAL).tech.window_stated is True
    assert set_overrides(cimsim.load_chip("sram-65nm", overrides={"tech.vdd_v": 0.1 + 0.2})
                         .description) == ["tech.vdd_v=0.30000000000000004"]
    edited = cimsim.load_chip("sram-65nm").replace(description="edited")
    assert _preset_description(edited) is not None
    assert chip_for_point(edited, PHYSICAL).tech.window_stated is True
    assert _preset_description(edited.replace(name="mine")) is None


def _point_in_a_fresh_process(args):
    warnings.simplefilter("ignore")
    from cimsim.sweep import chip_for_point as for_point

    chip, point = args
    return for_point(chip, point)


def test_a_pickled_chip_gives_the_same_point_in_a_spawned_worker():
    """Sweep workers (``--jobs 2``) are spawned and get the base chip pickled: the point's
    chip is the parent's (the preset looked up again there)."""
    cases = [(cimsim.load_chip("sram-65nm"), PHYSICAL),
             (cimsim.load_chip("rram-22nm", overrides=["adc.bits=5", "tech.vdd_v=0.9"]),
              PHYSICAL),
             (cimsim.load_chip("published/yuan-jssc26"), {"input_bits": 8})]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        there = pool.map(_point_in_a_fresh_process, cases)
    for (chip, point), theirs in zip(cases, there, strict=True):
        assert theirs == chip_for_point(chip, point)
