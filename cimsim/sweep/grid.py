"""The grid of a sweep: its axes, its points, and the chip variant at each point."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import itertools
import tomllib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..arrays.drift import STATIC_DEVICE, check_time
from ..config import (
    ADCKind,
    ArrayConfig,
    ChipConfig,
    LevelFit,
    RangePolicy,
    SliceReadout,
    VariationKind,
    adder_tree_bits,
    as_chip,
)
from ..errors import ConfigError

__all__ = ["AXES", "INT_AXES", "LATER_AXES", "chip_for_point", "expand_grid", "field_axes",
           "identity", "parse_adc_kind", "parse_slice_readout", "resolve_point"]

AXES: tuple[str, ...] = ("array_size", "bits_per_cell", "slice_readout", "cols_per_adc",
                         "thermal_sigma_lsb", "adc_kind", "adc_bits", "time_s")
"""Sweepable axes, in table-column and iteration order (the last varies fastest)."""

INT_AXES: tuple[str, ...] = ("array_size", "bits_per_cell", "cols_per_adc", "adc_bits")
"""Axes whose values are integers (their table columns are int64 when every value is one)."""

LATER_AXES: tuple[str, ...] = ("slice_readout", "cols_per_adc", "time_s")
"""Axes added after point ids were first written to ``sweep.jsonl`` files: a point's id holds
one of them only where its value differs from the one the other axes give the chip
(:func:`identity`), so the points of an older results file keep their ids."""


# a chip field a named axis sets is swept under the axis's name: one chip, one name and one id
# (adc.bits = 6 and adc_bits = 6 were two rows of one chip)
_NAMED_FIELDS: dict[str, tuple[str, str]] = {  # field -> (axis, cimsim sweep's flag)
    "adc.bits": ("adc_bits", "--adc-bits"), "adc.kind": ("adc_kind", "--adc-kind"),
    "adc.level_fit": ("adc_kind 'ramp:<fit>'", "--adc-kind ramp:<fit>"),
    "device.bits_per_cell": ("bits_per_cell", "--bits-per-cell"),
    "array.cols_per_adc": ("cols_per_adc", "--cols-per-adc"),
    "array.slice_readout": ("slice_readout", "--slice-readout"),
    "noise.thermal_sigma_lsb": ("thermal_sigma_lsb", "--noise")}
_NOT_SWEPT = ("name", "description", "source")  # words, not hardware
_FIELD_HINT = ("or a chip field: 'TABLE.FIELD' (e.g. 'dac.bits', 'tech.vdd_v', 'tech.node_nm') "
               "or a top-level field (e.g. 'input_bits', 'weight_bits')")


def field_problem(axis: Any, flags: bool = True) -> str | None:
    """Why ``axis`` (not one of :data:`AXES`) is no chip field a sweep can vary, or None
    (``flags``: name ``cimsim sweep``'s flag for a field a named axis sets)."""
    if not isinstance(axis, str):
        return "not a name"
    if axis in _NAMED_FIELDS:
        named, flag = _NAMED_FIELDS[axis]
        return f"sweep it as the axis {named}" + (f" ({flag})" if flags else "")
    table, dot, name = axis.partition(".")
    default = ChipConfig()
    tables = [f.name for f in dataclasses.fields(ChipConfig)
              if dataclasses.is_dataclass(getattr(default, f.name))]
    if not dot:
        if axis in tables:
            return f"[{axis}] is a table; name one of its fields, e.g. '{axis}.<field>'"
        if axis in _NOT_SWEPT:
            return "words, not hardware"
        return None if axis in {f.name for f in dataclasses.fields(ChipConfig)} else \
            "no such field"
    if table not in tables:
        return f"no table {table!r} (tables: {sorted(tables)})"
    section = getattr(default, table)
    if name not in {f.name for f in dataclasses.fields(section)}:
        return f"no field {name!r} in [{table}]"
    return None


def field_axes(axes: Iterable[str]) -> list[str]:
    """The chip-field axes among ``axes`` (every axis not in :data:`AXES`), in their order."""
    return [a for a in axes if a not in AXES]


def _with_fields(chip: ChipConfig, fields: Mapping[str, Any]) -> ChipConfig:
    """``chip`` with the chip fields of a point set (``'dac.bits'`` -> 2, ``'input_bits'`` ->
    4) as ``--set`` sets them on a chip file, validated as that file would be (the message
    names the field): where the chip is what its non-default fields give, the defaults stay
    unwritten, so what they derive is derived again (a ``physical`` cost model's predicted
    window on a chip that states none; ``None`` a field's value as its file writes it,
    ``dac.bits`` None 'all'). A digital read-out's adder tree takes the new sums' width (as a
    file that writes no ``adc.bits``); ``chip`` itself where every value is already its
    own."""
    items = tuple((axis, _frozen(_as_written(chip, axis, _plain(value))))
                  for axis, value in fields.items())
    return _with_fields_cached(chip, items)


@functools.lru_cache(maxsize=64)  # a point's chip is built by each of a sweep's checks
def _with_fields_cached(chip: ChipConfig, items: tuple[tuple[str, Any], ...]) -> ChipConfig:
    from ..config import _overridden

    fields = {axis: _thawed(value) for axis, value in items}
    base = chip.to_dict()
    if all(_at_base(chip, base, axis, value) for axis, value in fields.items()):
        return chip
    data = copy.deepcopy(_unwritten_defaults(chip))  # (the cached one stays whole)
    if chip.adc.kind is ADCKind.DIGITAL:
        data["adc"].pop("bits", None)
    for axis in [a for a, v in fields.items() if v is None]:  # a field None writes nothing
        table, dot, name = axis.rpartition(".")
        (data.get(table, {}) if dot else data).pop(name, None)
        del fields[axis]
    data, _ = _overridden(data, "", fields)
    data["description"] = chip.description  # (the set note names the point's fields)
    return ChipConfig.from_dict(data)  # its message names the field


def _at_base(chip: ChipConfig, base: Mapping[str, Any], axis: str, value: Any) -> bool:
    """Whether setting field ``axis`` to ``value`` leaves ``chip`` (``base``: its
    ``to_dict()``) as it is: the value is the chip's, and either its description writes it or
    no default's rule reads the field's absence (``ideal`` writes no ``t_read_ns``: writing
    its 10 ns under the physical model states a window it predicted)."""
    from ..config import PRESENCE_READ

    if _field_value(base, axis) != _toml(value):
        return False
    return axis not in PRESENCE_READ or _field_value(_unwritten_defaults(chip), axis) == \
        _toml(value)


def _as_written(chip: ChipConfig, axis: str, value: Any) -> Any:
    """``value`` of field ``axis`` as a chip file writes it where it is ``None`` (``'all'``
    for ``dac.bits``; None where the file leaves the field out), else as given."""
    if value is not None:
        return value
    from ..config import _to_dict

    table, dot, name = axis.rpartition(".")
    holder = getattr(chip, table) if dot else chip
    try:
        written = _to_dict(dataclasses.replace(holder, **{name: None}))
    except (TypeError, ValueError, AttributeError):  # a field that cannot be None
        raise ConfigError(f"{axis} = None is invalid; allowed: a value as a chip file "
                          "writes it") from None
    return written.get(name)


def _frozen(value: Any) -> Any:
    """A hashable stand-in for a field value (a list as a tuple, marked)."""
    if isinstance(value, (list, tuple)):
        return ("__list__", *(_frozen(v) for v in value))
    return value


def _thawed(value: Any) -> Any:
    if isinstance(value, tuple) and value[:1] == ("__list__",):
        return [_thawed(v) for v in value[1:]]
    return value


@functools.lru_cache(maxsize=16)
def _unwritten_defaults(chip: ChipConfig) -> dict[str, Any]:
    """The description ``chip`` was loaded from, as written: a preset's file with the
    ``--set`` overrides it was loaded with (:func:`_preset_description`), so a field it
    writes at a default's value stays written (``t_read_ns = 10.0``: a stated window) and
    one it derived stays derived, as ``--set`` has them. For a chip of no preset (another
    file's, or changed in Python), ``chip.to_dict()`` less every field at its default, where
    that smaller description gives ``chip`` again (a file that wrote a default's value where
    leaving it out derives another keeps it written); else the whole ``to_dict()``."""
    preset = _preset_description(chip)
    if preset is not None:
        return preset
    full = chip.to_dict()
    small = _apart(full, ChipConfig().to_dict())
    small.update(name=full["name"], description=full["description"])
    return small if _gives(small, chip) else full


_UNSET = object()


def _apart(full: Mapping[str, Any], reference: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of the chip description ``full`` whose values differ from ``reference``'s,
    every table of ``full`` kept (empty where nothing in it differs)."""
    out: dict[str, Any] = {}
    for key, value in full.items():
        if isinstance(value, dict):
            ref = reference.get(key, {})
            out[key] = {k: v for k, v in value.items() if ref.get(k, _UNSET) != v}
        elif reference.get(key, _UNSET) != value:
            out[key] = value
    return out


def _gives(data: Mapping[str, Any], chip: ChipConfig) -> bool:
    """Whether the description ``data`` loads as ``chip`` (its warnings are said when a
    point's chip is built, if at all)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ChipConfig.from_dict(data) == chip
    except ConfigError:
        return False


@functools.lru_cache(maxsize=1)
def _presets() -> tuple[dict[str, str], dict[str, str], dict[str, ChipConfig]]:
    """The bundled and published presets: by chip ``name``, by ``description``, and each
    preset's chip as loaded, by id."""
    from ..config import list_presets, load_chip

    by_name: dict[str, str] = {}
    by_description: dict[str, str] = {}
    chips: dict[str, ChipConfig] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for pid in list_presets() + list_presets(published=True):
            chips[pid] = load_chip(pid)
            by_name.setdefault(chips[pid].name, pid)
            by_description.setdefault(chips[pid].description, pid)
    return by_name, by_description, chips


def _preset_description(chip: ChipConfig) -> dict[str, Any] | None:
    """The parsed description (the preset's TOML with the overrides set) that ``chip`` was
    loaded from where it is a preset's, found by its name or its description, with
    ``--set`` overrides: those its description's note names
    (:func:`cimsim.config.set_overrides`, exact), else the fields where it differs from the
    preset (a note that does not split back, or none: ``--set description=...``); None where
    neither rebuilds ``chip`` (another file's, changed in Python). A chip equal to a preset's
    as loaded is taken for that preset's, whatever file it came from."""
    from ..config import _chip_data, set_overrides, without_set_note

    by_name, by_description, chips = _presets()
    pid = by_name.get(chip.name) or by_description.get(without_set_note(chip.description))
    if pid is None:
        return None
    apart = _apart(chip.to_dict(), chips[pid].to_dict())
    differ: dict[str, Any] = {}  # as --set keys
    for table, fields in apart.items():
        if isinstance(fields, dict):
            differ.update({f"{table}.{k}": v for k, v in fields.items()})
        else:
            differ[table] = fields
    for overrides in (set_overrides(chip.description), differ):
        try:
            data, _ = _chip_data(pid, overrides)
        except ConfigError:
            continue
        if _gives(data, chip):
            return data
    return None


def _toml(value: Any) -> Any:
    """``value`` as a chip file holds it (an enum its value, a tuple a list)."""
    from ..config import _override_text

    try:
        return tomllib.loads(f"v = {_override_text('v', value).partition('=')[2]}")["v"]
    except (ConfigError, tomllib.TOMLDecodeError):
        return value  # refused where the point's chip is built, naming the field


def _field_value(data: Mapping[str, Any], axis: str) -> Any:
    """The value of chip field ``axis`` in a chip's :meth:`~ChipConfig.to_dict` (None where
    it is unset)."""
    table, dot, name = axis.rpartition(".")
    return (data.get(table, {}) if dot else data).get(name)


def parse_adc_kind(value: str) -> tuple[ADCKind, LevelFit | None]:
    """An ADC kind (``'sar'``, ``'flash'``, ``'ramp'``, ...: any :class:`ADCKind`) or
    ``'ramp:<level_fit>'`` -> (kind, level_fit).

    Raises
    ------
    ConfigError
        Any other string; the message lists what is allowed.
    """
    fits = ", ".join(f.value for f in LevelFit)
    kinds = ", ".join(repr(k.value) for k in ADCKind)
    allowed = f"one of {kinds}, or 'ramp:<level_fit>' with level_fit one of {fits}"
    if not isinstance(value, str):
        raise ConfigError(f"adc_kind {value!r} is invalid; allowed: {allowed}")
    kind, sep, fit = value.strip().partition(":")
    try:
        adc_kind = ADCKind(kind.strip().lower())
    except ValueError:
        raise ConfigError(f"adc_kind {value!r} is invalid; allowed: {allowed}") from None
    if not sep:
        return adc_kind, None
    if adc_kind is not ADCKind.RAMP:
        raise ConfigError(f"adc_kind {value!r}: only 'ramp' takes a level fit; allowed: "
                          f"{allowed}")
    try:
        return adc_kind, LevelFit(fit.strip().lower())
    except ValueError:
        raise ConfigError(f"adc_kind {value!r}: unknown level fit {fit!r}; allowed: "
                          f"{allowed}") from None


def parse_slice_readout(value: Any) -> SliceReadout:
    """``'digital'`` or ``'analog'`` (any case, or a :class:`SliceReadout`) -> the read-out.

    Raises
    ------
    ConfigError
        Any other value; the message lists what is allowed.
    """
    allowed = ", ".join(repr(r.value) for r in SliceReadout)
    try:
        return SliceReadout(value.strip().lower() if isinstance(value, str) else value)
    except (ValueError, TypeError):  # TypeError: an unhashable value
        raise ConfigError(f"slice_readout {value!r} is invalid; allowed: {allowed}") from None


def _kind_label(kind: ADCKind, level_fit: LevelFit) -> str:
    """The ``adc_kind`` column's value: a ramp ADC is named with its level fit."""
    return f"ramp:{level_fit.value}" if kind is ADCKind.RAMP else kind.value


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The points of ``grid`` (axis -> values): their Cartesian product in :data:`AXES` order.

    Each point holds only the swept axes; the last axis of :data:`AXES` varies fastest. Values
    are not validated here (``run_sweep`` builds every point's chip before running any).

    Raises
    ------
    ConfigError
        An unknown axis, or an axis with no values.
    """
    values = grid_values(grid)
    axes = list(values)
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*values.values())]


def grid_values(grid: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``grid`` with each axis's values as a list in :data:`AXES` order: a single value (``4``,
    ``'sar'``) is a list of one, a generator or NumPy array is read once, NumPy scalars become
    Python numbers. ``run_sweep`` reads the grid twice (the points, then ``sweep.json``): a
    scalar failed there after every point had run, a generator left ``sweep.json`` empty.

    Raises
    ------
    ConfigError
        Not a mapping, an unknown axis, or an axis with no values.
    """
    if not isinstance(grid, Mapping):  # a list of pairs failed: "unhashable type: 'list'"
        raise ConfigError(f"grid = {grid!r} is invalid; allowed: a dict of axis -> values, "
                          f"axes: {list(AXES)}, {_FIELD_HINT}")
    _check_field_axes(grid)
    out = {}
    # the chip fields first (the outer loops), in the order given; then the named axes
    for axis in [*field_axes(grid), *(a for a in AXES if a in grid)]:
        vals = grid[axis]
        # (a 0-d array, np.asarray(4), is an Iterable that cannot be iterated)
        if (isinstance(vals, (str, bytes)) or not isinstance(vals, Iterable)
                or (isinstance(vals, np.ndarray) and vals.ndim == 0)):
            vals = [vals]
        out[axis] = [_plain(v) for v in vals]
        if not out[axis]:
            raise ConfigError(f"sweep axis {axis!r} has no values")
    return out


def _check_field_axes(axes: Iterable[Any]) -> None:
    """Refuse axes that are neither in :data:`AXES` nor a chip field a sweep can vary (the
    message names each with why), and ``array.n_rows`` / ``n_cols`` beside ``array_size``."""
    axes = list(axes)
    bad = {a: why for a in axes if a not in AXES and (why := field_problem(a))}
    if bad:
        said = "; ".join(f"{a!r}: {why}" for a, why in bad.items())
        raise ConfigError(f"unknown sweep axis/axes {sorted(map(str, bad))} ({said}); axes: "
                          f"{list(AXES)}, {_FIELD_HINT}")
    if "array_size" in axes and (both := [a for a in ("array.n_rows", "array.n_cols")
                                          if a in axes]):
        raise ConfigError(f"sweep axes {both} with array_size, which sets both: allowed: "
                          "array_size (square arrays) or the fields (any shape), not both")


def _plain(value: Any) -> Any:
    """A NumPy scalar (``np.arange(3, 9)``'s values) as the Python number it holds: the chip's
    fields take Python ints, and the point id hashes the value's text."""
    if isinstance(value, np.ndarray):  # a per-level table's values (a list field)
        return value.tolist()
    item = getattr(value, "item", None)
    return item() if callable(item) and type(value).__module__ == "numpy" else value


def _plain_point(point: Mapping[str, Any]) -> dict[str, Any]:
    """``point`` with NumPy values as Python ones (:func:`_plain`), as :func:`grid_values`
    gives them: an ``array_size`` of ``np.int64(4)`` lowered no shared columns (the chip's 8
    columns per ADC were refused, naming a field the point does not set)."""
    return {axis: _plain(value) for axis, value in point.items()}


FLOAT_AXES: tuple[str, ...] = ("thermal_sigma_lsb", "time_s")
"""Axes whose values are real numbers: ``0`` and ``0.0`` are one point (one row, one id)."""


def chip_for_point(chip: ChipConfig | str | Path, point: Mapping[str, Any]) -> ChipConfig:
    """The variant of ``chip`` (a config, a preset name or a ``.toml`` path) at ``point``.

    ``adc_kind`` ``'ramp:<fit>'`` sets ``kind='ramp'``, ``level_fit`` and
    ``range_policy='calibrated'`` (a ramp ADC's levels are fitted to calibration data);
    ``array_size`` s sets ``n_rows = n_cols = s`` and lowers ``rows_per_conversion`` and
    the chip's ``cols_per_adc`` to s where they exceed it; ``cols_per_adc`` and
    ``slice_readout`` set those ``array`` fields (a swept ``cols_per_adc`` is never lowered: one
    above the point's columns is an error). ``time_s`` is no chip field (the point's
    model runs that many seconds after programming, ``deploy(t_inference_s=...)``); it is
    checked against the variant's ``device.drift_t0_s`` here. Any other key is a chip field,
    ``'TABLE.FIELD'`` (``'dac.bits'``, ``'tech.vdd_v'``) or top-level (``'input_bits'``), set
    first, as ``--set`` would (a digital read-out's adder tree then takes the new sums' width,
    a swept ``adc_bits`` checked against it); a field a named axis sets is refused, naming
    the axis.

    Raises
    ------
    ConfigError
        An unknown axis (``{"foo": 4}`` returned the chip unchanged), or an invalid value
        (the message names the field).
    """
    chip = as_chip(chip)
    point = _plain_point(point)
    _check_field_axes(point)
    if fields := {a: point[a] for a in field_axes(point)}:
        chip = _with_fields(chip, fields)
    adc, array = chip.adc, chip.array
    if "adc_kind" in point:
        kind, fit = parse_adc_kind(point["adc_kind"])
        if adc.kind is ADCKind.DIGITAL and kind is not ADCKind.DIGITAL:
            # an all-digital macro priced by its architecture: a converter there is another chip
            raise ConfigError(
                f"adc_kind {point['adc_kind']!r} is invalid for a base chip with adc.kind = "
                "'digital' (its columns are summed by digital adders: no converter to choose); "
                "allowed: 'digital' (sweep adc_kind on a chip with an analog read-out)")
        if kind is ADCKind.DIGITAL and adc.kind is not ADCKind.DIGITAL:
            # the reverse: adder trees over 1-b cells, the sum's width as their bits, no range
            # to calibrate; another chip, not a converter of this one (the point failed on
            # range_policy, naming no swept value)
            raise ConfigError(
                f"adc_kind 'digital' is invalid for a base chip with adc.kind = "
                f"{adc.kind.value!r} (a digital read-out sums 1-b cells in adder trees, its "
                "bits the sum's width: another chip, not a converter to choose); allowed: "
                f"{', '.join(repr(k.value) for k in ADCKind if k is not ADCKind.DIGITAL)} "
                "(sweep a digital read-out from a base chip with adc.kind = 'digital')")
        changes: dict[str, Any] = {"kind": kind}
        if kind is ADCKind.RAMP:
            changes["range_policy"] = RangePolicy.CALIBRATED
            if fit is not None:
                changes["level_fit"] = fit
        if "adc_bits" in point:  # in the same replace: ramp at the base chip's 24 b was refused
            changes["bits"] = point["adc_bits"]
        adc = adc.replace(**changes)
    elif "adc_bits" in point:
        adc = adc.replace(bits=point["adc_bits"])
    parts: dict[str, Any] = {"adc": adc}
    resized: dict[str, Any] = {"cols_per_adc": _cols_per_adc(array, point)}
    if "array_size" in point:
        s = point["array_size"]
        rpc = array.rows_per_conversion
        if isinstance(s, int) and rpc is not None:
            rpc = min(rpc, s)
        resized.update(n_rows=s, n_cols=s, rows_per_conversion=rpc)
    if "slice_readout" in point:
        resized["slice_readout"] = parse_slice_readout(point["slice_readout"])
    parts["array"] = array.replace(**resized)
    if "array_size" in point and "adc_bits" not in point and adc.kind is ADCKind.DIGITAL:
        # an adder tree is exactly as wide as its rows' sum (a wider one reads the same sums
        # at the same price: refused as an adc_bits value), so it follows the swept rows
        parts["adc"] = adc.replace(bits=adder_tree_bits(parts["array"].rows_per_group,
                                                        chip.dac_bits))
    if "thermal_sigma_lsb" in point:  # in the base chip's cell-LSB, as its own value
        parts["noise"] = chip.noise.replace(thermal_sigma_lsb=point["thermal_sigma_lsb"])
    variant = chip.replace(**parts)
    if "bits_per_cell" in point:
        # the device's physics held: per-level tables (a PCM's drift exponents) follow the
        # levels' conductances, and noise, spreads and a fixed ADC range given in cell-LSB
        # keep their current (a thermal noise kept in cell-LSB fell 5x in microamperes from
        # 1 to 4 bits per cell, and the sweep favoured more levels)
        variant = variant.with_bits_per_cell(point["bits_per_cell"])
    if "adc_bits" in point and variant.adc.kind is ADCKind.DIGITAL:
        _check_adder_tree(variant)
    if "slice_readout" in point and variant.array.slice_readout is not array.slice_readout:
        _check_slices_to_combine(variant, array.slice_readout)
    if "time_s" in point:  # not a chip field: the time the deployed chip is run at
        t = check_time(point["time_s"], variant, "time_s")
        t0 = variant.device.drift_t0_s
        if not variant.device.ages and t != t0:
            raise ConfigError(
                f"time_s = {t!r}: {STATIC_DEVICE}; allowed: device.drift_t0_s = {t0:g}, or a "
                "base chip whose device drifts (e.g. the pcm-22nm preset; docs/drift.md)")
    return variant


def _check_slices_to_combine(chip: ChipConfig, base: SliceReadout) -> None:
    """A slice read-out other than the base chip's ``base`` must read other conversions: with
    one column (or one differential pair) per weight both read-outs convert the same currents,
    the same chip under another name (a silent repeat of the base row)."""
    from ..arrays.encoding import conversion_kinds

    same = chip.replace(array=chip.array.replace(slice_readout=base))
    a, b = conversion_kinds(chip), conversion_kinds(same)
    # the same columns in every conversion (where a single column's significance sits, in
    # the analog weight or the digital shift, does not change what is converted)
    if a.weight.shape == b.weight.shape and np.array_equal(a.weight != 0, b.weight != 0):
        raise ConfigError(
            f"slice_readout {chip.array.slice_readout.value!r} reads the same conversions as "
            f"the chip's {base.value!r}: a weight of {chip.weight_bits} b on "
            f"{chip.device.bits_per_cell}-b cells is one column (or differential pair), no "
            f"slices to combine; allowed: {base.value!r} (or sweep bits_per_cell below the "
            "weight's bits)")


def _check_adder_tree(chip: ChipConfig) -> None:
    """A digital adder tree's output width is no design choice: the column sums need
    :func:`adder_tree_bits` of them (fewer are refused by the chip), and more read the same
    sums at the same price (the tree is priced by its rows), the same chip on another row."""
    d = chip.dac_bits
    need = adder_tree_bits(chip.array.rows_per_group, d)
    if chip.adc.bits > need:
        slices = f" of {d}-b input slices" if d > 1 else ""
        raise ConfigError(
            f"adc_bits = {chip.adc.bits} is invalid for adc.kind = 'digital' on "
            f"{chip.array.rows_per_group} rows per conversion{slices}: a digital column's "
            f"output is as wide as its sums (wider reads and costs the same); allowed: {need}")


def _cols_per_adc(array: ArrayConfig, point: Mapping[str, Any]) -> Any:
    """``cols_per_adc`` at ``point``: the swept value, else the chip's, lowered to a swept
    ``array_size`` it exceeds (an array has no more ADCs than columns to share them)."""
    if "cols_per_adc" in point:
        return point["cols_per_adc"]
    s = point.get("array_size")
    return min(array.cols_per_adc, s) if isinstance(s, int) else array.cols_per_adc


def resolve_point(chip: ChipConfig, point: Mapping[str, Any]) -> dict[str, Any]:
    """Every axis's value at ``point``: the swept value, or the chip's that the point's chip
    fields give, the base chip's without them (``cols_per_adc``: lowered to a swept
    ``array_size`` as :func:`chip_for_point` does; ``time_s``: the point's ``drift_t0_s``,
    the time a point that sweeps no time runs at).

    A bare ``'ramp'`` resolves to ``'ramp:<the chip's level_fit>'``, a slice read-out to its
    lower-case name and a chip field (``'tech.vdd_v'``) to the value its chip holds, as a chip
    file writes it, so two spellings of one chip are one point (one row, one id).
    """
    point = _plain_point(point)
    fields = {a: point[a] for a in field_axes(point)}
    own: ChipConfig | None = chip  # the chip the point's fields give: its values where not swept
    if fields:
        try:
            own = _with_fields(chip, fields)
        except ConfigError:
            own = None  # an impossible point: refused later, naming it
    base = own or chip
    a = base.array
    out: dict[str, Any] = {
        "array_size": a.n_rows if a.n_rows == a.n_cols else None,
        "bits_per_cell": base.device.bits_per_cell,
        "slice_readout": a.slice_readout.value,
        "cols_per_adc": _cols_per_adc(a, point),
        "thermal_sigma_lsb": base.noise.thermal_sigma_lsb,
        "adc_kind": _kind_label(base.adc.kind, base.adc.level_fit),
        "adc_bits": base.adc.bits,
        "time_s": base.device.drift_t0_s,
    }
    for axis, value in point.items():
        if axis == "adc_kind":
            try:
                kind, fit = parse_adc_kind(value)
                value = _kind_label(kind, fit or chip.adc.level_fit)
            except ConfigError:
                pass  # the point fails later with this message; keep the value as given
        elif axis == "slice_readout":
            try:
                value = parse_slice_readout(value).value
            except ConfigError:
                pass  # as above
        elif axis in FLOAT_AXES and isinstance(value, (int, float)) \
                and not isinstance(value, bool):
            with contextlib.suppress(OverflowError):  # 10**400: refused later, naming it
                value = float(value)
        out[axis] = value
    if fields and own is not None:
        # each field as the point's fields set it, before the named axes (1 and 1.0 V, 'all'
        # and None: one chip, one id; a cell-LSB value as given, not as bits_per_cell
        # rescales it, as thermal_sigma_lsb's); as given where the point is impossible
        data = own.to_dict()
        out.update({axis: _field_value(data, axis) for axis in fields})
    if "array_size" in point and "adc_bits" not in point and base.adc.kind is ADCKind.DIGITAL:
        # the adder tree's width follows the swept rows (chip_for_point): the point's value,
        # not the base chip's (a row said 10 b of an 8-b tree, and the same chip swept with
        # adc_bits 8 got another id)
        with contextlib.suppress(ConfigError):  # an impossible point: refused there
            out["adc_bits"] = chip_for_point(chip, point).adc.bits
    return out


def identity(chip: ChipConfig, point: Mapping[str, Any]) -> dict[str, Any]:
    """The axis values that identify ``point`` (hashed into its id with the sweep's context):
    :func:`resolve_point`'s, less each of :data:`LATER_AXES` whose value is the one the point's
    other axes give the chip (``time_s``: the chip's ``drift_t0_s``; ``cols_per_adc``: the
    chip's, lowered to a swept ``array_size``). Such a point is the chip it was before that
    axis existed, and keeps the id an older cimsim gave it."""
    resolved = resolve_point(chip, point)
    implied = resolve_point(chip, {k: v for k, v in point.items() if k not in LATER_AXES})
    base = chip.to_dict()
    # a chip field at the base chip's value is the chip a sweep without that axis ran
    ident = {k: v for k, v in resolved.items()
             if (k not in LATER_AXES or v != implied[k])
             and (k in AXES or not _at_base(chip, base, k, v))}
    if _holds_cell_lsb(chip, resolved):
        # another chip than an older cimsim ran at this point (it kept these values in
        # cell-LSB): an older results file reruns it rather than resume its figures
        ident["cell_lsb"] = "held"
    return ident


def _holds_cell_lsb(chip: ChipConfig, resolved: Mapping[str, Any]) -> bool:
    """Whether the point's ``bits_per_cell`` rescales a value the chip gives in cell-LSB
    (:meth:`ChipConfig.with_bits_per_cell`)."""
    dev, adc = chip.device, chip.adc
    return resolved["bits_per_cell"] != dev.bits_per_cell and bool(
        resolved["thermal_sigma_lsb"] or dev.retention_sigma_lsb
        or (dev.variation is VariationKind.GAUSSIAN and dev.variation_sigma)
        or adc.range_policy is RangePolicy.FIXED)
