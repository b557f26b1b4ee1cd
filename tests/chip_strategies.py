"""Hypothesis strategies of chip configs a user may write: every valid combination the
validator accepts (:func:`valid_chips`) and single broken fields (:func:`invalid_changes`).

The choices come from the config's own enums (``list(ADCKind)``, ...), so a value added to an
enum is drawn without touching this file; the cross-field rules mirror ``cimsim.config``
(``_check_digital_readout``, ``_check_analog_slices``, ``_check_binary_weights`` and the
per-section ``__post_init__``). A drawn chip that the validator refuses is a failure of the
strategy or of the validator: :func:`valid_chips` builds the ``ChipConfig`` itself, so the test
that draws it fails naming the field.
"""

from __future__ import annotations

import enum
import math
import warnings
from typing import Any, get_type_hints

from hypothesis import reject
from hypothesis import strategies as st

from cimsim.config import (
    _CELL_KINDS,
    _NVM_KINDS,
    ACT_EXPONENT_BITS,
    ActCalibration,
    ActFormat,
    ADCBand,
    ADCKind,
    ADCPlacement,
    CalibrationGranularity,
    CalibrationMode,
    CalibrationStat,
    CellKind,
    CellTech,
    ChipConfig,
    ComputeDomain,
    CostModel,
    DifferentialReadout,
    DriftCompensation,
    GroupPacking,
    InputDrive,
    LevelFit,
    Nonlinearity,
    OffCurrentCompensation,
    PowerGating,
    RangePolicy,
    SignedInputMode,
    SliceReadout,
    TDCArchitecture,
    VariationKind,
    WeightEncoding,
    WeightGranularity,
    WeightScale,
    WordlineSwitching,
    adder_tree_bits,
)
from cimsim.config import _DIGITAL_READOUT_CELLS as DIGITAL_READOUT_CELLS
from cimsim.errors import ConfigError

SIZES = (1, 2, 3, 7, 8, 16, 17, 23, 31, 64, 100, 128, 256, 512, 1024)
"""Array rows and columns drawn (small to 1024): powers of two and odd sizes."""


def _f(lo: float, hi: float) -> st.SearchStrategy[float]:
    """A finite float in [lo, hi], log-uniform-ish through hypothesis' own float shrinking."""
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


