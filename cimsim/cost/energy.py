"""Energy: events of a run x energy per event, one lookup in the component models.

The estimator never simulates. Every event the engine counted, ``(component, action, bits) ->
count`` (``cimsim.events``), is priced by :func:`event_energy_pj`: the model of its component
(:data:`cimsim.cost.models.MODELS`) built for the chip, asked for the action's energy::

    energy_pj = sum(count x models[component].energy_pj(action, bits))

Every registered (component, action) of ``cimsim.events.REGISTRY`` is listed by one model
(:data:`PRICES` holds one price function per pair); ``docs/cost-model.md`` lists them and
``docs/technology.md`` the publications behind every number. The table prices, the
calibrations and the helpers the models share live in :mod:`._prices` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ..config import ChipConfig
from ..events import Action, Component, EventKey, event_key
from ._prices import (
    CALIBRATIONS,
    COMPONENTS,
    NO_CALIBRATION,
    SUPPLY_REF_V,
    TILE_BUFFER_KIB,
    Calibration,
    _adc_convert,
    _adc_leak,
    _cell_read,
    _cell_v2g_lsb,
    _cell_write,
    _dac_pulse,
    _Price,
    calibration_for,
    chip_table,
    dac_pulse_energy_pj,
    stored_bits_per_cell,
    supply_factor,
    table_adc_bits,
    table_adc_time_ns,
)
from .models import MODELS
from .tables import TechTable

__all__ = [
    "CALIBRATIONS",
    "COMPONENTS",
    "NO_CALIBRATION",
    "PRICES",
    "SUPPLY_REF_V",
    "TILE_BUFFER_KIB",
    "Calibration",
    "adc_time_ns",
    "calibration_for",
    "chip_table",
    "dac_pulse_energy_pj",
    "event_energy_pj",
    "stored_bits_per_cell",
    "supply_factor",
    "table_adc_bits",
    "table_adc_time_ns",
]

# the table price functions stay reachable here for tests that compare against them
_TABLE_PRICES = (_adc_convert, _adc_leak, _cell_read, _cell_v2g_lsb, _cell_write, _dac_pulse)


def _model_price(component: Component, action: Action) -> _Price:
    def price(chip: ChipConfig, table: TechTable, cal: Calibration, bits: int) -> float:
        return MODELS[component](chip, table, cal).energy_pj(action, bits)
    price.__name__ = f"{component.value}.{action.value}"
    return price


PRICES: Mapping[tuple[Component, Action], _Price] = MappingProxyType({
    (c, a): _model_price(c, a) for c, cls in MODELS.items() for a in cls.actions})
"""The price of every (component, action) some component model lists
(``cimsim.cost.models.MODELS``); a test holds its keys equal to ``cimsim.events.REGISTRY``."""


def event_energy_pj(
    key: EventKey | tuple, chip: ChipConfig, table: TechTable | None = None,
    calibration: Calibration | None = None,
) -> float:
    """Energy of one event ``key`` on ``chip``, pJ.

    ``adc.leak`` is priced per ADC-nanosecond (leakage power in mW = pJ/ns).

    Raises
    ------
    ValueError
        If ``key`` is not a registered (component, action) (``cimsim.events.REGISTRY``); the
        message names the allowed pairs.
    """
    key = event_key(*key)
    table = chip_table(chip) if table is None else table
    model = MODELS[key.component](chip, table, calibration)  # one lookup per event
    return float(model.energy_pj(key.action, key.bits))


def adc_time_ns(chip: ChipConfig, table: TechTable, calibration: Calibration) -> float:
    """One conversion of the chip's ADC, ns (its component model's time)."""
    return MODELS[Component.ADC](chip, table, calibration).time_ns(Action.CONVERT,
                                                                   chip.adc.bits)
