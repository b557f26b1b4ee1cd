"""Events: what a simulated run did that costs energy, counted per layer.

An event is ``(component, action, bits) -> count``. They are returned by every run (never kept
in module globals) and added up by the caller; the cost model multiplies them by technology
tables (``cimsim.cost``). ``docs/hardware-model.md`` lists every event and how it is counted.

Components and actions are enums, and the pairs that exist are one registry
(:data:`REGISTRY`): a key outside it is refused where it is made, so a producer cannot emit an
event the cost model does not know, and a test walks the registry to check every pair is priced.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from enum import Enum
from typing import NamedTuple

__all__ = ["Action", "Component", "DERIVED", "EventKey", "Events", "REGISTRY", "event_key"]


class _Name(str, Enum):
    """A string enum printed as its value (report rows, CSV)."""

    def __str__(self) -> str:
        return self.value


class Component(_Name):
    """What spends the energy."""

    LAYER = "layer"
    ARRAY = "array"
    ADC = "adc"
    DAC = "dac"
    CELL = "cell"
    SHIFT_ADD = "shift_add"
    ACCUMULATOR = "accumulator"
    BUFFER = "buffer"
    INTERCONNECT = "interconnect"
    DIGITAL = "digital"
    WEIGHTING = "weighting"
    BLOCK_FP = "block_fp"


class Action(_Name):
    """What it does."""

    MAC = "mac"
    ACTIVATION = "activation"
    REPROGRAM = "reprogram"
    CONVERT = "convert"
    LEAK = "leak"
    PULSE = "pulse"
    READ = "read"
    V2G_LSB = "v2g_lsb"
    V1G_LSB = "v1g_lsb"
    WRITE = "write"
    REFRESH = "refresh"
    ADD = "add"
    READ_BIT = "read_bit"
    WRITE_BIT = "write_bit"
    BIT = "bit"
    BUS_BIT = "bus_bit"
    CORRECTION_ADD = "correction_add"
    DEQUANT_MULTIPLY = "dequant_multiply"
    DRIFT_CALIBRATION = "drift_calibration"
    DRIFT_GAIN_MULTIPLY = "drift_gain_multiply"
    SHIFT_CORRECTION_ADD = "shift_correction_add"
    INPUT_SHIFT = "input_shift"
    WORDLINE = "wordline"
    SLICE_MULTIPLY = "slice_multiply"
    SLICE_COLUMN = "slice_column"
    MIRROR_LSB = "mirror_lsb"
    EXPONENT_MAX = "exponent_max"
    ALIGN_SHIFT = "align_shift"
    EXPONENT_ADD = "exponent_add"
    NORMALIZE = "normalize"


_C, _A = Component, Action

REGISTRY: dict[tuple[Component, Action], str] = {
    (_C.LAYER, _A.MAC): "multiply-accumulates of the layer (a count; no energy of its own)",
    (_C.ARRAY, _A.ACTIVATION): "array read cycles (a count; no energy of its own)",
    (_C.ARRAY, _A.REPROGRAM): "arrays rewritten by time-multiplexing (a count)",
    (_C.ARRAY, _A.DRIFT_CALIBRATION): "drift-compensation calibration reads of a programmed "
                                      "layer (a count; the read's pulses, cell reads and "
                                      "conversions are counted as such)",
    (_C.ADC, _A.CONVERT): "ADC conversions at `bits`",
    (_C.ADC, _A.LEAK): "ADC-nanoseconds of leakage (derived by the cost model from the "
                       "latency; never emitted by a run)",
    (_C.DAC, _A.PULSE): "row-driver pulses at `bits` DAC resolution",
    (_C.CELL, _A.READ): "cell reads (`bits` per cell)",
    (_C.CELL, _A.V2G_LSB): "summed x² · G of the cells read (cell-LSB · DAC-LSB²)",
    (_C.CELL, _A.V1G_LSB): "summed |x| · G of the cells read (cell-LSB · DAC-LSB): their read "
                           "charge under every drive (bit-plane drive: popcount(x) · G, one "
                           "full-voltage read per plane whose bit is 1)",
    (_C.CELL, _A.WRITE): "cells programmed (`bits` per cell)",
    (_C.CELL, _A.REFRESH): "cell-nanoseconds of refreshed (eDRAM) cells holding weights: the "
                           "occupied arrays' cells times the inference time (derived by the "
                           "cost model from the latency; never emitted by a run)",
    (_C.SHIFT_ADD, _A.ADD): "shift-adds of ADC codes at `bits` accumulator width",
    (_C.ACCUMULATOR, _A.ADD): "accumulator adds at `bits`",
    (_C.BUFFER, _A.READ_BIT): "buffer bits read",
    (_C.BUFFER, _A.WRITE_BIT): "buffer bits written",
    (_C.INTERCONNECT, _A.BIT): "bits moved between tiles",
    (_C.INTERCONNECT, _A.BUS_BIT): "bits on the tile bus (derived by the cost model from "
                                   "the buffer bits; never emitted by a run)",
    (_C.DIGITAL, _A.CORRECTION_ADD): "exact digital corrections (offset, g_off) at `bits`",
    (_C.DIGITAL, _A.DEQUANT_MULTIPLY): "dequantization multiplies, one per output per "
                                       "dequantized block (counted by the run)",
    (_C.DIGITAL, _A.DRIFT_GAIN_MULTIPLY): "drift-compensation gain multiplies: one per output "
                                          "(global) or per conversion column (column) per "
                                          "input vector",
    (_C.DIGITAL, _A.SHIFT_CORRECTION_ADD): "A-shift: the exact correction 2^(B_x-1)·Σ_k w "
                                           "added per output per part at `bits`",
    (_C.DAC, _A.WORDLINE): "word lines switched on every row per array read, for "
                           "`tech.wordline_switching = 'every_row'` (derived by the cost "
                           "model from the array reads; never emitted by a run)",
    (_C.DIGITAL, _A.SLICE_MULTIPLY): "conversion codes multiplied by a slice weight that is "
                                     "not a signed power of two (balanced-ternary 3^s, "
                                     "ColumnQuant option 3's learned alphas) before the "
                                     "shift-add, at `bits` accumulator width",
    (_C.DAC, _A.INPUT_SHIFT): "A-shift: input codes shifted to signed (MSB inverted), one per "
                              "input element at `bits` = input bits",
    (_C.WEIGHTING, _A.SLICE_COLUMN): "analog slice read-out: slice columns weighted into a "
                                     "conversion, one per column per conversion, at `bits` = "
                                     "log2 of its ratio (2^bits unit mirror transistors or "
                                     "capacitors)",
    (_C.WEIGHTING, _A.MIRROR_LSB): "analog slice read-out: summed ratio · |x| · G of the "
                                   "weighted columns' cells read (cell-LSB · DAC-LSB): the "
                                   "charge the current mirrors copy from the supply",
    (_C.BLOCK_FP, _A.EXPONENT_MAX): "block floating-point inputs: exponent comparisons of the "
                                    "max-exponent trees, rows - 1 per row tile per vector, "
                                    "at `bits` = exponent bits",
    (_C.BLOCK_FP, _A.ALIGN_SHIFT): "block floating-point inputs: mantissas aligned to their "
                                   "block's exponent, one per input element, at `bits` = "
                                   "input (mantissa) bits",
    (_C.BLOCK_FP, _A.EXPONENT_ADD): "block floating-point inputs: the block exponent added "
                                    "to an output's, one per output per row tile per "
                                    "vector, at `bits` = exponent bits",
    (_C.BLOCK_FP, _A.NORMALIZE): "block floating-point inputs: a row tile's partial sum "
                                 "normalised to floating point (leading-zero count and "
                                 "shift), one per output per row tile per vector, at `bits` "
                                 "= accumulator bits",
}
"""Every (component, action) an event can have, with what its count means."""

DERIVED: frozenset[tuple[Component, Action]] = frozenset({(_C.ADC, _A.LEAK),
                                                          (_C.CELL, _A.REFRESH),
                                                          (_C.INTERCONNECT, _A.BUS_BIT),
                                                          (_C.DAC, _A.WORDLINE)})
"""Pairs the cost model derives from other events and the latency; a run never emits them."""


class EventKey(NamedTuple):
    """One kind of event: what part of the chip (``component``) did what (``action``) at
    which resolution (``bits``); a key of :class:`Events`, made with :func:`event_key`, which
    checks it against :data:`REGISTRY`."""

    component: Component
    action: Action
    bits: int = 0
    """Resolution the action happens at, where it matters (ADC bits, word width); else 0."""


def event_key(component: Component | str, action: Action | str, bits: int = 0) -> EventKey:
    """The :class:`EventKey` of a registered (component, action); strings are accepted for the
    enum values, and integral numbers for ``bits`` (6.0, ``np.int64(6)``: stored as 6).
    Raises ``ValueError`` naming the allowed pairs, or the bits, otherwise."""
    try:
        b = int(bits)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
        b = None
    if b is None or isinstance(bits, str) or b != bits:  # 6.5 was kept as 6, "6" beside 6
        raise ValueError(f"event ({component!r}, {action!r}) bits = {bits!r} is invalid; "
                         "allowed: an integer")
    try:
        key = EventKey(Component(component), Action(action), b)
    except ValueError:
        key = None
    if key is None or (key.component, key.action) not in REGISTRY:
        allowed = ", ".join(f"{c.value}.{a.value}" for c, a in REGISTRY)
        raise ValueError(f"event ({component!r}, {action!r}) is not registered; allowed: "
                         f"{allowed}")
    return key


def _key(key) -> EventKey:
    # the engine's keys as they are (the hot path); anything else through event_key, which
    # refuses an unregistered pair and normalises the bits: EventKey(ADC, WRITE) was accepted
    # and failed deep in estimate, bits 6 and "6" made two keys that could not be sorted
    if (isinstance(key, EventKey) and isinstance(key.action, Action)
            and isinstance(key.component, Component) and type(key.bits) is int
            and (key.component, key.action) in REGISTRY):
        return key
    if not isinstance(key, tuple) or not 2 <= len(key) <= 3:
        raise ValueError(f"event key {key!r} is invalid; allowed: an EventKey or a "
                         "(component, action[, bits]) tuple")
    return event_key(*key)


class Events(Mapping[EventKey, float]):
    """An immutable mapping of registered :class:`EventKey` to counts, closed under ``+``."""

    __slots__ = ("_counts",)

    def __init__(self, counts: Mapping | Iterable[tuple] | None = None):
        self._counts: dict[EventKey, float] = {}
        # a mapping, or (key, count) pairs as dict() takes them
        pairs = counts.items() if isinstance(counts, Mapping) else (counts or ())
        for key, n in pairs:
            key = _key(key)
            self._counts[key] = self._counts.get(key, 0.0) + float(n)

    def __getitem__(self, key) -> float:
        return self._counts[_key(key)]

    def __iter__(self) -> Iterator[EventKey]:
        return iter(self._counts)

    def __len__(self) -> int:
        return len(self._counts)

    def __contains__(self, key) -> bool:
        try:
            return _key(key) in self._counts
        except ValueError:  # an unregistered pair is in no Events (was raised)
            return False

    @classmethod
    def _of_checked(cls, counts: dict[EventKey, float]) -> Events:
        """An Events holding ``counts`` as they are: keys already registered ``EventKey``s and
        counts floats (another Events' or a sum of them), not checked again (a forward of
        MobileNetV2's 7,172 small matrices spent a quarter of its time re-checking keys)."""
        out = cls.__new__(cls)
        out._counts = counts
        return out

    def __add__(self, other: Mapping) -> Events:
        if not isinstance(other, Mapping):
            return NotImplemented  # events + 1: Python's TypeError (an AttributeError was)
        out = dict(self._counts)
        pairs = (other._counts.items() if isinstance(other, Events)  # checked when made
                 else ((_key(k), float(n)) for k, n in other.items()))
        for key, n in pairs:
            out[key] = out.get(key, 0.0) + n
        return Events._of_checked(out)

    def __radd__(self, other) -> Events:
        return self if isinstance(other, int) and other == 0 else self.__add__(other)  # sum()

    def get(self, key, default: float = 0.0) -> float:  # type: ignore[override]
        try:
            return self._counts.get(_key(key), default)
        except ValueError:  # an unregistered pair counts nothing (was raised)
            return default

    def scaled(self, factor: float) -> Events:
        """Every count times ``factor`` (e.g. per inference)."""
        # in float64: an np.float32 factor multiplied in float32 (2**24 + 1 came back 2**24)
        factor = float(factor)
        return Events._of_checked({k: v * factor for k, v in self._counts.items()})

    def to_records(self) -> list[dict]:
        return [
            {"component": k.component.value, "action": k.action.value, "bits": k.bits,
             "count": v}
            for k, v in sorted(self._counts.items())
        ]

    def __repr__(self) -> str:
        body = ", ".join(f"{k.component.value}.{k.action.value}[{k.bits}]={v:g}"
                         for k, v in sorted(self.items()))
        return f"Events({body})"