@st.composite
def valid_chips(draw: st.DrawFn, max_size: int = 1024,
                cost_models: tuple[CostModel, ...] = tuple(CostModel),
                wide: bool = False) -> ChipConfig:
    """A chip config the validator accepts, spanning the schema.

    ``max_size`` bounds the array's rows and columns (the default test run keeps it small so
    that the standard workload's simulation stays fast). ``wide``: precisions, converter bits,
    accumulators, supplies and times over the validator's whole range (16-b operands, 24-b
    converters, 8-b accumulators, 5 V), not only the published chips' range."""
    max_bits = 16 if wide else 8
    sizes = [s for s in SIZES if s <= max_size]
    kind = draw(st.sampled_from(list(ADCKind)), label="adc.kind")
    digital = kind is ADCKind.DIGITAL
    encoding = draw(st.sampled_from(list(WeightEncoding)), label="weight_encoding")
    binary = encoding is WeightEncoding.BINARY
    one_bit_cells = binary or encoding is WeightEncoding.TERNARY or digital
    # a digital read-out sums bit-cells, or 1-b resistive cells sensed to their bit
    cells = list(DIGITAL_READOUT_CELLS) if digital else list(CellTech)
    cell = draw(st.sampled_from(cells), label="device.cell")
    if one_bit_cells or cell in (CellTech.SRAM, CellTech.EDRAM, CellTech.MRAM):
        bits_per_cell = 1
    else:
        bits_per_cell = draw(st.integers(1, 4), label="bits_per_cell")
    weight_bits = 1 if binary else draw(st.integers(2, max_bits), label="weight_bits")
    input_bits = draw(st.integers(1, max_bits), label="input_bits")
    dac_bits = None if digital else draw(_maybe(st.integers(1, input_bits)), label="dac.bits")

    n_rows = draw(st.sampled_from(sizes), label="n_rows")
    n_cols = draw(st.sampled_from(sizes), label="n_cols")
    rpc = draw(_maybe(st.integers(1, n_rows)), label="rows_per_conversion")
    rows = n_rows if rpc is None else rpc
    slice_ok = not digital and encoding is not WeightEncoding.TERNARY
    slice_readout = draw(st.sampled_from(list(SliceReadout) if slice_ok
                                         else [SliceReadout.DIGITAL]), label="slice_readout")
    analog_slices = slice_readout is SliceReadout.ANALOG
    # a digital column of ripple adders in the bit-cells: one read-out per column
    # (in the bit-cells: not over resistive cells, each sensed into an adder tree)
    ripple = digital and not cell.resistive and draw(st.booleans(), label="ripple")
    if digital:  # d-bit input slices on an adder tree; a ripple column is bit-serial
        dac_bits = 1 if ripple else draw(_maybe(st.integers(1, input_bits)), label="dac.bits")
    array = dict(
        n_rows=n_rows, n_cols=n_cols, rows_per_conversion=rpc,
        cols_per_adc=1 if ripple else draw(st.integers(1, n_cols), label="cols_per_adc"),
        n_tiles=draw(st.integers(1, 64)), arrays_per_tile=draw(st.integers(1, 16)),
        allow_time_multiplexing=draw(st.booleans()),
        kernel_preserving_tiling=draw(st.booleans()), slice_readout=slice_readout,
        # ±1 weights hold no 0 for a pack's off-diagonal cells (refused, named below)
        group_packing=(GroupPacking.NONE if encoding is WeightEncoding.BINARY else draw(
            st.sampled_from(list(GroupPacking)), label="group_packing")))

    clean = digital
    device: dict[str, Any] = dict(cell=cell, bits_per_cell=bits_per_cell,
                                  g_max_us=draw(_f(0.01, 500.0)))
    if digital and cell.resistive:
        # sensed against a reference: the off-state, programming variation and stuck cells
        # set which bit is read, nothing that changes from read to read (_check_digital_readout)
        device["on_off_ratio"] = draw(st.one_of(st.just(math.inf), _f(1.5, 1e6)))
        variation = draw(st.sampled_from(list(VariationKind)), label="sensed variation")
        device["variation"] = variation
        if variation is not VariationKind.NONE:
            device["variation_sigma"] = draw(_f(0.0, 0.5))
        device["p_stuck_on"] = draw(st.sampled_from([0.0, 0.01]))
        device["p_stuck_off"] = draw(st.sampled_from([0.0, 0.01]))
    if not clean:
        device["on_off_ratio"] = draw(st.one_of(st.just(math.inf), _f(1.5, 1e6)))
        device["off_current_compensation"] = draw(st.sampled_from(list(OffCurrentCompensation)))
        variation = draw(st.sampled_from(list(VariationKind)))
        device["variation"] = variation
        if variation is not VariationKind.NONE:
            device["variation_sigma"] = draw(_f(0.0, 0.5))
        device["p_stuck_on"] = draw(st.sampled_from([0.0, 0.01]))
        device["p_stuck_off"] = draw(st.sampled_from([0.0, 0.01]))
        # a device that ages (docs/drift.md); SRAM and eDRAM bit-cells do not
        if cell not in (CellTech.SRAM, CellTech.EDRAM) and draw(st.booleans()):
            n_levels = 1 << bits_per_cell
            per_level = st.sampled_from([1, n_levels])
            device["drift_nu_mean"] = [draw(_f(0.001, 0.1))] * draw(per_level)
            device["drift_nu_sigma"] = [draw(_f(0.0, 0.05))] * draw(per_level)
            device["read_noise_q_s"] = draw(st.sampled_from([[], [0.01]]))
            device["retention_sigma_lsb"] = draw(st.sampled_from([0.0, 0.2]))
            device["drift_t0_s"] = draw(_f(0.1, 100.0))
            device["drift_compensation"] = draw(st.sampled_from(list(DriftCompensation)))

    signed = draw(st.sampled_from(list(SignedInputMode)), label="signed_inputs")
    # block floating-point inputs (a shared exponent per row tile) carry signed mantissas: no
    # zero point and no A-shift of an unsigned integer input (QuantConfig, ChipConfig)
    act_format = draw(st.sampled_from(list(ActFormat)), label="quant.act_format")
    block_fp = act_format is ActFormat.BLOCK_FP
    dac = dict(bits="all" if dac_bits is None else dac_bits, signed_inputs=signed,
               shift_unsigned_inputs=(signed is SignedInputMode.TWOS_COMPLEMENT
                                      and not block_fp and draw(st.booleans())))

    if digital:
        d = input_bits if dac_bits is None else dac_bits
        need = adder_tree_bits(rows, d)
        if need > 24:  # sums wider than any converter field holds: no such chip
            reject()
        adc_bits = draw(st.integers(need, min(24, need + 4)), label="adc.bits")
        policy = RangePolicy.FULL_SCALE
    else:
        top = 16 if kind is ADCKind.RAMP else 24  # a ramp's levels are fitted: <= 16 b
        adc_bits = draw(st.integers(1, top if wide else 10), label="adc.bits")
        policies = [RangePolicy.CALIBRATED] if kind is ADCKind.RAMP else list(RangePolicy)
        policy = draw(st.sampled_from(policies), label="range_policy")
    adc: dict[str, Any] = dict(kind=kind, bits=adc_bits, range_policy=policy,
                               # layer-output converters fit few chips: drawn 1 time in 4
                               placement=draw(st.sampled_from(
                                   [ADCPlacement.PARTIAL_SUM] * 3 + list(ADCPlacement)[1:])),
                               zero_aligned=draw(st.booleans()))
    if policy is RangePolicy.FULL_SCALE and not digital:
        adc["full_scale_factor"] = draw(_f(1.0, 8.0))
    if policy is RangePolicy.FIXED:
        lo = draw(_f(-1000.0, 1000.0))
        adc.update(fixed_lo=lo, fixed_hi=lo + draw(_f(0.5, 4000.0)))
    if policy is RangePolicy.CALIBRATED:
        adc.update(calibration_granularity=draw(st.sampled_from(list(CalibrationGranularity))),
                   calibration_stat=draw(st.sampled_from(list(CalibrationStat))),
                   calibration_mode=draw(st.sampled_from(list(CalibrationMode))),
                   calibration_margin=draw(st.sampled_from([0.0, 0.1])),
                   percentile=draw(_f(90.0, 100.0)), n_sigma=draw(_f(0.5, 6.0)),
                   fuse_activation=draw(st.booleans()))
    if kind is ADCKind.RAMP:
        adc["level_fit"] = draw(st.sampled_from(list(LevelFit)), label="level_fit")
    if kind is ADCKind.TDC:
        adc["tdc_architecture"] = draw(st.sampled_from(list(TDCArchitecture)),
                                       label="tdc_architecture")
    if not clean:
        adc["gain_error"] = draw(st.sampled_from([0.0, 0.02]))
        adc["comparator_noise_lsb"] = draw(st.sampled_from([0.0, 0.3]))
        adc["offset_error_lsb"] = draw(st.sampled_from([0.0, -0.4]))

    noise: dict[str, Any] = {}
    if not clean:
        noise["thermal_sigma_lsb"] = draw(st.sampled_from([0.0, 0.5]))
        noise["read_noise_rel"] = draw(st.sampled_from([0.0, 0.01]))
        if not analog_slices:
            noise["nonlinearity"] = draw(st.sampled_from(list(Nonlinearity)))
            noise["poly_coeffs"] = draw(st.lists(_f(-0.2, 0.2), max_size=6))
            noise["saturation_fraction"] = draw(_f(0.05, 2.0))
            noise["ir_drop_beta"] = draw(_f(0.0, 2.0))

    # bit-plane accumulation is the one-shot input (dac.bits = 'all') on an analog column
    drives = [d for d in InputDrive if d is not InputDrive.BIT_PLANES
              or (dac_bits is None and not digital)]
    cost_model = draw(st.sampled_from(list(cost_models)), label="cost_model")
    # the physical model's analog columns need a supply above the device threshold (<= 0.21 V
    # at every node, cimsim.cost.settling.check_supply)
    settles = cost_model is CostModel.PHYSICAL and not digital
    tech: dict[str, Any] = dict(
        node_nm=draw(_f(3.0, 180.0), label="node_nm"),
        vdd_v=(vdd := draw(_f(0.25 if settles else 0.01, 5.0) if wide else _f(0.3, 1.8),
                           label="vdd_v")),
        v_read_v=draw(_f(0.001 if wide else 0.02, 5.0 if wide else 1.5)),
        t_read_ns=draw(_f(1e-4 if wide else 0.05, 1e6 if wide else 5000.0)),
        clock_mhz=draw(_f(0.01 if wide else 5.0, 1e5 if wide else 5000.0)),
        adc_band=draw(st.sampled_from(list(ADCBand))),
        cost_model=cost_model,
        input_drive=draw(st.sampled_from(drives), label="input_drive"),
        compute_domain=draw(st.sampled_from(list(ComputeDomain)), label="compute_domain"),
        # a cost-model cell of the simulated cell's family (an 'ideal' cell takes any)
        cell_kind=(kind := draw(_maybe(st.sampled_from(
            [k for k in CellKind if cell.value not in _CELL_KINDS
             or k.value in _CELL_KINDS[cell.value]])), label="cell_kind")),
        # parallel devices: a resistive priced cell's only (a CMOS bit-cell refuses them)
        devices_per_cell=(draw(st.integers(1, 4)) if (kind.value in _NVM_KINDS if kind
                                                      else cell.resistive) else 1),
        weight_sets_stored=draw(st.sampled_from([1, 2, 8])),
        cell_area_f2=draw(_maybe(_f(4.0, 2000.0))),
        # eDRAM cells only: 1 ns .. 1000 s (wide) or 1 us .. 1 s
        retention_ns=(draw(_maybe(_f(1.0, 1e12) if wide else _f(1e3, 1e9)),
                           label="retention_ns") if cell is CellTech.EDRAM else None),
        cap_unit_ff=draw(_f(0.05, 20.0)),
        cap_density_ff_per_um2=draw(st.one_of(st.just(0.0), _f(0.5, 50.0))),
        wordline_v=(swing := draw(_maybe(_f(0.3, 3.0)))),
        # a driver's supply at or above the swing it drives (the config refuses less)
        wordline_high_v=draw(_maybe(_f(vdd if swing is None else swing, 5.0))),
        wordline_cap_ff_per_cell=draw(_maybe(_f(0.01, 5.0))),
        wordline_driver_cap_ff=draw(st.one_of(st.just(0.0), _f(1.0, 2000.0))),
        wordline_switching=draw(st.sampled_from(list(WordlineSwitching))),
        # an integration window given is a stated one (the config refuses it unstated)
        window_stated=(stated := draw(st.booleans(), label="window_stated")),
        t_integrate_ns=draw(_maybe(_f(0.05, 5000.0))) if stated else None,
        power_gating=draw(st.sampled_from(list(PowerGating))),
        digital_column="ripple" if ripple else "adder_tree",
        pipeline_registers_per_column=draw(st.integers(1, rows)) if ripple else 1,
    )
    written = dict(
        name=draw(st.text(min_size=1, max_size=12)), description=draw(st.text(max_size=20)),
        weight_bits=weight_bits, input_bits=input_bits, weight_encoding=encoding,
        differential_readout=draw(st.sampled_from(list(DifferentialReadout))),
        accumulator_bits=draw(st.integers(8 if wide else 32, 64)),
        array=array, device=device, dac=dac, adc=adc, noise=noise, tech=tech,
        quant=dict(weight_granularity=draw(st.sampled_from(list(WeightGranularity))),
                   act_calibration=draw(st.sampled_from(list(ActCalibration))),
                   act_percentile=draw(_f(99.0, 100.0)),
                   # the A-shift sets the zero point itself: not both (ChipConfig)
                   act_zero_point=(not block_fp and not dac["shift_unsigned_inputs"]
                                   and draw(st.booleans())),
                   smooth_alpha=draw(_maybe(_f(0.0, 1.0))), act_format=act_format,
                   act_exponent_bits=draw(st.integers(*ACT_EXPONENT_BITS)),
                   weight_scale=draw(st.sampled_from(list(WeightScale)),
                                     label="quant.weight_scale")))
    try:
        return _built(written)
    except ConfigError as error:
        # a layer-output converter needs one input plane and one conversion column per output,
        # which the config refuses otherwise: such a draw keeps its partial-sum converters
        if adc["placement"] is ADCPlacement.PARTIAL_SUM or "layer_output" not in str(error):
            raise
    adc["placement"] = ADCPlacement.PARTIAL_SUM
    return _built(written)


