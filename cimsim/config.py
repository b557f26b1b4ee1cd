"""Chip configuration: frozen dataclasses, validation, TOML presets.

Every physical quantity carries its unit in the field name. Every field is validated in
``__post_init__``; a bad value raises :class:`~cimsim.errors.ConfigError` naming the field, the
value and what is allowed. Variants are made with ``cfg.replace(field=value)`` (a copy).

Units used by the hardware model (``docs/hardware-model.md``):

* *cell-LSB*: the column current of one cell at digit level 1 (one conductance step
  ``(g_max - g_min) / (2**bits_per_cell - 1)``) driven by one input LSB. Noise and the off-state
  current are given in this unit so that they mean the same at every array size.
* *ADC-LSB*: one ADC step Δ.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import json
import math
import numbers
import re
import tomllib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import numpy as np

from .errors import ConfigError

__all__ = [
    "ADCBand",
    "ADCConfig",
    "ADCKind",
    "ActCalibration",
    "ActFormat",
    "ADCPlacement",
    "ArrayConfig",
    "CalibrationGranularity",
    "CalibrationMode",
    "CalibrationStat",
    "CellKind",
    "CellTech",
    "ComputeDomain",
    "CostModel",
    "DigitalColumn",
    "InputDrive",
    "PowerGating",
    "WordlineSwitching",
    "LevelFit",
    "ChipConfig",
    "DACConfig",
    "DeviceConfig",
    "DifferentialReadout",
    "DriftCompensation",
    "GroupPacking",
    "Nonlinearity",
    "NoiseConfig",
    "OffCurrentCompensation",
    "QuantConfig",
    "RangePolicy",
    "SignedInputMode",
    "SliceReadout",
    "TDCArchitecture",
    "TechConfig",
    "VariationKind",
    "WeightEncoding",
    "WeightGranularity",
    "WeightScale",
    "list_presets",
    "load_chip",
    "unstated_inputs",
]


# --------------------------------------------------------------------------------------------
# Choices
# --------------------------------------------------------------------------------------------
class _Choice(str, enum.Enum):
    """A string enum: TOML and users may give the value as a plain string."""

    def __str__(self) -> str:
        return self.value


class WeightEncoding(_Choice):
    DIFFERENTIAL = "differential"
    TWOS_COMPLEMENT = "twos_complement"
    OFFSET = "offset"
    SIGNED_CELL = "signed_cell"
    TERNARY = "ternary"
    """Balanced-ternary digits c_i in {-1, 0, +1}, each a differential pair of binary cells
    (ColumnQuant's option 3); slice significance 3^i, or learned per-conversion coefficients.
    ``weight_bits`` counts the digits: 1 is a ternary weight {-1, 0, +1} (one cell pair)."""
    BINARY = "binary"
    """1-b weights w in {-1, +1} (XNOR-style), one binary cell d = (w + 1)/2 per weight; the
    back end forms x·w = 2·(x·d) - Σx exactly. Only with ``weight_bits = 1`` (and 1-b weights
    only with it or with one ``ternary`` digit); a 0 weight is not representable."""


class DifferentialReadout(_Choice):
    ANALOG = "analog"
    DIGITAL = "digital"


class SliceReadout(_Choice):
    DIGITAL = "digital"
    """Every bit slice of a weight is its own conversion; the codes are shift-added."""
    ANALOG = "analog"
    """All slices of an output's weight (and both columns of an analog differential pair) are
    weighted by their significance in analog and summed into ONE conversion."""


class SignedInputMode(_Choice):
    TWOS_COMPLEMENT = "twos_complement"
    TWO_PASS = "two_pass"


class CellTech(_Choice):
    RRAM = "rram"
    PCM = "pcm"
    MRAM = "mram"
    """Magnetic tunnel junction (STT/SOT-MRAM): binary (parallel / antiparallel), so 1 bit per
    cell, with a low on/off ratio R_AP/R_P (docs/hardware-model.md, "MRAM cells")."""
    FEFET = "fefet"
    """Ferroelectric FET (HfO2 gate stack, e.g. GlobalFoundries 28 nm / 22FDX): the stored
    polarization sets the threshold voltage, and the cell is read through its transistor
    channel at a small drain voltage, as a programmed conductance (docs/hardware-model.md,
    "FeFET and NOR-flash cells")."""
    FLASH = "flash"
    """NOR floating-gate flash (embedded, e.g. split-gate 40/55 nm, 180 nm): the stored charge
    sets the threshold voltage; read through the channel as a programmed conductance."""
    SRAM = "sram"
    EDRAM = "edram"
    """Gain-cell (logic-compatible) eDRAM: one bit held as charge on a storage node (the gate of
    a read transistor), written through a write transistor and read through a decoupled read
    port. A digital store like SRAM (1 bit per cell, restored before it leaks away), so the
    engine treats it as SRAM; the cost model adds its refresh (``tech.retention_ns``;
    docs/hardware-model.md, "eDRAM / gain cells")."""
    IDEAL = "ideal"

    @property
    def resistive(self) -> bool:
        """Whether a read sums cell currents through programmed conductances (RRAM, PCM, MRAM,
        and the FeFET and flash transistors' channels: priced by V^2 G t); SRAM and ideal cells
        are priced as bit-cells."""
        return self in (CellTech.RRAM, CellTech.PCM, CellTech.MRAM, CellTech.FEFET,
                        CellTech.FLASH)


class VariationKind(_Choice):
    NONE = "none"
    LOGNORMAL = "lognormal"
    GAUSSIAN = "gaussian"


class OffCurrentCompensation(_Choice):
    NONE = "none"
    ANALOG = "analog"
    DIGITAL = "digital"


class DriftCompensation(_Choice):
    """Digital gain that undoes conductance drift (docs/drift.md): none, one gain per
    programmed layer, or one per conversion column."""

    NONE = "none"
    GLOBAL = "global"
    COLUMN = "column"


class Nonlinearity(_Choice):
    NONE = "none"
    SATURATING = "saturating"
    POLYNOMIAL = "polynomial"
    IR_DROP = "ir_drop"


class GroupPacking(_Choice):
    """How a grouped convolution's per-group matrices are laid out on the arrays."""
    NONE = "none"
    """One matrix per group, each on arrays of its own (a depthwise 3x3 conv: C matrices of
    9 rows)."""
    DIAGONAL = "diagonal"
    """Several groups block-diagonally in one matrix (their rows stacked, their columns side
    by side, zeros programmed off the diagonal): as many as fit the arrays one group takes."""


class ADCKind(_Choice):
    SAR = "sar"
    FLASH = "flash"
    RAMP = "ramp"
    CCO = "cco"
    """Current-controlled-oscillator converter: counts oscillator cycles over a window
    (2^bits counts at full scale); linear in simulation."""
    INTEGRATE_FIRE = "integrate_fire"
    """Integrate-and-fire neuron: the column charge is integrated and counted out in fires;
    linear in simulation."""
    SINGLE_SLOPE = "single_slope"
    """Linear single-slope (ramp-compare) converter: a ramp generator shared by an array's
    converters, one comparator and a b-bit counter per converter, 2^bits clock steps per
    conversion; linear in simulation (unlike ``ramp``, the in-memory nonlinear ramp)."""
    TDC = "tdc"
    """Time-domain read-out: the column current charges or discharges a capacitor until a
    comparator trips (a voltage- or current-to-time front end), and a time-to-digital converter
    resolves the pulse (``ADCConfig.tdc_architecture``: counted, or resolved successively);
    linear in simulation."""
    DIGITAL = "digital"
    """No converter: digital CIM (logic gates per bit-cell form the product of the cycle's
    ``dac.bits``-bit input slice and the stored bit, an adder tree per column sums them,
    shift-accumulate across the input slices). The column sum is exact: the chip must have
    1-b cells, ``full_scale`` and ``bits`` wide enough for every column sum
    (:func:`adder_tree_bits`), and be noise-free (checked in ``ChipConfig``)."""


class TDCArchitecture(_Choice):
    """How a time-to-digital converter (``adc.kind = 'tdc'``) resolves its pulse
    (``cimsim.cost.tables.tdc_energy_pj``)."""

    COUNTER = "counter"
    """A counter counts the periods of an oscillator gated by the pulse (a counter TDC)."""
    SUCCESSIVE = "successive"
    """Successive approximation: one bit per step, the pulse's edge delayed by a binary-weighted
    delay and compared by a time comparator (a SAR or recursive / cyclic TDC)."""


class ADCBand(_Choice):
    """Which published ADC cost model the estimator uses (docs/technology.md §3)."""

    LOW = "low"
    TYPICAL = "typical"
    HIGH = "high"


class CostModel(_Choice):
    """How the estimator prices components (docs/cost-model.md).

    ``tables``: the per-node technology tables with per-chip calibrations (the presets'
    meaning before the physical models existed). ``physical``: component models from circuits
    and the ADC survey (cimsim.cost.models), reading the ``tech`` fields below; no per-chip
    factor."""

    TABLES = "tables"
    PHYSICAL = "physical"


class InputDrive(_Choice):
    """How a row driver encodes an input (``physical`` cost model)."""

    AMPLITUDE = "amplitude"
    """A voltage DAC: the row sits at x·V/x_max for the read pulse (the cell conducts ∝ x
    and dissipates ∝ x²; the supply delivers ∝ x, the priced energy)."""
    PULSE_WIDTH = "pulse_width"
    """A pulse x·t_lsb wide at full read voltage (cell energy ∝ x)."""
    PULSE_COUNT = "pulse_count"
    """x unit pulses at full read voltage (cell energy ∝ x, one driver toggle per pulse)."""
    BIT_PLANES = "bit_planes"
    """The input's B bit-planes one after another, each a 1-b pulse at full read voltage, the
    column's result of every plane accumulated in analog with binary weights (a charge-sharing
    accumulator: plane j weighted 2^(j-B)) before one conversion. Numerically the whole
    multi-bit input applied in one shot, so it needs ``dac.bits = 'all'``; priced per plane
    whose bit is 1 (cell energy ∝ popcount(x)), B analog phases per step
    (``cimsim.cost.bitplanes``)."""


class DigitalColumn(_Choice):
    """How a digital-CIM column (``adc.kind = 'digital'``) sums its products
    (``cimsim.cost.ripple``)."""

    ADDER_TREE = "adder_tree"
    """An adder tree per column beside the array (the behaviour before this setting
    existed)."""
    RIPPLE = "ripple"
    """A full adder in every bit-cell: each row adds its input bit times the weight stored
    across its columns (a ripple-carry adder along the row) to the partial sum passed down the
    column from the row above, cut into row groups by ``tech.pipeline_registers_per_column``
    registers (Kim, Yoo, Kim & Kim, "Colonnade", IEEE JSSC 56(7), 2021). An output's sum
    grows by ``ceil(log2(rows_per_conversion))`` bits down the column, so each output also
    holds that many guard columns of cells (:func:`ripple_guard_columns`)."""


class ComputeDomain(_Choice):
    """Where the column sum forms (``physical`` cost model)."""

    CURRENT = "current"
    """Cell currents summed on the bit line (resistive cells, SRAM bit-line discharge)."""
    CHARGE = "charge"
    """Each product charges a capacitor that is then shared on the column (switched
    capacitor, C-2C ladders, binary-weighting capacitors): C·V² per switching."""


class CellKind(_Choice):
    """The physical cell the cost model prices (``physical`` cost model)."""

    SRAM_6T = "sram_6t"
    SRAM_7T = "sram_7t"
    """A 6T cell plus one read transistor (a decoupled single-ended read port)."""
    SRAM_8T = "sram_8t"
    SRAM_10T = "sram_10t"
    RRAM_1T1R = "rram_1t1r"
    PCM = "pcm"
    MRAM_1T1MTJ = "mram_1t1mtj"
    """One magnetic tunnel junction on an access transistor (STT-MRAM 1T1MTJ)."""
    FEFET_1T = "fefet_1t"
    """One ferroelectric FET, the storage and the access device at once (1T FeFET)."""
    FLASH_NOR = "flash_nor"
    """One NOR floating-gate flash cell (a split-gate cell redesigned for analog read-out)."""
    EDRAM_2T = "edram_2t"
    """Two-transistor gain cell: a write transistor onto the storage node, which is the gate of
    the read transistor (e.g. the asymmetric 2T cell of Chun et al., IEEE JSSC 47(2), 2012)."""
    EDRAM_3T = "edram_3t"
    """Three-transistor gain cell: the 2T cell plus a read-select transistor in series with the
    read transistor (e.g. Giterman et al., IEEE SSC-L 3, 2020); the default of ``edram``."""


class PowerGating(_Choice):
    """When idle converters stop leaking (docs/cost-model.md, leakage)."""

    NONE = "none"
    """Every occupied array's ADCs leak for the whole inference (the behaviour before this
    setting existed)."""
    LAYER = "layer"
    """An array's ADCs leak only while its own layer runs (power-gated in between), as chips
    that gate idle macros do."""


class WordlineSwitching(_Choice):
    """Which word lines switch per array step (docs/cost-model.md, word lines)."""

    ACTIVE_ROWS = "active_rows"
    """Only the rows a nonzero input drives (the behaviour before this setting existed)."""
    EVERY_ROW = "every_row"
    """Every row's word line switches once per array step, whatever the inputs, as in
    NeuRRAM, whose word lines gate the neurons' integration of each input bit (Wan et al.,
    Nature 608, 2022, Fig. 12b: word-line energy linear in input bits)."""


class ADCPlacement(_Choice):
    PARTIAL_SUM = "partial_sum"
    LAYER_OUTPUT = "layer_output"


class RangePolicy(_Choice):
    FULL_SCALE = "full_scale"
    FIXED = "fixed"
    CALIBRATED = "calibrated"


class CalibrationGranularity(_Choice):
    LAYER = "layer"
    ARRAY = "array"
    COLUMN = "column"


class CalibrationMode(_Choice):
    """Which inputs ``deploy`` fits a layer's calibrated ADC to (docs/hardware-model.md §7)."""

    SIMULATED = "simulated"
    FLOAT = "float"


class CalibrationStat(_Choice):
    MINMAX = "minmax"
    PERCENTILE = "percentile"
    MEAN_STD = "mean_std"


class LevelFit(_Choice):
    """How a nonlinear ADC's levels are fitted to calibration samples (docs/levels.md)."""

    UNIFORM = "uniform"
    LLOYD_MAX = "lloyd_max"
    CDF = "cdf"
    KMEANS = "kmeans"
    KMEANS_OPTIMAL = "kmeans_optimal"
    BS_KMQ = "bs_kmq"


class WeightGranularity(_Choice):
    TENSOR = "tensor"
    CHANNEL = "channel"
    COLUMN = "column"


class ActCalibration(_Choice):
    MAX = "max"
    PERCENTILE = "percentile"
    MSE = "mse"


class ActFormat(_Choice):
    """How a matrix's float inputs become the integers that drive the rows."""

    INT = "int"
    """A per-tensor scale calibrated once (``QuantConfig.act_calibration``)."""
    BLOCK_FP = "block_fp"
    """Block floating point: the inputs of one vector that feed one row tile share one
    power-of-two exponent, their mantissas aligned to it (floating-point CIM macros;
    docs/hardware-model.md, "Block floating-point inputs")."""


class WeightScale(_Choice):
    """What a weight scale may be."""

    FLOAT = "float"
    """Any positive number (max|w| / q of its group)."""
    POW2 = "pow2"
    """A power of two: the group's float scale rounded up to one (block floating-point
    weights, their shared exponent)."""


#: Bits of a block-FP shared exponent: FP8 E4M3 (4) up to BF16's and MX's E8M0 (8).
ACT_EXPONENT_BITS = (2, 8)


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------
def _fail(owner: str, name: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{owner}.{name} = {value!r} is invalid; allowed: {allowed}")


def _one_bit_cell_fail(value: int, allowed: str) -> None:
    """``DeviceConfig.bits_per_cell`` refused where only 1 b is allowed; at the dataclass's
    default the message says so (a chip built in Python that never wrote the field)."""
    if value == DeviceConfig.__dataclass_fields__["bits_per_cell"].default:
        allowed += (f" ({value} is also DeviceConfig's default, a multi-level cell's: if "
                    "the field was never set, write bits_per_cell = 1; a TOML or dict that "
                    "leaves it out gets 1 here)")
    _fail("DeviceConfig", "bits_per_cell", value, allowed)


def _is_int(value: Any) -> bool:
    """An integer, Python's or NumPy's (``np.int64`` from an array), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    """A real number, Python's or NumPy's (``np.float32``, ``np.float64`` from ``np.linspace``),
    not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _bool(obj: Any, name: str) -> None:
    """A true/false field: Python's bool or NumPy's (stored as Python's), nothing truthy."""
    value = getattr(obj, name)
    if not isinstance(value, (bool, np.bool_)):
        _fail(type(obj).__name__, name, value, "true or false")
    object.__setattr__(obj, name, bool(value))


def _int_in(obj: Any, name: str, lo: int, hi: int | None = None, above: str = "") -> None:
    """``above``: said in parentheses when an integer exceeds ``hi`` (why that bound). A
    NumPy integer is stored as Python's (TOML and JSON write it as a number)."""
    value = getattr(obj, name)
    is_int = _is_int(value)
    if not (is_int and value >= lo and (hi is None or value <= hi)):
        allowed = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
        if above and is_int and hi is not None and value > hi:
            allowed += f" ({above})"
        _fail(type(obj).__name__, name, value, allowed)
    if type(value) is not int:
        object.__setattr__(obj, name, int(value))


def _float_in(
    obj: Any, name: str, lo: float, hi: float = math.inf, *, lo_open: bool = False,
    allow_inf: bool = False,
) -> None:
    value = getattr(obj, name)
    if allow_inf and isinstance(value, str) and value.strip().lower() in ("inf", "+inf"):
        value = math.inf  # as JSON holds it (cimsim._json.json_safe): report.json, sweep.json
    try:
        ok = _is_real(value) and not math.isnan(value)
    except OverflowError:  # an integer beyond a float (10**400): refused, naming the field
        ok = False
    if ok:
        ok = (value > lo if lo_open else value >= lo) and value <= hi
        ok = ok and (allow_inf or math.isfinite(value))
    if not ok:
        left = "(" if lo_open else "["
        right = "]" if allow_inf else ")" if math.isinf(hi) else "]"
        kind = "a number" if allow_inf else "a finite number"
        _fail(type(obj).__name__, name, value, f"{kind} in {left}{lo}, {hi}{right}")
    # store Python floats (an int, a NumPy scalar, "inf") so that TOML round-trips are stable
    if type(getattr(obj, name)) is not float:
        object.__setattr__(obj, name, float(value))


def _zero_or_in(obj: Any, name: str, lo: float, hi: float, zero: str) -> None:
    """``name`` is 0 (the feature off) or in [lo, hi]; ``zero`` says what 0 means."""
    value = getattr(obj, name)
    if not (_is_real(value) and (value == 0 or lo <= value <= hi)):
        _fail(type(obj).__name__, name, value, f"{zero} a number in [{lo}, {hi}]")
    object.__setattr__(obj, name, float(value))


def _coerce_choices(obj: Any) -> None:
    """Turn strings given for Enum fields into the Enum, naming the field when impossible."""
    hints = get_type_hints(type(obj))
    for f in fields(obj):
        kind = hints.get(f.name)
        if isinstance(kind, type) and issubclass(kind, _Choice):
            value = getattr(obj, f.name)
            try:
                object.__setattr__(obj, f.name, kind(value))
            except ValueError:
                allowed = ", ".join(repr(c.value) for c in kind)
                _fail(type(obj).__name__, f.name, value, allowed)


def _level_values(obj: Any, name: str, lo: float, hi: float) -> None:
    """A per-level tuple: empty, one value for every level, or one per level, each in
    [lo, hi]; stored as a tuple of floats."""
    values = getattr(obj, name)
    if _is_real(values):  # one number for every level, as the message allows
        values = (values,)
    n_levels = 1 << obj.bits_per_cell
    ok = isinstance(values, (tuple, list)) and len(values) in (0, 1, n_levels) and all(
        _is_real(v) and math.isfinite(v) and lo <= v <= hi for v in values)
    if not ok:
        _fail(type(obj).__name__, name, values,
              f"an empty list, one number or {n_levels} numbers (one per level of "
              f"bits_per_cell = {obj.bits_per_cell}) in [{lo}, {hi}]")
    object.__setattr__(obj, name, tuple(float(v) for v in values))


_C = TypeVar("_C", bound="_Config")


class _Config:
    """Mixin: ``replace`` that reports unknown fields as :class:`ConfigError`; ``str`` (and a
    notebook's display) as TOML, ``repr`` the dataclass's."""

    def __str__(self) -> str:
        # print(chip) gave the dataclass repr: 3,000 characters on one line
        return _dump_toml(_to_dict(self)).rstrip("\n")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's display (a notebook cell ending in ``chip``): the TOML of :meth:`__str__`."""
        printer.text(f"# {type(self).__name__}\n{self}")

    def replace(self: _C, **changes: Any) -> _C:
        """A copy with ``changes`` (field names of this section: ``chip.replace(weight_bits=4,
        adc=chip.adc.replace(bits=5))``), validated as a file's fields are: an unknown field
        or a bad value is a :class:`ConfigError` naming it and the allowed values. Configs are
        frozen; this is how one is changed."""
        names = {f.name for f in fields(self)}  # type: ignore[arg-type]
        unknown = sorted(set(changes) - names)
        if unknown:
            nested = [u for u in unknown if u.partition(".")[0] in names and "." in u]
            hint = ""
            if nested:  # 'adc.bits': the section's own replace() sets a field inside it
                head, _, rest = nested[0].partition(".")
                hint = (f"; a field inside a section is set through the section's replace(), "
                        f"e.g. chip.replace({head}=chip.{head}.replace({rest}=...))")
            raise ConfigError(
                f"{type(self).__name__} has no field(s) {unknown}; fields: {sorted(names)}"
                + hint
            )
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


_FROZEN = dict(frozen=True, slots=True, kw_only=True)


# --------------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------------
@dataclass(**_FROZEN)
class ArrayConfig(_Config):
    """Crossbar arrays, their organisation on the chip and their ADC sharing."""

    n_rows: int = 256
    """Rows (word lines) per array: the most inputs one array sums."""
    n_cols: int = 256
    """Physical columns (bit lines) per array."""
    rows_per_conversion: int | None = None
    """Rows summed in one conversion (None: all ``n_rows``). An array is read in
    ``ceil(rows_used / rows_per_conversion)`` row groups, one conversion each."""
    cols_per_adc: int = 8
    """Columns multiplexed onto one ADC; an array has ``ceil(n_cols / cols_per_adc)`` ADCs."""
    n_tiles: int = 64
    """Tiles on the chip."""
    arrays_per_tile: int = 16
    """Arrays per tile; the chip holds ``n_tiles * arrays_per_tile`` arrays."""
    tile_buffer_kib: float = 64.0
    """Each tile's input/output buffer, KiB (ISAAC's 64-KiB tile eDRAM, Shafiee et al., ISCA
    2016): its area and its energy per bit (Horowitz's size dependence) in a chip's figures;
    a chip of small arrays has a smaller one."""
    allow_time_multiplexing: bool = False
    """If a model needs more arrays than the chip has: reprogram arrays over time (charged)
    instead of raising CapacityError."""
    kernel_preserving_tiling: bool = False
    """Convolutions: keep whole kh*kw kernels inside one row tile (ColumnQuant layout)."""
    group_packing: GroupPacking = GroupPacking.NONE
    """Grouped and depthwise convolutions: ``none`` maps each group's matrix
    (C_out/groups outputs, C_in/groups · prod(kernel) rows) on arrays of its own; ``diagonal``
    packs P groups block-diagonally into one matrix (P·K rows, P·N outputs; every off-diagonal
    cell programmed to weight zero, its rows driven with the other groups' inputs), P the
    largest divisor of ``groups`` whose packed matrix takes no more arrays than one group
    (docs/hardware-model.md §4)."""
    slice_readout: SliceReadout = SliceReadout.DIGITAL
    """How the ``bits_per_cell`` slice columns of one output are read. ``digital``: one
    conversion per slice column, codes shift-added by 2^(c·s). ``analog``: the slice columns
    (and both columns of an analog differential pair) are combined before the ADC with binary
    weights (current mirrors / capacitors / column drive scaled 2^(c·s), the two's-complement
    sign column with -2^(B-1)) into ONE conversion whose value, in cell-LSB, is
    Σ_s coef_s · I_s; the ADC's full-scale range is that of the combination
    (docs/hardware-model.md, "Analog slice combination"). Not with ``weight_encoding =
    'ternary'``, ``noise.nonlinearity`` other than 'none' or ``adc.kind = 'digital'``."""

    def __post_init__(self) -> None:
        _coerce_choices(self)
        _int_in(self, "n_rows", 1, 1 << 16)
        _int_in(self, "n_cols", 1, 1 << 16)
        if self.rows_per_conversion is not None:
            _int_in(self, "rows_per_conversion", 1, self.n_rows)
        # over n_cols is most often an array narrowed below the 8 columns per ADC it kept
        # from a preset or the default: say which bound it broke
        _int_in(self, "cols_per_adc", 1, self.n_cols,
                above="no more than n_cols; cols_per_adc is 8 unless set")
        # bounded by what a chip can be (2^20 tiles of 2^16 arrays), not only from below
        _int_in(self, "n_tiles", 1, 1 << 20)
        _int_in(self, "arrays_per_tile", 1, 1 << 16)
        _float_in(self, "tile_buffer_kib", 0.0, float(1 << 20), lo_open=True)
        for name in ("allow_time_multiplexing", "kernel_preserving_tiling"):
            _bool(self, name)

    @property
    def rows_per_group(self) -> int:
        """Rows summed per conversion (``rows_per_conversion`` resolved)."""
        return self.n_rows if self.rows_per_conversion is None else self.rows_per_conversion

    @property
    def n_arrays(self) -> int:
        return self.n_tiles * self.arrays_per_tile

    @property
    def adcs_per_array(self) -> int:
        return -(-self.n_cols // self.cols_per_adc)


# the device fields that hold one value per programmed level (or one for all, or none)
LEVEL_TABLES = ("drift_nu_mean", "drift_nu_sigma", "read_noise_q_s")


@dataclass(**_FROZEN)
class DeviceConfig(_Config):
    """Memory cells: levels, conductances, programming variation and faults."""

    cell: CellTech = CellTech.RRAM
    """Cell technology (sets the cost model of a cell read)."""
    bits_per_cell: int = 2
    """Bits stored per cell; a cell holds digits 0 .. 2**bits_per_cell - 1."""
    g_max_us: float = 10.0
    """Conductance of the highest level, microsiemens (at most 1e6: 1 S)."""
    on_off_ratio: float = math.inf
    """g_max / g_min. Finite values give an off-state current of
    ``(2**bits_per_cell - 1) / (on_off_ratio - 1)`` cell-LSB per driven row."""
    off_current_compensation: OffCurrentCompensation = OffCurrentCompensation.DIGITAL
    """``none``: the off-state current stays in the result; ``analog``: its nominal value is
    subtracted before the ADC (reference column); ``digital``: it is converted and its nominal
    value removed after the ADC."""
    variation: VariationKind = VariationKind.NONE
    """Programming variation, drawn once per programmed weight matrix from the seed."""
    variation_sigma: float = 0.0
    """``lognormal``: sigma of ln(G) (G -> G*exp(sigma*z)); ``gaussian``: sigma in cell-LSB
    (G -> max(G + sigma*z, 0))."""
    p_stuck_on: float = 0.0
    """Probability that a cell is stuck at the highest conductance."""
    p_stuck_off: float = 0.0
    """Probability that a cell is stuck at the lowest conductance."""
    drift_t0_s: float = 1.0
    """Time after programming, s, at which the programmed state (variation, faults) is the
    drawn one: the reference of drift and retention, and the earliest inference time."""
    drift_nu_mean: tuple[float, ...] = ()
    """Mean drift exponent ν of a cell by programmed level (one value for every level, or one
    per level 0 .. 2**bits_per_cell - 1): G(t) = G(t0)·(t/t0)^(-ν). Empty: no drift."""
    drift_nu_sigma: tuple[float, ...] = ()
    """Spread of ν by level (one value or one per level; empty: 0). ν of each cell is
    |mean + sigma·z|, drawn once per programming."""
    read_noise_q_s: tuple[float, ...] = ()
    """1/f read noise coefficient Q_s by level, unitless (the ``_s`` is the published
    symbol's subscript, not seconds; one value or one per level; empty: none): each read sees
    G(t)·(1 + n), n ~ N(0, (q_s·sqrt(ln((t + t_read)/(2·t_read))))²), t_read =
    ``tech.t_read_ns``; added in variance to ``noise.read_noise_rel``."""
    retention_sigma_lsb: float = 0.0
    """Retention relaxation: each cell moves by sigma(t)·z (z drawn once per programming),
    sigma(t) = retention_sigma_lsb·sqrt(log10(t/t0)) cell-LSB (the spread grows with log
    time; 0: off)."""
    drift_compensation: DriftCompensation = DriftCompensation.NONE
    """Digital gain that undoes drift, from a read of a calibration input at t0 and at the
    inference time (``global``: one per programmed layer; ``column``: one per conversion
    column); its events are counted (docs/drift.md)."""

    def __post_init__(self) -> None:
        _coerce_choices(self)
        _int_in(self, "bits_per_cell", 1, 7)
        if self.cell is CellTech.MRAM and self.bits_per_cell != 1:
            _one_bit_cell_fail(self.bits_per_cell,
                               "1 for cell = 'mram' (a magnetic tunnel junction has two states)")
        if self.cell in (CellTech.SRAM, CellTech.EDRAM) and self.bits_per_cell != 1:
            # before the per-level lists, whose lengths follow bits_per_cell
            _one_bit_cell_fail(self.bits_per_cell, f"1 for cell = '{self.cell.value}'")
        _float_in(self, "drift_t0_s", 0.0, lo_open=True)
        for name in LEVEL_TABLES:
            _level_values(self, name, 0.0, 10.0)
        if any(self.drift_nu_sigma) and not any(self.drift_nu_mean):
            _fail("DeviceConfig", "drift_nu_sigma", list(self.drift_nu_sigma),
                  "empty or zeros without drift_nu_mean (the spread of no drift)")
        _float_in(self, "retention_sigma_lsb", 0.0, 100.0)
        _float_in(self, "g_max_us", 1e-3, 1e6)  # 1 nS .. 1 S: catches siemens written as uS
        _float_in(self, "on_off_ratio", 1.0, lo_open=True, allow_inf=True)
        _float_in(self, "variation_sigma", 0.0, 10.0)
        _float_in(self, "p_stuck_on", 0.0, 1.0)
        _float_in(self, "p_stuck_off", 0.0, 1.0)
        if self.p_stuck_on + self.p_stuck_off > 1.0:
            _fail("DeviceConfig", "p_stuck_on + p_stuck_off",
                  self.p_stuck_on + self.p_stuck_off, "a sum <= 1")
        if self.variation is VariationKind.NONE and self.variation_sigma != 0.0:
            _fail("DeviceConfig", "variation_sigma", self.variation_sigma,
                  "0 when variation = 'none' (choose 'lognormal' or 'gaussian')")
        if self.cell in (CellTech.SRAM, CellTech.EDRAM) and self.ages:
            # a latch holds its bit, a gain cell is refreshed to it: nothing ages. (Variation,
            # faults and off-current stay allowed: bit-cell read-current mismatch, hard
            # defects and the off cells' leakage on a current-summing line are real.)
            name, value = next((n, v) for n, v, on in (
                ("drift_nu_mean", list(self.drift_nu_mean), any(self.drift_nu_mean)),
                ("read_noise_q_s", list(self.read_noise_q_s), any(self.read_noise_q_s)),
                ("retention_sigma_lsb", self.retention_sigma_lsb, self.retention_sigma_lsb > 0),
                ("drift_compensation", self.drift_compensation.value, True)) if on)
            _fail("DeviceConfig", name, value,
                  f"empty, 0 or 'none' for cell = '{self.cell.value}' (a bit-cell holds its "
                  "bit, a gain cell is refreshed to it: no drift, 1/f read noise, retention "
                  "loss or drift compensation; docs/hardware-model.md §5a)")

    @property
    def n_levels(self) -> int:
        return 1 << self.bits_per_cell

    def with_bits_per_cell(self, bits: int) -> DeviceConfig:
        """This device storing ``bits`` bits per cell, its per-level tables
        (:data:`LEVEL_TABLES`) resampled to the new levels by linear interpolation over each
        level's place in the conductance range: level ``l`` of ``L`` sits at ``l / (L - 1)``
        of the way from g_min to g_max, and the published fits (drift exponent, 1/f
        coefficient) are functions of the conductance a cell holds. A table of one value or
        none holds at any bits. The spreads given in cell-LSB (a ``gaussian`` variation's
        ``variation_sigma``, ``retention_sigma_lsb``) keep their conductance: a cell-LSB is one
        level step ``(g_max - g_min) / (2**bits_per_cell - 1)``, so the same microsiemens are
        :meth:`lsb_ratio` times as many cell-LSB (a lognormal variation is relative: kept).
        What a sweep over ``bits_per_cell`` takes (:meth:`ChipConfig.with_bits_per_cell`): a
        4-level table cannot describe 2 or 8 levels as written, and a spread kept in cell-LSB
        would shrink in microsiemens as the levels multiply."""
        changes: dict[str, Any] = {"bits_per_cell": bits}
        if not _is_int(bits) or bits < 1:
            return self.replace(**changes)  # refused there, naming the allowed bits
        ratio = self.lsb_ratio(bits)
        if self.variation is VariationKind.GAUSSIAN:
            changes["variation_sigma"] = self.variation_sigma * ratio
        changes["retention_sigma_lsb"] = self.retention_sigma_lsb * ratio
        n_new = 1 << int(bits)
        for name in LEVEL_TABLES:
            table = getattr(self, name)
            if len(table) > 1 and len(table) != n_new:
                at = np.linspace(0.0, 1.0, n_new)
                changes[name] = tuple(float(v) for v in np.interp(
                    at, np.linspace(0.0, 1.0, len(table)), table))
        return self.replace(**changes)

    def lsb_ratio(self, bits: int) -> float:
        """How many cell-LSB at ``bits`` bits per cell one cell-LSB of this device is:
        ``(2**bits - 1) / (2**bits_per_cell - 1)`` (g_max and g_min stay, the levels between
        them change)."""
        return ((1 << int(bits)) - 1) / (self.n_levels - 1)

    @property
    def g_off_lsb(self) -> float:
        """Off-state conductance g_min in cell-LSB units (0 for an infinite on/off ratio)."""
        if math.isinf(self.on_off_ratio):
            return 0.0
        return (self.n_levels - 1) / (self.on_off_ratio - 1.0)

    @property
    def g_lsb_us(self) -> float:
        """Conductance of one cell-LSB (one level step), microsiemens."""
        g_min = 0.0 if math.isinf(self.on_off_ratio) else self.g_max_us / self.on_off_ratio
        return (self.g_max_us - g_min) / (self.n_levels - 1)

    @property
    def ages(self) -> bool:
        """Whether the device changes after programming (drift, 1/f read noise, retention) or
        a drift compensation is fitted: then time is an input (docs/drift.md)."""
        return bool(any(self.drift_nu_mean) or any(self.read_noise_q_s)
                    or self.retention_sigma_lsb > 0
                    or self.drift_compensation is not DriftCompensation.NONE)

    @property
    def varies(self) -> bool:
        """Whether programming moves cells off their nominal conductance: a variation kind
        with a nonzero sigma. At sigma 0 every cell is programmed exactly, as with 'none' (and
        no normals are drawn): the float32 conductances of 'lognormal' at sigma 0 moved a
        differential pair off an exact half-way tie, a whole ADC step."""
        return self.variation is not VariationKind.NONE and self.variation_sigma > 0.0

    @property
    def ideal(self) -> bool:
        return not self.varies and self.p_stuck_on == 0.0 and self.p_stuck_off == 0.0


@dataclass(**_FROZEN)
class DACConfig(_Config):
    """Input drivers."""

    bits: int | None = 1
    """Input bits applied per cycle (1: bit-serial; None, written "all" in TOML: all input bits
    in one shot)."""
    signed_inputs: SignedInputMode = SignedInputMode.TWOS_COMPLEMENT
    """Signed inputs: two's-complement planes (MSB plane negative, a bipolar drive) or two
    passes (positive part, then negative part)."""
    shift_unsigned_inputs: bool = False
    """A-shift (RAOQ, Zhang, Chen & Verma, ICML 2024): a matrix whose inputs are unsigned
    (post-ReLU) is driven with the signed codes ``x_int - 2^(B_x-1)`` (two's complement), and
    the exact per-output correction ``2^(B_x-1) · Σ_k w_int`` (computed when the weights are
    programmed) is added digitally. Raises E[x²] of the drive, and so the partial sums' spread
    on a fixed-range ADC. Needs ``signed_inputs = 'twos_complement'``."""

    def __post_init__(self) -> None:
        _coerce_choices(self)
        _bool(self, "shift_unsigned_inputs")
        if self.shift_unsigned_inputs and self.signed_inputs is not \
                SignedInputMode.TWOS_COMPLEMENT:
            _fail("DACConfig", "signed_inputs", self.signed_inputs.value,
                  "'twos_complement' with shift_unsigned_inputs = true (the shifted code "
                  "-2^(B_x-1) needs the two's-complement range)")
        if self.bits == "all":  # TOML has no null
            object.__setattr__(self, "bits", None)
        if self.bits is not None:
            # NumPy's integers too (a sweep's np.arange), stored as Python's, as _int_in does
            if not (_is_int(self.bits) and 1 <= self.bits <= 16):
                _fail("DACConfig", "bits", self.bits,
                      "an integer in [1, 16], or 'all' (every input bit in one shot)")
            object.__setattr__(self, "bits", int(self.bits))


@dataclass(**_FROZEN)
class ADCConfig(_Config):
    """Column ADCs."""

    kind: ADCKind = ADCKind.SAR
    """Converter kind: ``sar``, ``flash``, ``single_slope``, ``cco``, ``integrate_fire`` and
    ``tdc`` are linear; ``ramp`` is the in-memory nonlinear ADC (2^bits ramp steps) whose
    thresholds and levels are fitted by ``level_fit``; ``digital`` is an exact adder tree."""
    bits: int = 8
    """Resolution in bits; 2**bits codes."""
    tdc_architecture: TDCArchitecture = TDCArchitecture.COUNTER
    """``tdc`` only: how the time-to-digital converter resolves the pulse, ``counter`` (an
    oscillator's periods counted) or ``successive`` (a SAR or recursive TDC, one bit per step).
    Changes the converter's cost, not the simulated conversion."""
    placement: ADCPlacement = ADCPlacement.PARTIAL_SUM
    """Where conversions happen: on every partial sum, or at the layer output (only when one
    conversion holds the whole dot product)."""
    fuse_activation: bool = True
    """``layer_output`` only: when a mapped layer's only consumer is a ReLU, ReLU6 or
    ``Hardtanh(0, m)``, its ADC is that activation's quantizer (bias folded into the thresholds,
    levels in [0, a_max]; ``cimsim.adc.activation``). Needs ``range_policy = 'calibrated'``."""
    range_policy: RangePolicy = RangePolicy.FULL_SCALE
    """``full_scale``: the largest possible partial sum (hardware-fixed); ``fixed``: ``fixed_lo``
    .. ``fixed_hi``; ``calibrated``: from calibration inputs."""
    zero_aligned: bool = True
    """When the range contains 0, use the smallest step whose grid covers [lo, hi] with 0 as a
    code (a mid-tread ADC: a zero partial sum converts to exactly 0, so the shift-add does not
    multiply a half-step offset by every plane and slice significance). False: the literal
    Δ = (hi - lo) / (2^bits - 1) grid starting at lo."""
    full_scale_factor: float = 1.0
    """``full_scale`` only: the range is shrunk by this factor (k >= 1)."""
    fixed_lo: float = 0.0
    """``fixed`` only: low end of the range, cell-LSB."""
    fixed_hi: float = 255.0
    """``fixed`` only: high end of the range, cell-LSB."""
    calibration_granularity: CalibrationGranularity = CalibrationGranularity.LAYER
    """``calibrated`` only: one range (or level set) per layer, per array, or per column."""
    level_fit: LevelFit = LevelFit.UNIFORM
    """``ramp`` only: how thresholds and levels are fitted to the calibration samples."""

    calibration_stat: CalibrationStat = CalibrationStat.MINMAX
    """``calibrated`` only: how the range is set from the calibration partial sums."""
    percentile: float = 99.9
    """``percentile`` only: the range is [100 - p, p] percentiles."""
    n_sigma: float = 3.0
    """``mean_std`` only: the range is mean ± n_sigma · std."""
    calibration_mode: CalibrationMode = CalibrationMode.FLOAT
    """``calibrated`` only, in ``deploy``: ``float`` fits every ADC to the float model's inputs
    (one pass); ``simulated`` fits each layer's ADC to the inputs it sees in simulation, the
    layers before it simulated (one calibration pass per stage of layers, in execution order),
    so that tight ranges (per column) do not clip on simulated inputs. Activation scales come
    from the float pass in both modes. The training twin (``cimsim.train.prepare``) calibrates
    on float inputs."""
    calibration_margin: float = 0.0
    """``calibrated`` linear ranges only: each end of a calibrated range [lo, hi] moves out by
    this fraction of its width, [lo − m·(hi − lo), hi + m·(hi − lo)], for inputs that reach
    beyond the calibration data, but never past the full scale an ideal column can produce
    ([fs_lo, fs_hi]; an end already beyond it stays put). 0 (the default) keeps the calibrated
    range."""
    gain_error: float = 0.0
    """Relative gain error: the ADC converts a·(1 + gain_error)."""
    offset_error_lsb: float = 0.0
    """Offset error in ADC-LSB added before conversion."""
    comparator_noise_lsb: float = 0.0
    """Comparator noise, sigma in ADC-LSB, fresh per conversion."""
    # (last: a pickle from before it held the fields by position)
    t_conversion_ns: float | None = None
    """The converter's conversion time as published (1 / its sample rate), ns; None: the
    kind's own timing (SAR: bits + 1 comparator cycles of 1 ns, flash: one, ramp and
    integrate-and-fire: 2^bits steps, single-slope: 2^bits clock periods, CCO and TDC their
    circuit models). Times the conversions of a step (a step lasts the longest of the window,
    the column's settling and its converter's conversions), so the converter's energy follows
    the rate the step then asks (the survey's speed envelope). Changes the cost, not the
    simulated conversion; not for a digital read-out (its step is ``tech.clock_mhz``)."""

    def __post_init__(self) -> None:
        _coerce_choices(self)
        _int_in(self, "bits", 1, 24)
        for name in ("zero_aligned", "fuse_activation"):
            _bool(self, name)
        _float_in(self, "full_scale_factor", 1.0)
        _float_in(self, "fixed_lo", -math.inf)
        _float_in(self, "fixed_hi", -math.inf)
        if self.range_policy is RangePolicy.FIXED and not self.fixed_hi > self.fixed_lo:
            _fail("ADCConfig", "fixed_hi", self.fixed_hi, f"> fixed_lo ({self.fixed_lo})")
        _float_in(self, "percentile", 50.0, 100.0, lo_open=True)
        _float_in(self, "n_sigma", 0.0, lo_open=True)
        _float_in(self, "calibration_margin", 0.0, 10.0)
        _float_in(self, "gain_error", -0.5, 0.5)
        _float_in(self, "offset_error_lsb", -math.inf)
        _float_in(self, "comparator_noise_lsb", 0.0)
        if self.t_conversion_ns is not None:
            _float_in(self, "t_conversion_ns", MIN_TIME_NS, MAX_TIME_NS)
            if self.kind is ADCKind.DIGITAL:
                _fail("ADCConfig", "t_conversion_ns", self.t_conversion_ns,
                      "unset (None) for kind = 'digital' (an adder tree sums one column per "
                      "clock: its step is tech.clock_mhz)")
        if self.kind is ADCKind.RAMP and self.range_policy is not RangePolicy.CALIBRATED:
            _fail("ADCConfig", "range_policy", self.range_policy.value,
                  "'calibrated' for kind = 'ramp' (the in-memory nonlinear ramp: its levels "
                  "are fitted to calibration data; a description that leaves range_policy out "
                  "gets it; a linear ramp-compare converter is kind = 'single_slope')")
        if self.kind is ADCKind.RAMP and self.bits > 16:  # cimsim.adc.levels' fitting limit
            _fail("ADCConfig", "bits", self.bits, "an integer in [1, 16] for kind = 'ramp' "
                  "(its 2^bits levels are fitted to calibration data)")


    @property
    def n_codes(self) -> int:
        return 1 << self.bits


@dataclass(**_FROZEN)
class NoiseConfig(_Config):
    """Analog non-idealities of a conversion."""

    thermal_sigma_lsb: float = 0.0
    """Thermal/read noise at the column output, sigma in cell-LSB, fresh per conversion."""
    read_noise_rel: float = 0.0
    """Per-cell read noise: each cell's conductance fluctuates at every read with sigma =
    read_noise_rel · G (sampled exactly in distribution at the column output)."""
    nonlinearity: Nonlinearity = Nonlinearity.NONE
    """Column transfer non-linearity applied to the analog sum before noise and ADC."""
    saturation_fraction: float = 1.0
    """``saturating``: a -> s·tanh(a/s), s = saturation_fraction · full-scale current."""
    poly_coeffs: tuple[float, ...] = ()
    """``polynomial``: a -> a + F·Σ_i c_i·(a/F)^(i+2), F the full-scale current (INL shape)."""
    ir_drop_beta: float = 0.0
    """``ir_drop``: first-order attenuation a -> a / (1 + beta·|a|/F)."""

    def __post_init__(self) -> None:
        _coerce_choices(self)
        _float_in(self, "thermal_sigma_lsb", 0.0)
        _float_in(self, "read_noise_rel", 0.0, 10.0)
        _float_in(self, "saturation_fraction", 0.0, lo_open=True)
        _float_in(self, "ir_drop_beta", 0.0)
        coeffs = self.poly_coeffs
        if not isinstance(coeffs, (tuple, list)) or not all(
            _is_real(c) and math.isfinite(c)  # NumPy's numbers too, stored as floats
            for c in coeffs
        ) or len(coeffs) > 6:
            _fail("NoiseConfig", "poly_coeffs", coeffs, "up to 6 finite numbers")
        object.__setattr__(self, "poly_coeffs", tuple(float(c) for c in coeffs))


MIN_TIME_NS, MAX_TIME_NS = 1e-6, 1e9
"""The read pulse and compute window a chip may state, ns (1 fs .. 1 s)."""


@dataclass(**_FROZEN)
class TechConfig(_Config):
    """Technology and timing (read by the cost model)."""

    node_nm: float = 22.0
    """Process node, nm (3 .. 180; docs/technology.md §1 gives the rules outside 7 .. 130)."""
    vdd_v: float = 0.8
    """Digital supply voltage, V."""
    v_read_v: float = 0.2
    """Full-scale read voltage on a row, V."""
    read_supply_v: float | None = None
    """Supply a resistive column's read current is drawn from, V (``physical`` cost model);
    None: ``vdd_v`` (``v_read_v`` where that is higher). The driver or bit-line clamp that
    holds a line at its read voltage drops the rest, so a read costs this supply times the
    charge the cells conduct (a dedicated rail at the read voltage: ``read_supply_v =
    v_read_v``). At least ``v_read_v``; absent for a CMOS bit-cell or a charge-domain column
    (no read current is drawn)."""
    t_read_ns: float = 10.0
    """Read pulse width per input plane, ns (1e-6 .. 1e9); not read by digital CIM
    (``adc.kind = 'digital'``), whose step is one clock (``clock_mhz``)."""
    clock_mhz: float = 1000.0
    """Digital clock, MHz (1e-3 .. 1e6)."""
    adc_band: ADCBand = ADCBand.TYPICAL
    """ADC cost model band: low, typical or high (published models differ ~50x);
    ``tables`` cost model only."""
    # -- physical cost model (cimsim.cost.models; docs/cost-model.md) -----------------------
    cost_model: CostModel = CostModel.TABLES
    """``tables`` (technology tables, per-chip calibrations) or ``physical`` (component models
    from circuits and the ADC survey, no per-chip factor); the fields below are read by
    ``physical`` only."""
    input_drive: InputDrive = InputDrive.AMPLITUDE
    """Row drivers: a voltage DAC, temporal drive (pulse width / pulse count), or the input's
    bit-planes accumulated in analog before one conversion (``bit_planes``: needs
    ``dac.bits = 'all'``)."""
    compute_domain: ComputeDomain = ComputeDomain.CURRENT
    """Column sum in current (resistive) or charge (capacitor) domain."""
    cell_kind: CellKind | None = None
    """Physical cell; None: from ``device.cell`` (rram -> rram_1t1r, pcm -> pcm,
    mram -> mram_1t1mtj, fefet -> fefet_1t, flash -> flash_nor, edram -> edram_3t,
    sram/ideal -> sram_8t)."""
    devices_per_cell: int = 1
    """Devices that store one cell's value in parallel (multi-device cells, e.g. 2 PCM devices
    per polarity): they multiply the cell's conductance, read energy and area. Resistive cells
    only (the priced ``cell_kind`` or ``device.cell``): 1 for an SRAM or eDRAM bit-cell."""
    weight_sets_stored: int = 1
    """Weight sets each compute cell stores, one active at a time (storage multiplexed onto
    one compute circuit, e.g. 8 per C-2C unit in Wang et al., VLSI 2022): multiplies the
    cell's storage area, not its read energy (the word line's wire crosses the larger cell;
    its gate load stays one set's). A charge-domain cell's capacitor is counted once; a
    digital read-out's bit-cell is multiplied with its product gate (each set a whole bit-cell,
    as a 12T cell holds one: there is no field for sets that share one gate)."""
    cell_area_f2: float | None = None
    """Cell area in F^2 as published; None: the cell kind's default (docs/technology.md)."""
    retention_ns: float | None = None
    """``device.cell = 'edram'`` only: data retention time, ns (1 .. 1e12, e.g. 77000 for
    77 us): every stored bit
    is refreshed (read and written back) once per period while the chip holds its weights;
    None: the cell kind's published retention (docs/technology.md, eDRAM cells)."""
    cap_unit_ff: float = 1.0
    """``charge`` only: capacitance one cell product switches, fF."""
    cap_density_ff_per_um2: float = 0.0
    """``charge`` (and the accumulator capacitors of ``input_drive = 'bit_planes'``): density
    of capacitors that add area beside the cell, fF/um^2 (0.001 .. 1000); 0 when they sit
    above the cell (MOM capacitors in the metal stack)."""
    wordline_v: float | None = None
    """Word-line (gate) swing per row activation, V; None: ``vdd_v``. Priced C_wl·V^2 per
    activated row and array read, apart from the bit-line read."""
    wordline_high_v: float | None = None
    """Supply the word-line driver raises a line from, V; None: the swing itself. A line
    raised by ``wordline_v`` from a ``wordline_high_v`` supply draws ``C_wl·V_swing·V_high``
    (Rabaey et al., "Digital Integrated Circuits", 2nd ed., 2003, §5.5, reduced-swing
    dynamic energy): e.g. NeuRRAM's 0.9 <-> 2.2 V lines (Wan et al., Nature 2022, Fig. 12b)."""
    wordline_cap_ff_per_cell: float | None = None
    """Published word-line load per cell along the line (access gate and coupling), fF; None:
    the wire (0.2 fF/um) and 1 fF/um of access gate over the cell pitch."""
    wordline_driver_cap_ff: float = 0.0
    """Published output capacitance of one word-line driver, fF, added to each line."""
    wordline_switching: WordlineSwitching = WordlineSwitching.ACTIVE_ROWS
    """``active_rows`` (word lines of the rows a nonzero input drives) or ``every_row``
    (every row's word line once per array step)."""
    t_integrate_ns: float | None = None
    """Compute (integration) window per input plane, ns, apart from the read pulse (the cells
    draw current only for ``t_read_ns``); None: the read pulse."""
    window_stated: bool = True
    """Whether ``t_read_ns`` / ``t_integrate_ns`` is a published input. False: the chip states
    no compute window; the physical model predicts the analog phase from the column's settling
    times a ratio fitted across published macros (``cimsim.cost.settling.predicted_window_ns``)
    and ``t_read_ns`` only times the read pulse's energy (a ``t_integrate_ns`` given with it is
    a ``ConfigError``)."""
    power_gating: PowerGating = PowerGating.NONE
    """Leakage policy: ``none`` (occupied arrays' ADCs leak for the whole inference) or
    ``layer`` (only while their layer runs)."""
    digital_column: DigitalColumn = DigitalColumn.ADDER_TREE
    """``adc.kind = 'digital'`` only (both cost models): an adder tree per column
    (``adder_tree``) or a full adder in every bit-cell rippling the partial sums down the
    column (``ripple``, ``cimsim.cost.ripple``)."""
    pipeline_registers_per_column: int = 1
    """``digital_column = 'ripple'`` only: pipeline registers that cut one column's ripple
    chain into row groups (1: one register at the foot of the column; 1 .. rows per
    conversion)."""

    def __post_init__(self) -> None:
        _float_in(self, "node_nm", 3.0, 180.0)  # cimsim.cost.tables.MIN/MAX_NODE_NM
        _float_in(self, "vdd_v", 0.0, 5.0, lo_open=True)
        _float_in(self, "v_read_v", 0.0, 5.0, lo_open=True)
        if self.read_supply_v is not None:
            _float_in(self, "read_supply_v", 0.0, 5.0, lo_open=True)
            if self.read_supply_v < self.v_read_v:  # a driver cannot raise a line above it
                _fail("TechConfig", "read_supply_v", self.read_supply_v,
                      f">= the read voltage, v_read_v = {self.v_read_v!r} V, or absent (vdd_v)")
        # physical ranges (1 fs .. 1 s, 1 kHz .. 1 THz): below them a time's share of a
        # conversion or step underflows to 0 and the figures divide by it
        _float_in(self, "t_read_ns", MIN_TIME_NS, MAX_TIME_NS)
        _float_in(self, "clock_mhz", 1e-3, 1e6)
        _coerce_choices(self)
        if self.cell_kind is not None:
            try:
                object.__setattr__(self, "cell_kind", CellKind(self.cell_kind))
            except ValueError:
                _fail("TechConfig", "cell_kind", self.cell_kind,
                      ", ".join(repr(c.value) for c in CellKind) + " or absent")
        _int_in(self, "devices_per_cell", 1, 64)
        _int_in(self, "weight_sets_stored", 1, 1024)
        if self.cell_area_f2 is not None:
            _float_in(self, "cell_area_f2", 1.0, 10000.0)
        if self.retention_ns is not None:  # 1 ns .. 1000 s
            _float_in(self, "retention_ns", 1.0, 1e12)
        _float_in(self, "cap_unit_ff", 0.01, 1000.0)  # 10 aF ..: catches farads written as fF
        _zero_or_in(self, "cap_density_ff_per_um2", 1e-3, 1000.0,
                    "0 (capacitors above the cell) or")  # else a real density
        if self.wordline_v is not None:
            _float_in(self, "wordline_v", 0.0, 5.0, lo_open=True)
        if self.wordline_high_v is not None:
            _float_in(self, "wordline_high_v", 0.0, 5.0, lo_open=True)
            swing = self.wordline_v if self.wordline_v is not None else self.vdd_v
            if self.wordline_high_v < swing:  # a driver cannot swing a line beyond its supply
                _fail("TechConfig", "wordline_high_v", self.wordline_high_v,
                      f">= the word-line swing, {swing!r} V (wordline_v"
                      f"{'' if self.wordline_v is not None else ', absent: vdd_v'})")
        if self.wordline_cap_ff_per_cell is not None:
            _float_in(self, "wordline_cap_ff_per_cell", 1e-3, 1000.0)  # catches farads as fF
        # 0: not priced; else a real load, so that farads written as fF are refused
        _zero_or_in(self, "wordline_driver_cap_ff", 1e-3, 100000.0, "0 or")
        if self.t_integrate_ns is not None:
            _float_in(self, "t_integrate_ns", MIN_TIME_NS, MAX_TIME_NS)
        _bool(self, "window_stated")
        if self.t_integrate_ns is not None and not self.window_stated:
            # the physical model predicted the window and dropped the one written, silently
            raise ConfigError(f"TechConfig.window_stated = False is invalid with t_integrate_ns "
                              f"= {self.t_integrate_ns!r} (an integration window given is a "
                              "stated one; a physical description writing no window gets "
                              "window_stated = false when loaded); allowed: true, or "
                              "t_integrate_ns left out (the window is then predicted)")
        _int_in(self, "pipeline_registers_per_column", 1, 1 << 16)


@dataclass(**_FROZEN)
class QuantConfig(_Config):
    """How a deployed model's float weights and activations become integers."""

    weight_granularity: WeightGranularity = WeightGranularity.CHANNEL
    """One weight scale per tensor, per output channel, or per array column (a scale for every
    (row tile, output) pair, ColumnQuant); dequantization is aligned with it."""
    act_calibration: ActCalibration = ActCalibration.MAX
    """Per-tensor activation scale from the calibration data: max |x|, a percentile of |x|,
    or the clipping value that minimises the quantization MSE."""
    act_percentile: float = 99.99
    """``percentile`` only: the percentile of |x| mapped to the largest code (with
    ``act_zero_point``: the lower end of the range is the (100 − p)th percentile of x, the
    upper end the pth)."""
    act_zero_point: bool = False
    """Asymmetric activations: every matrix's inputs are quantized unsigned over the calibrated
    [min, max] with an integer zero point z, ``x_int = clip(rint(x / s_x) + z, 0, 2^B_x − 1)``,
    so a skewed signed input (GELU outputs, LayerNorm outputs) uses the whole unsigned DAC
    range instead of a symmetric signed one. The zero point is removed exactly in the digital
    back end, ``y_int − z · Σ_k w_int[n, k]`` (one add per output)."""
    smooth_alpha: float | None = None
    """Per-input-channel smoothing (SmoothQuant, Xiao et al., ICML 2023): input channel k is
    divided by ``s_k = max|X_k|^α / max|W_k|^(1−α)`` (from the calibration data) in the input
    quantizer and weight column k is multiplied by it before weight quantization, so the
    product is unchanged in float and outlier channels move from the activations into the
    weights. α in [0, 1] (0.5 is the paper's default); None: no smoothing."""
    act_format: ActFormat = ActFormat.INT
    """``int``: one calibrated scale per tensor. ``block_fp``: block floating point, as
    floating-point CIM macros pre-align their inputs: the values of one input vector that feed
    one row tile share the exponent of the largest of them, each mantissa is aligned to it and
    rounded to ``input_bits`` (sign included for a signed input), and each row tile's partial
    sum is dequantized by its own power of two before the tiles are added (docs/hardware-model.md
    gives the exact rule). ``act_calibration`` and ``act_percentile`` then do not apply."""
    weight_scale: WeightScale = WeightScale.FLOAT
    """``float``: each weight group's scale is ``max|w| / q`` (``mean|w|`` for 1-b weights).
    ``pow2``: that scale rounded up to a power of two, ``2^ceil(log2 s)`` (no code leaves the
    range): block floating-point weights, the group's shared exponent; with ``weight_granularity
    = 'column'`` one exponent per (row tile, output), the pairing of block-FP inputs."""
    act_exponent_bits: int = 8
    """``block_fp`` only: width of the shared exponent, 2..8 bits (8: the E8M0 scale of the OCP
    MX formats and BF16's exponent; 4 and 5: FP8's). The scale exponent is clamped to
    ``±(2^(bits-1) - 1)``."""

    def __post_init__(self) -> None:
        _coerce_choices(self)
        _float_in(self, "act_percentile", 50.0, 100.0, lo_open=True)
        _bool(self, "act_zero_point")
        if self.smooth_alpha is not None:
            _float_in(self, "smooth_alpha", 0.0, 1.0)
        _int_in(self, "act_exponent_bits", *ACT_EXPONENT_BITS)
        if self.act_format is ActFormat.BLOCK_FP and self.act_zero_point:
            _fail("QuantConfig", "act_zero_point", True, "false with act_format = 'block_fp' "
                  "(a block-FP mantissa is sign-magnitude around 0, it has no zero point)")


def _check_analog_slices(chip: Any) -> None:
    """``array.slice_readout = 'analog'`` weights every slice column by a fixed power of two in
    analog: no learned or 3^s slice weights (ternary), no per-column non-linearity (it would
    act on each physical column before the weighting, which the combined GEMM column cannot
    represent), no digital adder tree to weight."""
    bad = "'digital' (the default)"
    if chip.weight_encoding is WeightEncoding.TERNARY:
        _fail("ArrayConfig", "slice_readout", "analog", f"{bad} with weight_encoding = "
              "'ternary' (3^s or learned per-slice coefficients are digital weights)")
    if chip.noise.nonlinearity is not Nonlinearity.NONE:
        _fail("ArrayConfig", "slice_readout", "analog", f"{bad} with noise.nonlinearity = "
              f"{chip.noise.nonlinearity.value!r}; 'analog' needs nonlinearity = 'none'")
    if chip.adc.kind is ADCKind.DIGITAL:
        _fail("ArrayConfig", "slice_readout", "analog", f"{bad} with adc.kind = 'digital' "
              "(an adder tree, no analog weighting)")


def _check_layer_output(chip: Any) -> None:
    """``adc.placement = 'layer_output'`` converts an output's whole dot product once. What the
    chip alone decides is refused here, before any layer is programmed (a sweep point fails at
    its config, not after its calibration): several input planes of unsigned inputs, several
    conversion columns per output. What depends on the layer (the rows it sums, a signed
    input's planes) is the deploy-time ``MappingError``."""
    from .arrays.encoding import conversion_kinds

    if chip.n_planes > 1:
        _fail("DACConfig", "bits", chip.dac.bits,
              f"'all' (or input_bits = {chip.input_bits}) with adc.placement = 'layer_output': "
              f"one conversion per output needs every input bit in one drive, not "
              f"{chip.n_planes} planes; or adc.placement = 'partial_sum'")
    n_conv = conversion_kinds(chip).n_conversions
    if n_conv > 1:
        _fail("ADCConfig", "placement", "layer_output",
              f"'partial_sum' for a weight read as {n_conv} conversion columns per output "
              f"(weight_encoding = {chip.weight_encoding.value!r}, {chip.weight_bits}-b weights "
              f"in {chip.device.bits_per_cell}-b cells); 'layer_output' needs one: the weight "
              "in one cell, or its columns combined in analog (array.slice_readout = 'analog')")


def _check_bit_planes(chip: Any) -> None:
    """``tech.input_drive = 'bit_planes'`` accumulates every bit-plane of an input in analog
    before one conversion: numerically the whole input in one shot (``dac.bits = 'all'``),
    and an analog column to accumulate (not a digital adder tree)."""
    if chip.dac.bits is not None:
        _fail("DACConfig", "bits", chip.dac.bits, "'all' (None in Python) for "
              "tech.input_drive = 'bit_planes' "
              "(its bit-planes are accumulated in analog into one conversion per input)")
    if chip.adc.kind is ADCKind.DIGITAL:
        _fail("TechConfig", "input_drive", "bit_planes", "'amplitude', 'pulse_width' or "
              "'pulse_count' with adc.kind = 'digital' (an adder tree sums 1-b products, "
              "nothing is accumulated in analog)")


def adder_tree_bits(rows: int, input_bits: int = 1) -> int:
    """Bits of a digital adder tree's output (``adc.kind = 'digital'``) over ``rows``
    products of an ``input_bits``-bit input slice (``dac.bits``) and a stored bit, of either
    sign: the least ``adc.bits`` that holds every column sum exactly.

    A slice's magnitude is at most ``2^d - 1`` (an unsigned slice; a two's-complement top
    slice reaches ``-2^(t-1)``, ``t <= d``, and ``2^(t-1) <= 2^d - 1``), so the sums span
    ``-R (2^d - 1) .. R (2^d - 1)``: ``ceil(log2(2 R (2^d - 1) + 1))`` bits (``d = 1``:
    ``ceil(log2(2 R + 1))``)."""
    return math.ceil(math.log2(2 * rows * (2**input_bits - 1) + 1))


def _check_digital_readout(chip: Any) -> None:
    """``adc.kind = 'digital'`` sums products exactly (digital CIM): 1-b cells, each gating
    a ``dac.bits``-bit input slice (``d`` AND/NOR gates, a d-bit product: ``d = 1`` is
    bit-serial, ``d = input_bits`` the whole input at once), a full-scale readout wide
    enough for the largest column sum (``rows_per_conversion`` d-bit products of either
    sign, :func:`adder_tree_bits`), and nothing analog to add noise.

    A 1-b resistive cell (RRAM, PCM, MRAM, FeFET, flash: ``CellTech.resistive``) is sensed to
    its stored bit by a sense amplifier against a reference before the adder tree: a finite
    ``on_off_ratio`` sets the sense margin, not the sum (its off-current is not summed,
    :func:`cimsim.arrays.program.off_conductance`), a stuck cell reads its stuck bit, and
    programming variation is sensed too: a cell varied across the reference reads the other
    bit, once for all reads (:func:`cimsim.arrays.program.sensing_reference`), and the column
    sums the bits exactly. What changes from read to read or after programming is refused:
    drift, 1/f read noise and retention (a sensed bit would change between reads, which the
    programmed bits do not hold), analog noise, non-linearity and converter errors; and
    variation of a bit-cell (SRAM, eDRAM, ideal), which no reference senses."""
    if chip.device.cell not in _DIGITAL_READOUT_CELLS:
        _fail("DeviceConfig", "cell", chip.device.cell.value,
              ", ".join(repr(c.value) for c in _DIGITAL_READOUT_CELLS)
              + " for adc.kind = 'digital'")
    if chip.device.bits_per_cell != 1:
        _fail("DeviceConfig", "bits_per_cell", chip.device.bits_per_cell,
              "1 for adc.kind = 'digital' (each cell is sensed to one bit before the adder "
              "tree)")
    if chip.adc.range_policy is not RangePolicy.FULL_SCALE or chip.adc.full_scale_factor != 1:
        _fail("ADCConfig", "range_policy", chip.adc.range_policy.value,
              "'full_scale' with full_scale_factor = 1 for kind = 'digital' (an exact sum)")
    rows, d = chip.array.rows_per_group, chip.dac_bits
    need = adder_tree_bits(rows, d)
    if chip.adc.bits < need:
        slices = f" of {d}-b input slices" if d > 1 else ""
        default = ("" if chip.adc.bits != ADCConfig.__dataclass_fields__["bits"].default else
                   f"; {chip.adc.bits} is also ADCConfig's default: if the field was never "
                   f"set, a TOML or dict that leaves adc.bits out gets {need} here; a loaded "
                   "chip's adc.bits (derived from its rows where its description left them "
                   f"out) stay under replace(): give adc.bits = {need} in the same replace")
        _fail("ADCConfig", "bits", chip.adc.bits, f">= {need} for kind = 'digital' on "
              f"{rows} rows per conversion{slices} (the digital column's sum, sign "
              f"included{default})")
    # every analog error that is set, by its section and field: the first one is named
    sections = (("NoiseConfig", "noise", ("thermal_sigma_lsb", "read_noise_rel", "nonlinearity")),
                ("ADCConfig", "adc", ("gain_error", "offset_error_lsb", "comparator_noise_lsb")),
                ("DeviceConfig", "device", ("variation_sigma", "retention_sigma_lsb",
                                            "drift_nu_mean", "read_noise_q_s",
                                            "drift_compensation", "on_off_ratio")))
    for owner, attr, names in sections:
        part = getattr(chip, attr)
        for name in names:
            value = getattr(part, name)
            if name == "variation_sigma" and chip.device.cell.resistive:
                continue  # a sensed resistive cell reads its bit against a reference
            # a bit-cell that is not sensed against a reference: its off-state would be summed
            if name == "on_off_ratio" and (chip.device.cell.resistive or value == math.inf):
                continue
            if name != "on_off_ratio" and not _is_set(value):
                continue
            shown = value.value if isinstance(value, enum.Enum) else value
            _fail(owner, name, shown, "zero / 'none' (on_off_ratio: inf for SRAM, eDRAM and "
                  "ideal cells) for adc.kind = 'digital' (a digital column has no analog "
                  "error)")


#: the fields that make a chip's result differ from its noise-free quantization, by section
ERROR_FIELDS = (("noise", ("thermal_sigma_lsb", "read_noise_rel", "nonlinearity", "ir_drop_beta")),
                ("adc", ("gain_error", "offset_error_lsb", "comparator_noise_lsb")),
                ("device", ("variation_sigma", "p_stuck_on", "p_stuck_off",
                            "retention_sigma_lsb", "drift_nu_mean", "read_noise_q_s")))


def error_sources(chip: ChipConfig) -> tuple[str, ...]:
    """The ``table.field`` names of ``chip``'s analog errors that are set (noise, variation,
    stuck cells, drift, non-linearity, converter errors): none, and a layer's error against
    float is its quantization and the converters' steps and clipping alone."""
    return tuple(f"{table}.{name}" for table, names in ERROR_FIELDS for name in names
                 if _is_set(getattr(getattr(chip, table), name)))


def _is_set(value: Any) -> bool:
    """Whether a field holds something other than its "off" value: an enum other than
    'none', a sequence with a nonzero element, a nonzero number."""
    if isinstance(value, enum.Enum):
        return value.value != "none"
    if isinstance(value, (tuple, list)):
        return any(value)
    return bool(value != 0)


#: cells a digital read-out sums: bit-cells, and 1-b resistive cells sensed to their bit
_DIGITAL_READOUT_CELLS = (CellTech.SRAM, CellTech.EDRAM, CellTech.IDEAL, CellTech.MRAM,
                          CellTech.RRAM, CellTech.PCM, CellTech.FEFET, CellTech.FLASH)


def ripple_guard_columns(chip: Any) -> int:
    """Guard columns of one output in a ripple column (``tech.digital_column = 'ripple'``;
    0 otherwise): the sum of ``rows_per_conversion`` products of a q-column weight needs
    ``q + ceil(log2(rows))`` bits down the column (128 rows: 7, as in Colonnade, Kim et al.,
    IEEE JSSC 56(7), 2021, where a w-bit weight spans w + 7 columns)."""
    if chip.tech.digital_column is not DigitalColumn.RIPPLE:
        return 0
    return math.ceil(math.log2(chip.array.rows_per_group))


def _check_digital_column(chip: Any) -> None:
    """``tech.digital_column = 'ripple'`` needs a digital read-out, bit-serial inputs and one
    read-out per column; its pipeline registers cut at most one register per row; a tree
    column has no such registers."""
    tech = chip.tech
    ripple = tech.digital_column is DigitalColumn.RIPPLE
    if ripple and chip.adc.kind is not ADCKind.DIGITAL:
        _fail("TechConfig", "digital_column", tech.digital_column.value,
              f"'adder_tree' (the default) with adc.kind = {chip.adc.kind.value!r}; 'ripple' "
              "needs adc.kind = 'digital'")
    if ripple and chip.device.cell.resistive:
        _fail("TechConfig", "digital_column", tech.digital_column.value,
              f"'adder_tree' with cell = {chip.device.cell.value!r} (a ripple column's full "
              "adders sit in SRAM bit-cells; a resistive cell is sensed into an adder tree)")
    if ripple and chip.dac_bits != 1:
        # a row's full adders add its 1-b input gating the weight (one adder per bit-cell);
        # a d-bit slice times the weight is d shifted copies of it, d additions per row: a
        # multiplier in every row, not one ripple adder per cell
        _fail("DACConfig", "bits", chip.dac.bits,
              "1 for tech.digital_column = 'ripple' (each row's full adders, one per "
              "bit-cell, add the weight gated by one input bit; a d-bit slice would need d "
              "shifted additions per row), or digital_column = 'adder_tree'")
    if ripple and chip.array.cols_per_adc != 1:
        _fail("ArrayConfig", "cols_per_adc", chip.array.cols_per_adc,
              "1 for tech.digital_column = 'ripple' (every column sums in its own cells' "
              "adders: nothing to share)")
    regs = tech.pipeline_registers_per_column
    if not ripple and regs != 1:
        _fail("TechConfig", "pipeline_registers_per_column", regs,
              "1 unless digital_column = 'ripple' (an adder tree has no row-group registers)")
    if ripple and regs > chip.array.rows_per_group:
        _fail("TechConfig", "pipeline_registers_per_column", regs,
              f"1 .. {chip.array.rows_per_group} (the rows one column sums per conversion)")


def _check_binary_weights(chip: ChipConfig) -> None:
    """1-b weights are ±1 in one binary cell: ``weight_encoding = 'binary'`` only with
    ``weight_bits = 1``, and ``weight_bits = 1`` only with it or with ``'ternary'`` (one
    balanced-ternary digit, {-1, 0, +1})."""
    binary = chip.weight_encoding is WeightEncoding.BINARY
    if binary and chip.weight_bits != 1:
        _fail("ChipConfig", "weight_bits", chip.weight_bits, "1 for weight_encoding = 'binary'")
    # one balanced-ternary digit, {-1, 0, +1}, is a 1-digit weight too (a ternary weight cell)
    if chip.weight_bits == 1 and not binary and chip.weight_encoding is not WeightEncoding.TERNARY:
        _fail("ChipConfig", "weight_encoding", chip.weight_encoding.value,
              "'binary' for weight_bits = 1, or 'ternary' (one balanced-ternary digit; "
              "other encodings: weight_bits 2..16)")
    if binary and chip.device.bits_per_cell != 1:
        _one_bit_cell_fail(chip.device.bits_per_cell,
                           "1 for weight_encoding = 'binary' (one binary cell per weight)")
    if binary and chip.array.group_packing is not GroupPacking.NONE:
        # a pack's off-diagonal cells must add nothing; a ±1 cell has no 0 (they added ±1 x
        # the other groups' inputs: a packed depthwise conv off by 3 % on a lossless chip)
        _fail("ArrayConfig", "group_packing", chip.array.group_packing.value,
              "'none' for weight_encoding = 'binary' (±1 weights hold no 0 for the cells "
              "off a pack's diagonal)")


@dataclass(**_FROZEN)
class ChipConfig(_Config):
    """A whole chip: operand precisions, encodings and every component."""

    name: str = "custom"
    """Short name (the preset's file name for presets)."""
    description: str = ""
    """One line for ``cimsim presets``."""
    source: str = ""
    """Where the numbers come from (citation)."""
    weight_bits: int = 8
    """Signed weight precision B_w: 2..16, or 1 with ``weight_encoding = 'binary'`` (±1)."""
    input_bits: int = 8
    """Activation precision B_x (unsigned after ReLU; signed otherwise)."""
    weight_encoding: WeightEncoding = WeightEncoding.DIFFERENTIAL
    """How signed weights are stored (docs/hardware-model.md)."""
    differential_readout: DifferentialReadout = DifferentialReadout.ANALOG
    """``differential`` and ``ternary`` only: subtract column currents before the ADC, or convert
    both."""
    accumulator_bits: int = 32
    """Width of the digital accumulator and of partial outputs moved between tiles."""
    array: ArrayConfig = field(default_factory=ArrayConfig)
    """Arrays: rows, columns, ADC sharing, tiles and their buffers (TOML ``[array]``)."""
    device: DeviceConfig = field(default_factory=DeviceConfig)
    """Memory cells: kind, levels, conductances, variation, faults, aging (``[device]``)."""
    dac: DACConfig = field(default_factory=DACConfig)
    """Input drivers: bits per cycle, signed-input mode (``[dac]``)."""
    adc: ADCConfig = field(default_factory=ADCConfig)
    """Converters: kind, bits, range policy, placement, errors (``[adc]``)."""
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    """Conversion noise and column non-linearity (``[noise]``)."""
    tech: TechConfig = field(default_factory=TechConfig)
    """Technology and cost-model inputs: node, supply, timing, circuits (``[tech]``)."""
    quant: QuantConfig = field(default_factory=QuantConfig)
    """How float models are quantized onto the chip at deploy (``[quant]``)."""

    def __post_init__(self) -> None:
        _coerce_choices(self)
        for name in ("name", "description", "source"):
            if not isinstance(getattr(self, name), str):
                _fail("ChipConfig", name, getattr(self, name), "a string")
        _int_in(self, "weight_bits", 1, 16)
        _int_in(self, "input_bits", 1, 16)
        _int_in(self, "accumulator_bits", 8, 64)
        for name, kind in (("array", ArrayConfig), ("device", DeviceConfig), ("dac", DACConfig),
                           ("adc", ADCConfig), ("noise", NoiseConfig), ("tech", TechConfig),
                           ("quant", QuantConfig)):
            if not isinstance(getattr(self, name), kind):
                _fail("ChipConfig", name, getattr(self, name), f"a {kind.__name__}")
        if self.dac.bits is not None and self.dac.bits > self.input_bits:
            _fail("DACConfig", "bits", self.dac.bits,
                  f"<= input_bits ({self.input_bits}), or 'all' (every input bit in one "
                  "shot; None in Python)")
        _check_binary_weights(self)
        if self.weight_encoding is WeightEncoding.TERNARY and self.device.bits_per_cell != 1:
            _one_bit_cell_fail(self.device.bits_per_cell,
                               "1 for weight_encoding = 'ternary' (binary cells)")
        if self.tech.retention_ns is not None and self.device.cell is not CellTech.EDRAM:
            _fail("TechConfig", "retention_ns", self.tech.retention_ns,
                  f"absent for cell = '{self.device.cell.value}' (only 'edram' cells are "
                  "refreshed)")
        _check_devices_per_cell(self)
        if self.tech.input_drive is InputDrive.BIT_PLANES:  # before the digital read-out's
            _check_bit_planes(self)  # checks, which would name dac.bits for its own reason
        if self.adc.kind is ADCKind.DIGITAL:
            _check_digital_readout(self)
        _check_digital_column(self)
        if self.array.slice_readout is SliceReadout.ANALOG:
            _check_analog_slices(self)
        if self.adc.placement is ADCPlacement.LAYER_OUTPUT:
            _check_layer_output(self)
        if self.quant.act_zero_point and self.dac.shift_unsigned_inputs:
            # both set a zero point: the asymmetric one won and the A-shift was dropped, its
            # signed drive (costs, errors on a lossy chip) not the one asked for
            _fail("DACConfig", "shift_unsigned_inputs", True, "false with quant.act_zero_point "
                  "= true (both set the input's zero point: the A-shift drives a post-ReLU "
                  "input with signed codes, the zero point an asymmetric range; choose one)")
        if self.quant.act_format is ActFormat.BLOCK_FP and self.dac.shift_unsigned_inputs:
            _fail("DACConfig", "shift_unsigned_inputs", True, "false with quant.act_format = "
                  "'block_fp' (not modelled: the A-shift re-centres a calibrated unsigned "
                  "integer input, a block-FP mantissa is already signed)")
        _check_cell_kind(self)  # after the read-out's checks, which name the cell's own fields
        if self.tech.cost_model is CostModel.PHYSICAL:
            # the physical model settles analog columns through a switch that must conduct,
            # and a digital read-out's logic switches at its clock (at 0.1 V a 1-GHz adder
            # tree priced 1.4e4 TOPS/W): refused here, not after a simulation when the chip is
            # priced
            from .cost.settling import check_supply

            check_supply(self.tech.node_nm, self.tech.vdd_v)

    # -- derived quantities used throughout ---------------------------------------------------
    @property
    def dac_bits(self) -> int:
        """Input bits per cycle, ``dac.bits`` resolved."""
        return self.input_bits if self.dac.bits is None else self.dac.bits

    @property
    def n_planes(self) -> int:
        """Input planes P = ceil(input_bits / dac_bits) of unsigned and two's-complement inputs
        (two-pass signed inputs use 2·ceil((input_bits-1) / dac_bits);
        ``cimsim.arrays.encoding.plane_layout`` gives the exact list)."""
        return -(-self.input_bits // self.dac_bits)

    @property
    def array_slots(self) -> int:
        """Arrays' worth of weights the chip holds at once: its arrays times the weight sets
        each compute cell stores (``tech.weight_sets_stored``, one set active at a time). A
        model within it is never rewritten; beyond its arrays its layers take turns on them,
        switching sets (docs/cost-model.md, "Reloads of a time-multiplexed chip")."""
        return self.array.n_arrays * self.tech.weight_sets_stored

    def with_bits_per_cell(self, bits: int) -> ChipConfig:
        """This chip storing ``bits`` bits per cell with its physics held: the device's
        per-level tables resampled and its spreads kept in microsiemens
        (:meth:`DeviceConfig.with_bits_per_cell`), and the column quantities given in cell-LSB
        kept in current: ``noise.thermal_sigma_lsb`` and a ``fixed`` ADC range
        (``adc.fixed_lo``/``fixed_hi``) times :meth:`DeviceConfig.lsb_ratio` (one cell-LSB is
        one level step, so at more levels the same current is more of them). What a sweep over
        ``bits_per_cell`` runs (docs/sweep.md); ``replace`` of ``device.bits_per_cell`` alone
        keeps those values in cell-LSB, a smaller current at more levels."""
        device = self.device.with_bits_per_cell(bits)  # refuses a bad ``bits`` first
        ratio = self.device.lsb_ratio(bits)
        adc = self.adc
        if adc.range_policy is RangePolicy.FIXED:
            adc = adc.replace(fixed_lo=adc.fixed_lo * ratio, fixed_hi=adc.fixed_hi * ratio)
        return self.replace(device=device, adc=adc, noise=self.noise.replace(
            thermal_sigma_lsb=self.noise.thermal_sigma_lsb * ratio))

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChipConfig:
        prepared = _window_predicted_by_default(_one_bit_cells_by_default(
            _ramp_calibrated_by_default(data)))
        chip = _from_dict(cls, _digital_bits_by_default(cls, prepared), "")
        _warn_unpriced_tech(chip, data)
        return chip

    def to_toml(self) -> str:
        return _dump_toml(self.to_dict())

    def save(self, path: str | Path) -> None:
        """Write the chip as TOML, every field (defaults included): a reload gives an equal
        chip, but :func:`unstated_inputs` reads what a description leaves out from the file,
        so the saved file's list holds only the unset fields TOML cannot write (the
        description written from a paper keeps the whole list)."""
        # whole or not at all (cimsim._atomic): a full disk or a kill mid-write truncated
        # the user's chip file, which then failed to load ("invalid TOML")
        from ._atomic import write_text

        write_text(path, self.to_toml())  # UTF-8, as load_chip reads it


_CMOS_KINDS = ("sram_6t", "sram_7t", "sram_8t", "sram_10t", "edram_2t", "edram_3t")
_NVM_KINDS = ("rram_1t1r", "pcm", "mram_1t1mtj", "fefet_1t", "flash_nor")
_CELL_KINDS = {**{c: _CMOS_KINDS for c in ("sram", "edram")},
               **{c: _NVM_KINDS for c in ("rram", "pcm", "mram", "fefet", "flash")}}
"""The cell kinds the cost model may price for each simulated ``device.cell``: the same
family, CMOS bit-cells (SRAM and gain-cell eDRAM, both computed as SRAM) or non-volatile
cells (a device model of one non-volatile technology priced as another's cell is kept: the
HERMES and Le Gallo descriptions simulate RRAM-like conductances and price PCM cells); an
``ideal`` cell takes any."""


def _check_cell_kind(chip: ChipConfig) -> None:
    """A cost-model cell of another family than the simulated one (an SRAM bit-cell priced as
    a resistive cell, ...) is a slip, not a chip: refused naming both fields."""
    kind, cell = chip.tech.cell_kind, chip.device.cell.value
    allowed = _CELL_KINDS.get(cell)
    if kind is None or allowed is None or kind.value in allowed:
        return
    _fail("TechConfig", "cell_kind", kind.value,
          f"one of {', '.join(repr(k) for k in allowed)} for device.cell = {cell!r} (the "
          "simulated cell's family; 'ideal' cells take any)")


def priced_resistive(chip: ChipConfig) -> bool:
    """Whether ``chip``'s cell is a resistive one as the cost model prices it and a digital
    read-out senses it: under the physical cost model its ``tech.cell_kind`` where stated (an
    ``ideal`` cell priced as ``rram_1t1r`` is that cell to the estimator and to the read-out's
    sense amplifiers), else ``device.cell`` (the tables model reads no ``cell_kind``)."""
    kind = chip.tech.cell_kind
    if kind is not None and chip.tech.cost_model is CostModel.PHYSICAL:
        return kind.value in _NVM_KINDS
    return chip.device.cell.resistive


def _priced_cell(chip: ChipConfig) -> tuple[bool, str]:
    """Whether ``chip``'s cell is resistive as stated (``tech.cell_kind`` under either cost
    model: the checks refuse what it cannot hold), and its name."""
    kind = chip.tech.cell_kind
    resistive = (kind.value in _NVM_KINDS if kind is not None
                 else chip.device.cell.resistive)
    return resistive, (kind.value if kind is not None
                       else f"device.cell = '{chip.device.cell.value}'")


_RESISTIVE_CELLS = (f"tech.cell_kind one of {', '.join(repr(k) for k in _NVM_KINDS)}, or a "
                    "resistive device.cell")


def _check_devices_per_cell(chip: ChipConfig) -> None:
    """Devices in parallel are a resistive cell's (its conductance, read and area multiply);
    a CMOS bit-cell (SRAM, eDRAM, and an ``ideal`` cell priced as one) holds one transistor
    circuit per stored bit, so the field would be silently ignored: refused, as
    ``retention_ns`` is on a cell that is not refreshed. So is ``read_supply_v`` where no
    read current is drawn from it: a CMOS bit-cell, or a charge-domain column (its capacitors
    share charge, they conduct none)."""
    n = chip.tech.devices_per_cell
    resistive, priced = _priced_cell(chip)
    if n != 1 and not resistive:
        _fail("TechConfig", "devices_per_cell", n,
              f"1 for a CMOS bit-cell ({priced}): parallel devices are a resistive cell's "
              f"({_RESISTIVE_CELLS})")
    supply = chip.tech.read_supply_v
    if supply is not None and not resistive:
        _fail("TechConfig", "read_supply_v", supply,
              f"absent for a CMOS bit-cell ({priced}): it supplies a resistive cell's read "
              f"current ({_RESISTIVE_CELLS})")
    if supply is not None and chip.tech.compute_domain is ComputeDomain.CHARGE:
        _fail("TechConfig", "read_supply_v", supply,
              "absent for compute_domain = 'charge' (its capacitors share charge; no read "
              "current is drawn): it supplies a current-domain column's read")


# --------------------------------------------------------------------------------------------
# dict / TOML
# --------------------------------------------------------------------------------------------
# what allows one bit per cell only: a chip description that says so need not also write
# ``bits_per_cell = 1`` (DeviceConfig's default of 2 b is a multi-level NVM cell's)
_ONE_BIT_CELLS = tuple(c.value for c in (CellTech.SRAM, CellTech.EDRAM, CellTech.MRAM))
_ONE_BIT_ENCODINGS = tuple(e.value for e in (WeightEncoding.BINARY, WeightEncoding.TERNARY))


def _one_bit_cells_by_default(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` with ``device.bits_per_cell = 1`` where it is absent and the description allows
    only that: an SRAM, eDRAM or MRAM cell, binary or ternary weights, a digital read-out. A
    value written is kept (and checked as written)."""
    if not isinstance(data, Mapping):
        return data  # _from_dict names the bad table
    device = data.get("device", {})
    adc = data.get("adc", {})
    if not isinstance(device, Mapping) or "bits_per_cell" in device:
        return data
    if (device.get("cell") in _ONE_BIT_CELLS
            or data.get("weight_encoding") in _ONE_BIT_ENCODINGS
            or (isinstance(adc, Mapping) and adc.get("kind") == ADCKind.DIGITAL.value)):
        return {**data, "device": {**device, "bits_per_cell": 1}}
    return data


def _digital_bits_by_default(cls: type[ChipConfig], data: Mapping[str, Any]
                             ) -> Mapping[str, Any]:
    """``data`` with ``adc.bits`` the exact sum's width (:func:`adder_tree_bits`) where it
    writes ``adc.kind = 'digital'`` and no bits: the tree's width follows from its rows and
    input slices and prices nothing (ADCConfig's default of 8 b was refused as too narrow for
    256 rows, a value the description never wrote). A value written is kept, and checked."""
    adc = data.get("adc", {}) if isinstance(data, Mapping) else None
    if not isinstance(adc, Mapping) or adc.get("kind") != ADCKind.DIGITAL.value \
            or "bits" in adc:
        return data
    widest = _from_dict(cls, {**data, "adc": {**adc, "bits": 24}}, "")  # rows and slices
    need = adder_tree_bits(widest.array.rows_per_group, widest.dac_bits)
    return {**data, "adc": {**adc, "bits": need}}


def _ramp_calibrated_by_default(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` with ``adc.range_policy = 'calibrated'`` where it writes ``adc.kind = 'ramp'``
    and no range policy: the in-memory ramp's levels are fitted to calibration data, the only
    policy it takes (a policy written is kept, and checked as written)."""
    if not isinstance(data, Mapping):
        return data  # _from_dict names the bad table
    adc = data.get("adc", {})
    if (not isinstance(adc, Mapping) or adc.get("kind") != ADCKind.RAMP.value
            or "range_policy" in adc):
        return data
    return {**data, "adc": {**adc, "range_policy": RangePolicy.CALIBRATED.value}}


# what states a compute window: a description under the physical cost model that writes none
# of these states none, so its window is predicted (``window_stated = false``), as the
# validation table's chips that state none are (docs/validation.md), not the 10-ns default
# read pulse taken as a published cycle
_WINDOW_FIELDS = ("t_read_ns", "t_integrate_ns", "window_stated")

#: The fields whose absence from a description a default's rule reads (the compute window
#: predicted, one bit per cell, a digital tree's exact width): writing one at the value it
#: had can change the chip.
PRESENCE_READ = (*(f"tech.{f}" for f in _WINDOW_FIELDS), "device.bits_per_cell", "adc.bits")


def _window_predicted_by_default(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` with ``tech.window_stated = false`` where it is a ``physical`` cost-model
    description of an analog read-out that writes no compute window (none of
    ``_WINDOW_FIELDS``); a digital read-out's step is its clock, left as it is."""
    if not isinstance(data, Mapping):
        return data  # _from_dict names the bad table
    tech, adc = data.get("tech", {}), data.get("adc", {})
    if (not isinstance(tech, Mapping) or tech.get("cost_model") != CostModel.PHYSICAL.value
            or any(k in tech for k in _WINDOW_FIELDS)
            or (isinstance(adc, Mapping) and adc.get("kind") == ADCKind.DIGITAL.value)):
        return data
    return {**data, "tech": {**tech, "window_stated": False}}


# the architecture inputs that matter most when a description leaves them out (docs/new-chip.md
# §3): (table, field), "" the top level; the compute window is named apart (_WINDOW_FIELDS)
_KEY_INPUTS = (("tech", "node_nm"), ("tech", "vdd_v"), ("", "weight_bits"), ("", "input_bits"),
               ("array", "n_rows"), ("array", "n_cols"), ("array", "cols_per_adc"),
               ("device", "cell"), ("dac", "bits"), ("adc", "kind"), ("adc", "bits"))
_PHYSICAL_INPUTS = (("tech", "input_drive"), ("tech", "compute_domain"))
_RESISTIVE_INPUTS = (("device", "g_max_us"), ("tech", "v_read_v"))
_CHIP_INPUTS = (("array", "n_tiles"), ("array", "arrays_per_tile"), ("array", "tile_buffer_kib"))


def unstated_inputs(chip: str | Path, *, overrides: Sequence[str] | Mapping[str, Any] = (),
                    scope: str = "macro") -> tuple[str, ...]:
    """The key architecture inputs a chip description (a preset name or a ``.toml``) leaves
    to cimsim's defaults, each as ``"table.field = value"`` with the value the chip got: the
    node, supply, precisions, array, converter and cell; the compute window, the input drive
    and compute domain under the physical cost model; the read voltage and conductance of a
    resistive cell; the unit capacitor of a charge-domain column; the read pulse where the
    cells' energy is priced over it (a resistive read in the current domain, a temporal
    drive); the clock where it times the read-out (a digital
    read-out, a single-slope counter); a time-to-digital converter's architecture; with
    ``scope="chip"`` (a whole chip's figures) the tiles, arrays per tile and tile buffers.
    What ``cimsim datasheet`` names, so that an estimate says what it rests on
    (docs/new-chip.md §3).

    Raises
    ------
    ConfigError
        What :func:`load_chip` raises, or a ``scope`` other than ``"macro"`` / ``"chip"``
        (a typo was read as the macro's).
    """
    if scope not in ("macro", "chip"):
        raise ConfigError(f"unstated_inputs scope = {scope!r} is invalid; allowed: 'macro', "
                          "'chip'")
    data, where = _chip_data(chip, overrides)
    with warnings.catch_warnings():  # said by the load the caller made (datasheet: twice)
        warnings.filterwarnings("ignore", message=_UNPRICED_TECH_WARNING)
        loaded = _validated(data, where)
    # a digital read-out's adc.bits follow from its rows (the exact sum's width, derived where
    # a description leaves them out) and change no figure: not an unstated input
    wanted = [k for k in _KEY_INPUTS
              if not (k == ("adc", "bits") and loaded.adc.kind is ADCKind.DIGITAL)]
    if loaded.tech.cost_model is CostModel.PHYSICAL and loaded.adc.kind is not ADCKind.DIGITAL:
        wanted += _PHYSICAL_INPUTS  # a digital read-out has no analog drive or column sum
    charge_column = (loaded.tech.cost_model is CostModel.PHYSICAL
                     and loaded.adc.kind is not ADCKind.DIGITAL
                     and loaded.tech.compute_domain is ComputeDomain.CHARGE)
    if priced_resistive(loaded) and not charge_column:
        # a resistive read's charge is V G t; a charge-domain column conducts none (its
        # capacitors share charge), so there neither changes a figure
        wanted += _RESISTIVE_INPUTS
    if charge_column:
        # the unit capacitor sets the charge-domain column's energy, area and settling (0.1 to
        # 10 fF moved a step 20x): a default it was given without a word
        wanted.append(("tech", "cap_unit_ff"))
    if loaded.adc.kind in (ADCKind.DIGITAL, ADCKind.SINGLE_SLOPE):
        wanted.append(("tech", "clock_mhz"))
    if loaded.adc.kind is ADCKind.TDC:  # a counter or a SAR TDC: prices differ ~10x at 8 b
        wanted.append(("adc", "tdc_architecture"))
    if scope == "chip":  # a whole chip is its arrays: 64 x 16 of them by default
        wanted += _CHIP_INPUTS
    out = []
    for table, name in wanted:
        section = data if not table else data.get(table, {})
        if isinstance(section, Mapping) and name not in section:
            value = getattr(loaded if not table else getattr(loaded, table), name)
            shown = "all" if value is None and name == "bits" and table == "dac" else (
                value.value if isinstance(value, enum.Enum) else value)
            out.append(f"{table + '.' if table else ''}{name} = {shown!r}")
    tech = data.get("tech", {})
    if (loaded.adc.kind is not ADCKind.DIGITAL and isinstance(tech, Mapping)
            and not any(k in tech for k in _WINDOW_FIELDS)):
        out.append("tech.window_stated = false (the window predicted from the column's "
                   "settling)" if not loaded.tech.window_stated else
                   f"tech.t_read_ns = {loaded.tech.t_read_ns!r} (the compute window)")
    if (loaded.tech.cost_model is CostModel.PHYSICAL and loaded.adc.kind is ADCKind.DIGITAL
            and isinstance(tech, Mapping) and "t_read_ns" not in tech):
        from .cost.models import _resistive_kind, cell_kind  # cost builds on config
        if _resistive_kind(cell_kind(loaded)):
            # a sensed non-volatile cell conducts for the read pulse, re-read every input
            # plane, and the clock lasts no less: the 10-ns default set an MRAM macro's
            # figures 7.7x apart from a 1-ns pulse, named nowhere (and labelled "stated")
            out.append(f"tech.t_read_ns = {loaded.tech.t_read_ns!r} (the sensed cells' read "
                       "pulse, their energy priced over it; a clock lasts no less)")
    if (loaded.tech.cost_model is CostModel.PHYSICAL and loaded.adc.kind is not ADCKind.DIGITAL
            and isinstance(tech, Mapping) and "t_read_ns" not in tech):
        from .cost.latency import read_pulse_priced  # cost builds on config: imported here
        if read_pulse_priced(loaded):
            # resistive cells in the current domain and temporal drives are priced over the
            # read pulse, and the window lasts no less: the default pulse may set the step
            out.append(f"tech.t_read_ns = {loaded.tech.t_read_ns!r} (the read pulse the cells' "
                       "energy is priced over; the window lasts no less)")
    if (loaded.tech.cost_model is CostModel.PHYSICAL and _priced_cell(loaded)[0]
            and loaded.tech.compute_domain is ComputeDomain.CURRENT
            and isinstance(tech, Mapping) and "read_supply_v" not in tech):
        # the read charge times this supply is most of a resistive macro's energy (3x between
        # the 0.8-V supply and a rail at a 0.2-V read voltage on HERMES)
        from .cost.models import read_supply_v  # cost builds on config: imported here

        out.append(f"tech.read_supply_v = {read_supply_v(loaded)!r} (the supply the cells' "
                   "read current is drawn from: vdd_v, or v_read_v where higher)")
    return tuple(out)


# [tech] fields that only the physical cost model reads (cimsim.cost.models): under the default
# `tables` model a value written there changes no figure (each checked against datasheet())
_PHYSICAL_ONLY_TECH = ("compute_domain", "cell_kind", "devices_per_cell", "cell_area_f2",
                       "cap_unit_ff", "cap_density_ff_per_um2", "wordline_v", "wordline_high_v",
                       "read_supply_v", "wordline_cap_ff_per_cell", "wordline_driver_cap_ff",
                       "wordline_switching", "window_stated")


_UNPRICED_TECH_WARNING = r"\[tech\] .* read by the physical cost model only"


def _warn_unpriced_tech(chip: ChipConfig, data: Mapping[str, Any]) -> None:
    """A chip description that states a physical-model field with the `tables` cost model
    (the default) would have it silently ignored: say so, and how to have it priced."""
    tech = data.get("tech", {})
    if chip.tech.cost_model is not CostModel.TABLES or not isinstance(tech, Mapping):
        return
    defaults = TechConfig()
    written = [k for k in _PHYSICAL_ONLY_TECH
               if k in tech and getattr(chip.tech, k) != getattr(defaults, k)]
    if chip.tech.input_drive in (InputDrive.PULSE_WIDTH, InputDrive.PULSE_COUNT):
        written.insert(0, "input_drive")  # a temporal drive's energy is the physical model's
    if written:
        warnings.warn(f"[tech] {', '.join(written)} {'is' if len(written) == 1 else 'are'} "
                      "read by the physical cost model only; with tech.cost_model = 'tables' "
                      "(the default) no figure changes: write cost_model = 'physical' to have "
                      "them priced (docs/cost-model.md)", UserWarning, stacklevel=3)


def _to_dict(cfg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = _to_dict(value)
        elif isinstance(value, enum.Enum):
            out[f.name] = value.value
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        elif value is None and isinstance(cfg, DACConfig) and f.name == "bits":
            out[f.name] = "all"  # None is not the default here, so it must be written
        elif value is not None:  # TOML has no null: an absent key means the default None
            out[f.name] = value
    return out


def _from_dict(cls: type, data: Mapping[str, Any], where: str) -> Any:
    """``cls`` from the TOML table ``where`` (a dotted path of the file's own tables, ``""``
    for its top level: named ``[chip.array]``, a table a chip file cannot have, it sent a user
    who wrote one to ``unknown key(s) ['chip']``)."""
    table = f"[{where}]" if where else "the top level"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{table} must be a table, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name: f for f in fields(cls)}
    odd = [k for k in data if not isinstance(k, str)]
    if odd:  # sorted() and difflib failed on them with a bare TypeError
        raise ConfigError(f"{table} key {odd[0]!r} is not a field name; allowed keys: "
                          f"{sorted(names)}")
    unknown = sorted(set(data) - set(names))
    if unknown:
        # a typo's nearest field names, so that the fix is in the message
        near = [m for k in unknown for m in difflib.get_close_matches(k, names, n=1)]
        hint = f" (did you mean {', '.join(map(repr, near))}?)" if near else ""
        raise ConfigError(
            f"unknown key(s) {unknown} in {table}{hint}; allowed keys: {sorted(names)}"
        )
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        kind = hints[key]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            kwargs[key] = _from_dict(kind, value, f"{where}.{key}" if where else key)
        elif key in ("poly_coeffs", "drift_nu_mean", "drift_nu_sigma", "read_noise_q_s"):
            kwargs[key] = tuple(value) if isinstance(value, list) else value
        else:
            kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - guarded by the unknown-key check
        raise ConfigError(f"{table}: {exc}") from None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(float(value))  # np.float64's repr is not a TOML number
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        # JSON's escapes (\" \\ \b \f \n \r \t \uXXXX) are all valid in a TOML basic string;
        # JSON leaves DEL (U+007F) bare, which TOML forbids there
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")  # pragma: no cover


def _dump_toml(data: Mapping[str, Any]) -> str:
    """Write the two-level tables of a chip config (stdlib has a TOML reader only)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, Mapping)]
    for key, table in data.items():
        if isinstance(table, Mapping):
            lines.append("")
            lines.append(f"[{key}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def list_presets(published: bool = False) -> list[str]:
    """Names of the bundled chip presets; ``published=True``: the published macros described
    by their architecture (``cimsim/presets/published/``, docs/validation.md), as
    ``published/NAME``, which :func:`load_chip` accepts."""
    root = resources.files("cimsim") / "presets"
    if published:
        root = root / "published"
    prefix = "published/" if published else ""
    return sorted(prefix + p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_chip(name_or_path: str | Path, *,
              overrides: Sequence[str] | Mapping[str, Any] = ()) -> ChipConfig:
    """Load a chip: a preset name (``cimsim presets`` lists them; ``published/NAME`` for the
    published macros of docs/validation.md) or a path to a ``.toml`` file.

    ``overrides``: ``"table.field=value"`` (or ``"field=value"`` for a top-level field) set
    over the description before it is validated, the value in TOML syntax (a bare word is a
    string): ``["adc.bits=6", "array.allow_time_multiplexing=true"]``, what the command
    line's ``--set`` passes; or a mapping of the same keys to Python values
    (``{"adc.bits": 6, "array.allow_time_multiplexing": True}``). A field set so counts as
    stated (:func:`unstated_inputs`).

    Raises
    ------
    ConfigError
        Unknown preset, unreadable file, bad TOML, unknown keys or invalid values, a malformed
        override.
    """
    return _validated(*_chip_data(name_or_path, overrides))


_SET_NOTE = " (with --set {})"
"""What :func:`_overridden` appends to a description for the overrides it set."""


def _split_set_note(description: str) -> tuple[str, str | None]:
    """``description`` less the note ``load_chip(..., overrides=)`` appended to it, and the
    note's overrides as it wrote them (None without a note)."""
    head, sep, said = description.rpartition(_SET_NOTE.format("").rstrip(")"))
    return (head, said[:-1].strip()) if sep and description.endswith(")") else (description,
                                                                                   None)


def without_set_note(description: str) -> str:
    """``description`` less the note ``load_chip(..., overrides=)`` appended to it (the words
    name fields, they are none: a sweep's identity of a chip leaves them out)."""
    return _split_set_note(description)[0]


def set_overrides(description: str) -> list[str]:
    """The ``"table.field=value"`` overrides whose note ``load_chip(..., overrides=)`` appended
    to ``description`` (:data:`_SET_NOTE`), in their order; ``[]`` without one. The note joins
    them with spaces: it is cut before each ``name=`` (a value holding one, a rare string,
    gives overrides that do not rebuild the chip, which callers check)."""
    said = _split_set_note(description)[1]
    return [] if said is None else re.split(r" (?=[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?=)", said)


def _overridden(data: dict[str, Any], where: str,
                overrides: Sequence[str] | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """``data`` with each ``"table.field=value"`` of ``overrides`` set (a copy), and ``where``
    naming them for the messages."""
    if overrides is None:  # argparse's append action with no --set given
        overrides = ()
    if isinstance(overrides, str):  # one override, not its characters
        overrides = [overrides]
    if not isinstance(overrides, (Iterable, Mapping)):  # 5: "'int' object is not iterable"
        raise ConfigError(f"overrides = {overrides!r} is invalid; allowed: a list of "
                          "'table.field=value' texts or a dict of 'table.field' -> value")
    if not isinstance(overrides, Mapping):
        overrides = list(overrides)  # read once (a generator was read twice: no set note)
    flag = "--set"  # what the messages call them: the command line's flag, or Python's
    if isinstance(overrides, Mapping):
        # {"adc.bits": 5} from Python: only its keys were read (and refused as "--set")
        overrides = [_override_text(key, value) for key, value in overrides.items()]
        flag = "overrides"
    if not overrides:
        return data, where
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
    hints = get_type_hints(ChipConfig)
    tables = {f.name for f in fields(ChipConfig)
              if isinstance(hints[f.name], type) and dataclasses.is_dataclass(hints[f.name])}
    for item in overrides:
        key, eq, text = str(item).partition("=")
        key, text = key.strip(), text.strip()
        table, dot, name = key.rpartition(".") if "." in key else ("", "", key)
        if not eq or not name or (dot and table not in tables) or (not dot and name in tables):
            raise ConfigError(
                f"--set {item!r} is invalid; allowed: TABLE.FIELD=VALUE (TABLE one of "
                f"{sorted(tables)}) or a top-level FIELD=VALUE, e.g. adc.bits=6 or "
                "array.allow_time_multiplexing=true")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text  # a bare word: adc.kind=flash
        section = out.setdefault(table, {}) if table else out
        if isinstance(section, dict):  # (a table written as a value: validation names it)
            section[name] = value
    said = " ".join(str(o).strip() for o in overrides)
    if isinstance(out.get("description"), str) and not any(
            str(o).strip().startswith("description") for o in overrides):
        # the chip described is not the preset's any more: the report's title line and the
        # CLI's chip line showed "6-bit SAR" over a run with --set adc.bits=4
        out["description"] = f"{out['description']}{_SET_NOTE.format(said)}"
    return out, f"{where} with {flag} {said}"


def _override_text(key: str, value: Any) -> str:
    """``key=value`` of a mapping's override, the Python value as TOML text (``True`` ->
    ``true``, a string quoted, an enum its value)."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (np.generic, np.ndarray)):  # np.arange(3, 9)'s values in a loop
        value = value.tolist()
    if value is None:
        raise ConfigError(f"overrides {key!r} = None is invalid: an override is a chip file's "
                          "field, and TOML has no null; set None on the loaded chip with "
                          "replace(), e.g. chip.replace(adc=chip.adc.replace(...))")
    try:
        return f"{key}={_toml_value(list(value) if isinstance(value, tuple) else value)}"
    except TypeError:
        raise ConfigError(f"overrides {key!r} = {value!r} is invalid; allowed: a number, a "
                          "bool, a string, a list or an enum member") from None


def _validated(data: Mapping[str, Any], where: str) -> ChipConfig:
    """The chip a parsed description gives, its errors prefixed with where it came from."""
    try:
        return ChipConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _chip_data(name_or_path: str | Path,
               overrides: Sequence[str] | Mapping[str, Any] = ()) -> tuple[dict[str, Any], str]:
    """The parsed TOML of a preset or a ``.toml`` file with ``overrides`` set
    (:func:`_overridden`), and where it came from (for messages): what :func:`load_chip`
    validates."""
    text: str
    if not isinstance(name_or_path, (str, Path)):  # os.fspath's TypeError named nothing
        if isinstance(name_or_path, ChipConfig):  # (its repr is several KB)
            raise ConfigError("chip = a ChipConfig is invalid here; allowed: a preset name "
                              "(`cimsim presets`) or a .toml path (this function reads a "
                              "description; cimsim.deploy, matmul and datasheet also take a "
                              "ChipConfig)")
        raise ConfigError(f"chip = {name_or_path!r} is invalid; allowed: a preset name "
                          "(`cimsim presets`), a .toml path or a ChipConfig where one is taken")
    if not str(name_or_path).strip():  # Path('') is '.', an existing folder
        raise ConfigError("chip name is empty; allowed: a preset name (`cimsim presets`) or a "
                          ".toml file")
    path = Path(name_or_path)
    names = list_presets()
    every = names + list_presets(published=True)
    # a preset's name wins over a folder or a file of that name in the working folder
    # (`cimsim demo --chip rram-22nm --out rram-22nm` ran once, then its own output folder hid
    # the preset; a log file named rram-22nm was read as an invalid TOML); such a file is
    # still read as ./rram-22nm
    preset = str(name_or_path) in every
    if path.suffix.lower() == ".toml" or (path.exists() and not preset):  # my.TOML: a file
        if path.is_dir():  # '' and '.' too: not "not found" for a folder that is there
            raise ConfigError(f"chip {str(name_or_path)!r} is a folder; allowed: a preset name "
                              "(`cimsim presets`) or a .toml file")
        if not path.is_file():
            raise ConfigError(f"chip file {str(path)!r} not found")
        try:
            text = path.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) is no TOML
        except UnicodeDecodeError as exc:
            raise ConfigError(f"chip file {str(path)!r} is not UTF-8 text (TOML is UTF-8): "
                              f"{exc.reason} at byte {exc.start}") from None
        where = str(path)
    else:
        if str(name_or_path) not in every:
            if isinstance(name_or_path, Path) or path.suffix or (
                    "/" in str(name_or_path) and not str(name_or_path).startswith("published/")):
                # meant as a file (a Path, a suffix, a folder): "unknown preset" misled
                toml = path.with_suffix(".toml")
                hint = f" (did you mean {str(toml)!r}?)" if toml.is_file() else ""
                raise ConfigError(f"chip file {str(path)!r} not found{hint}; allowed: a .toml "
                                  "file, or a preset name (`cimsim presets`)")
            # a typo's nearest name, as an unknown key gets (rram-22mn), a published macro's
            # named without its folder too (diana-jssc23, chiu-jssc2): with only the full names
            # to match, those were pointed at jia-jssc20, another chip
            # (a bundled preset that shares a published macro's name is meant by it)
            bare = {b: p for p in every if "/" in p and (b := p.rpartition("/")[2]) not in names}
            near = [bare.get(m, m) for m in difflib.get_close_matches(
                str(name_or_path), [*every, *bare], n=1)]
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"unknown chip preset {str(name_or_path)!r}{hint}; presets: "
                              f"{names}; published macros: published/NAME (`cimsim presets`)")
        # UTF-8 whatever the locale (several presets cite a '§': LC_ALL=C failed to load them)
        text = (resources.files("cimsim") / "presets"
                / f"{name_or_path}.toml").read_text(encoding="utf-8")
        where = f"preset {name_or_path}"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    if not data:
        # an empty file would silently be the default chip, which is no chip anyone described
        raise ConfigError(f"{where}: defines no field; a chip file gives at least its name and "
                          "the sections that differ from the defaults (see `cimsim presets` "
                          "and cimsim/presets/*.toml)")
    return _overridden(data, where, overrides)


def as_chip(chip: ChipConfig | str | Path) -> ChipConfig:
    """``chip`` itself, or the preset or ``.toml`` it names (:func:`load_chip`): every entry
    point (``matmul``, ``deploy``, ``prepare`` and the methods' ``prepare_*``, ``run_sweep``,
    ``estimate``, ``datasheet``) takes either, as the command line does.

    Raises
    ------
    ConfigError
        Not a chip, a name or a path; or what :func:`load_chip` raises.
    """
    if isinstance(chip, ChipConfig):
        return chip
    if isinstance(chip, (str, Path)):
        return load_chip(chip)
    raise ConfigError(f"chip = {type(chip).__name__} object is invalid; allowed: a ChipConfig "
                      "(cimsim.load_chip), a preset name (`cimsim presets`) or a .toml path")


def _named_state(self: Any) -> dict[str, Any]:
    """A config's pickle state by field name (a dataclass with slots pickles its fields by
    position: a field added in the middle of a class shifted every later one of a model saved
    before, ``adc.placement`` read as ``True``)."""
    return {f.name: getattr(self, f.name) for f in fields(self)}


def _set_named_state(self: Any, state: Any) -> None:
    """A config from its pickle state: by name, or by position (a pickle from before states
    were named); a field the state lacks (added since) takes its default."""
    names = [f.name for f in fields(self)]
    values = state if isinstance(state, dict) else dict(zip(names, state, strict=False))
    for f in fields(self):
        if f.name in values:
            value = values[f.name]
        elif f.default is not dataclasses.MISSING:
            value = f.default
        else:
            value = f.default_factory()  # type: ignore[misc,operator]
        object.__setattr__(self, f.name, value)


def _name_pickle_states(cls: type) -> None:
    sub: type
    for sub in cls.__subclasses__():
        setattr(sub, "__getstate__", _named_state)  # noqa: B010 - dataclass set its own
        setattr(sub, "__setstate__", _set_named_state)  # noqa: B010
        _name_pickle_states(sub)


_name_pickle_states(_Config)