_SECTIONS = ("array", "device", "dac", "adc", "noise", "tech", "quant")

Change = tuple[tuple[tuple[str, str, Any], ...], str]
"""``((section, field, value), ...), named``: the fields to set ('' for a top-level field) and
the field the error must name."""

_OUT_OF_RANGE: tuple[tuple[str, str, Any], ...] = (
    ("array", "n_rows", 0), ("array", "n_cols", -3), ("array", "cols_per_adc", 0),
    ("array", "n_tiles", 0), ("array", "arrays_per_tile", -1), ("array", "n_rows", "many"),
    ("array", "tile_buffer_kib", 0.0),
    ("device", "bits_per_cell", 0), ("device", "g_max_us", 0.0), ("device", "g_max_us", -5.0),
    ("device", "on_off_ratio", 0.5), ("device", "p_stuck_on", 1.5),
    ("dac", "bits", 0), ("dac", "bits", -2), ("dac", "bits", "some"),
    ("adc", "bits", 0), ("adc", "bits", 25), ("adc", "bits", 3.5),
    ("adc", "full_scale_factor", 0.5), ("adc", "percentile", 20.0),
    ("noise", "thermal_sigma_lsb", -0.1), ("noise", "poly_coeffs", [True]),
    ("dac", "bits", "ALL"),
    ("", "weight_bits", 0), ("", "input_bits", 0), ("", "input_bits", 17),
    ("", "accumulator_bits", 4),
    ("tech", "node_nm", 2.0), ("tech", "node_nm", 181.0), ("tech", "node_nm", -7.0),
    ("tech", "node_nm", math.inf), ("tech", "vdd_v", 0.0), ("tech", "vdd_v", -0.8),
    ("tech", "v_read_v", 0.0), ("tech", "t_read_ns", 0.0), ("tech", "clock_mhz", -1.0),
    ("tech", "devices_per_cell", 0), ("tech", "weight_sets_stored", 0),
    ("tech", "pipeline_registers_per_column", 0),
    ("tech", "cell_area_f2", 0.0), ("tech", "cap_unit_ff", 0.0),
    ("tech", "cap_density_ff_per_um2", -1.0), ("tech", "wordline_v", 0.0),
    ("tech", "wordline_cap_ff_per_cell", 0.0), ("tech", "t_integrate_ns", 0.0),
    # found by fuzzing the validator's ranges: values it took whose figures underflow to 0,
    # overflow to inf or divide by zero
    ("tech", "t_read_ns", 5e-324), ("tech", "t_read_ns", 1e12), ("tech", "clock_mhz", 1e-300),
    ("tech", "cap_density_ff_per_um2", 5e-324), ("device", "g_max_us", 1e300),
    ("tech", "window_stated", "yes"), ("tech", "cell_kind", "sram_12t"),
    # wrong units (tests/test_newcomer_chips.py): farads and siemens in fF and uS fields
    ("tech", "cap_unit_ff", 1e-15), ("tech", "wordline_cap_ff_per_cell", 2e-15),
    ("tech", "wordline_driver_cap_ff", 48e-15), ("device", "g_max_us", 25e-6),
    # eDRAM retention: 0, seconds written as us (40 us as 40e-6), beyond 1000 s
    ("tech", "retention_ns", 0.0), ("tech", "retention_ns", 4e-5), ("tech", "retention_ns", 1e13),
)

_INCOMPATIBLE: tuple[Change, ...] = (
    ((("device", "cell", "sram"), ("device", "bits_per_cell", 2)), "bits_per_cell"),
    ((("device", "cell", "mram"), ("device", "bits_per_cell", 3)), "bits_per_cell"),
    ((("device", "cell", "edram"), ("device", "bits_per_cell", 2)), "bits_per_cell"),
    ((("device", "cell", "rram"), ("tech", "retention_ns", 40e3)), "retention_ns"),
    ((("adc", "kind", "ramp"), ("adc", "range_policy", "full_scale")), "range_policy"),
    # found by the datasheet property: 17..24-b ramps passed the validator and failed in the
    # level fit with a message naming no field
    ((("adc", "kind", "ramp"), ("adc", "range_policy", "calibrated"), ("adc", "bits", 17)),
     "ADCConfig.bits"),
    ((("", "weight_bits", 1), ("", "weight_encoding", "differential")), "weight_encoding"),
    ((("", "weight_encoding", "binary"), ("", "weight_bits", 4)), "weight_bits"),
    # found by the model property hunt of 2026-12-02: a packed depthwise conv's off-diagonal
    # cells held ±1, not 0, on a binary chip (3 % off on a lossless one)
    ((("", "weight_encoding", "binary"), ("", "weight_bits", 1), ("device", "bits_per_cell", 1),
      ("array", "group_packing", "diagonal")), "group_packing"),
    ((("", "input_bits", 2), ("dac", "bits", 4)), "bits"),
    # a digital read-out takes d-bit input slices, at most the input's bits
    ((("", "input_bits", 2), ("dac", "bits", 4), ("adc", "kind", "digital")), "DACConfig.bits"),
    ((("tech", "input_drive", "bit_planes"), ("dac", "bits", 1)), "DACConfig.bits"),
    ((("tech", "input_drive", "bit_planes"), ("dac", "bits", "all"), ("adc", "kind", "digital")),
     "input_drive"),
    ((("array", "n_cols", 4), ("array", "cols_per_adc", 8)), "cols_per_adc"),
    ((("array", "n_rows", 8), ("array", "rows_per_conversion", 16)), "rows_per_conversion"),
    ((("tech", "digital_column", "ripple"), ("adc", "kind", "sar")), "digital_column"),
    ((("tech", "pipeline_registers_per_column", 2), ("tech", "digital_column", "adder_tree")),
     "pipeline_registers_per_column"),
    ((("array", "slice_readout", "analog"), ("", "weight_encoding", "ternary"),
      ("", "weight_bits", 4), ("device", "bits_per_cell", 1)), "slice_readout"),
    ((("dac", "shift_unsigned_inputs", True), ("dac", "signed_inputs", "two_pass")),
     "signed_inputs"),
    ((("dac", "shift_unsigned_inputs", True), ("dac", "signed_inputs", "twos_complement"),
      ("quant", "act_zero_point", True), ("quant", "act_format", "int")),
     "shift_unsigned_inputs"),
    ((("device", "variation", "none"), ("device", "variation_sigma", 0.2)), "variation_sigma"),
    ((("adc", "range_policy", "fixed"), ("adc", "fixed_lo", 3.0), ("adc", "fixed_hi", 1.0)),
     "fixed_hi"),
)


def enum_fields() -> dict[tuple[str, str], type[enum.Enum]]:
    """The choice fields of the chip, ``(section, field) -> Enum`` ('' for a top-level field),
    from the dataclasses themselves."""
    hints = get_type_hints(ChipConfig)
    out = {}
    for section, kind in [("", ChipConfig)] + [(s, hints[s]) for s in _SECTIONS]:
        for name, hint in get_type_hints(kind).items():
            if isinstance(hint, type) and issubclass(hint, enum.Enum):
                out[section, name] = hint
    return out


@st.composite
def invalid_changes(draw: st.DrawFn) -> Change:
    """One broken field (a wrong choice, a zero, negative or out-of-range quantity, a wrong
    type) or an incompatible combination, with the field its error must name."""
    enums = [(((s, n, "not_a_" + n),), n) for s, n in enum_fields()]
    singles = [(((s, n, v),), n) for s, n, v in _OUT_OF_RANGE]
    return draw(st.sampled_from(enums + singles + list(_INCOMPATIBLE)))


# ---------------------------------------------------------------------------------------------
# Free draws: every field on its own, whatever the others are
# ---------------------------------------------------------------------------------------------
_FREE_SIZES = st.integers(1, 40)
"""Rows and columns of a free draw: every small size, odd ones included (17 x 23)."""

_FREE: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("", "weight_bits"): st.integers(1, 9), ("", "input_bits"): st.integers(1, 9),
    ("", "accumulator_bits"): st.integers(8, 64),
    ("array", "rows_per_conversion"): _maybe(st.integers(1, 8)),
    ("array", "cols_per_adc"): st.integers(1, 4), ("array", "n_tiles"): st.integers(1, 8),
    ("array", "arrays_per_tile"): st.integers(1, 8),
    ("device", "bits_per_cell"): st.integers(1, 4), ("device", "g_max_us"): _f(0.01, 500.0),
    ("device", "on_off_ratio"): st.one_of(st.just(math.inf), _f(1.5, 1e5)),
    ("device", "variation_sigma"): st.one_of(st.just(0.0), _f(0.0, 0.3)),
    ("device", "p_stuck_on"): st.sampled_from([0.0, 0.02]),
    ("device", "p_stuck_off"): st.sampled_from([0.0, 0.02]),
    ("device", "drift_t0_s"): _f(0.1, 100.0),
    ("device", "drift_nu_mean"): st.lists(_f(0.0, 0.1), min_size=1, max_size=1),
    ("device", "drift_nu_sigma"): st.lists(_f(0.0, 0.05), min_size=1, max_size=1),
    ("device", "read_noise_q_s"): st.lists(_f(0.0, 0.05), max_size=1),
    ("device", "retention_sigma_lsb"): st.sampled_from([0.0, 0.2]),
    ("dac", "bits"): st.one_of(st.just("all"), st.integers(1, 9)),
    ("adc", "bits"): st.integers(1, 12), ("adc", "full_scale_factor"): _f(1.0, 4.0),
    ("adc", "fixed_lo"): _f(-300.0, 300.0), ("adc", "fixed_hi"): _f(-100.0, 2000.0),
    ("adc", "percentile"): _f(90.0, 100.0), ("adc", "n_sigma"): _f(0.5, 6.0),
    ("adc", "calibration_margin"): st.sampled_from([0.0, 0.1]),
    ("adc", "gain_error"): st.sampled_from([0.0, 0.02]),
    ("adc", "offset_error_lsb"): st.sampled_from([0.0, -0.4]),
    ("adc", "comparator_noise_lsb"): st.sampled_from([0.0, 0.3]),
    ("noise", "thermal_sigma_lsb"): st.sampled_from([0.0, 0.5]),
    ("noise", "read_noise_rel"): st.sampled_from([0.0, 0.01]),
    ("noise", "saturation_fraction"): _f(0.05, 2.0),
    ("noise", "poly_coeffs"): st.lists(_f(-0.2, 0.2), max_size=4),
    ("noise", "ir_drop_beta"): _f(0.0, 2.0),
    ("tech", "node_nm"): _f(3.0, 180.0), ("tech", "vdd_v"): _f(0.1, 1.8),
    ("tech", "v_read_v"): _f(0.02, 1.5), ("tech", "t_read_ns"): _f(0.05, 5000.0),
    ("tech", "clock_mhz"): _f(5.0, 5000.0), ("tech", "devices_per_cell"): st.integers(1, 4),
    ("tech", "weight_sets_stored"): st.sampled_from([1, 2, 8]),
    ("tech", "cell_area_f2"): _maybe(_f(4.0, 2000.0)), ("tech", "cap_unit_ff"): _f(0.05, 20.0),
    ("tech", "retention_ns"): _maybe(_f(1e3, 1e9)),
    ("tech", "cap_density_ff_per_um2"): st.one_of(st.just(0.0), _f(0.5, 50.0)),
    ("tech", "wordline_v"): _maybe(_f(0.3, 3.0)),
    ("tech", "wordline_high_v"): _maybe(_f(0.3, 3.0)),
    ("tech", "wordline_cap_ff_per_cell"): _maybe(_f(0.01, 5.0)),
    ("tech", "wordline_driver_cap_ff"): st.one_of(st.just(0.0), _f(1.0, 2000.0)),
    ("tech", "t_integrate_ns"): _maybe(_f(0.05, 5000.0)),
    ("tech", "pipeline_registers_per_column"): st.integers(1, 4),
    ("quant", "act_percentile"): _f(99.0, 100.0), ("quant", "smooth_alpha"): _maybe(_f(0.0, 1.0)),
}
"""The range of each numeric field in a free draw (the published chips' range, small arrays)."""


def _free_field(section: str, name: str, hint: Any) -> st.SearchStrategy[Any]:
    """A value for one field: its entry in :data:`_FREE`, else from its type (a choice field
    draws every value of its enum, given as the TOML string; an optional choice also None)."""
    if (section, name) in _FREE:
        return _FREE[section, name]
    args = [a for a in getattr(hint, "__args__", ()) if a is not type(None)]
    kind = args[0] if len(args) == 1 else hint
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        values = st.sampled_from([c.value for c in kind])
        return _maybe(values) if args else values
    if kind is bool:
        return st.booleans()
    if kind is int:  # a new integer field: drawn without being listed here
        return st.integers(0, 8)
    if kind is float:
        return _f(0.0, 4.0)
    return st.text(max_size=8)


@st.composite
def chip_dicts(draw: st.DrawFn, p_set: float = 0.3) -> dict[str, Any]:
    """A chip as a user writes it in TOML: the array's size always (1..40 rows and columns,
    1..4 columns per converter),
    every other field of every section (read from the dataclasses, so a new field is drawn
    too) set with probability ``p_set`` to a value drawn independently of the others, else
    left to its default. Nothing here mirrors the validator's cross-field rules: the
    combination may be one it must refuse."""
    hints = get_type_hints(ChipConfig)
    data: dict[str, Any] = {"name": draw(st.text(min_size=1, max_size=8), label="name")}
    for section in ("", *_SECTIONS):
        kind = ChipConfig if not section else hints[section]
        part: dict[str, Any] = {}
        for name, hint in get_type_hints(kind).items():
            if name in _SECTIONS or name == "name":
                continue
            # a size and converter sharing of the user's own (cols_per_adc's default of 8 would
            # refuse most small arrays for want of columns)
            forced = section == "array" and name in ("n_rows", "n_cols", "cols_per_adc")
            if forced or draw(st.floats(0.0, 1.0)) < p_set:
                value = draw(_FREE_SIZES if forced and name != "cols_per_adc"
                             else _free_field(section, name, hint),
                             label=f"{section}.{name}" if section else name)
                part[name] = value
        if section:
            data[section] = part
        else:
            data.update(part)
    return data


def build(data: dict[str, Any]) -> ChipConfig | None:
    """``ChipConfig.from_dict(data)``, or None where the validator refuses it."""
    try:
        return _built(data)
    except ConfigError:
        return None


def _built(data: dict[str, Any]) -> ChipConfig:
    """``ChipConfig.from_dict``, without the warning that a drawn `tables` chip's physical-model
    fields change no figure (tests/test_config.py tests it; drawn here it is only noise)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"\[tech\] .* read by the physical cost model only",
                                UserWarning)
        return ChipConfig.from_dict(data)


@st.composite
def written_chips(draw: st.DrawFn, tries: int = 12) -> ChipConfig:
    """A free draw (:func:`chip_dicts`) the validator accepts: the first of ``tries``."""
    for _ in range(tries):
        chip = build(draw(chip_dicts()))
        if chip is not None:
            return chip
    reject()


def chips(max_size: int = 40) -> st.SearchStrategy[ChipConfig]:
    """Every chip a user could write: a valid draw across the schema (:func:`valid_chips`) or
    a free one (:func:`written_chips`), arrays up to ``max_size``."""
    return st.one_of(valid_chips(max_size=max_size), written_chips())
