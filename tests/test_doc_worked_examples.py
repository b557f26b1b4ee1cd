"""docs/hardware-model.md §9's worked examples, as ``cimsim.matmul`` computes them.

The page gives each result as a number a reader can check by hand; these tests hold the
numbers to the code (example 3 is in ``tests/arrays/test_binary.py``). A change of a default
(the zero-aligned grid moved example 1's 4-bit row) fails here, naming the example.
"""

from __future__ import annotations

import numpy as np
import pytest

import cimsim
from cimsim.config import ArrayConfig, ChipConfig, DACConfig, DeviceConfig

X = np.array([[11, 6, 0, 15]])
W = np.array([[-5, 6, 3, -7]])


def _chip() -> ChipConfig:
    return ChipConfig(weight_bits=4, input_bits=4, array=ArrayConfig(n_rows=4, n_cols=8),
                      device=DeviceConfig(cell="ideal", bits_per_cell=2), dac=DACConfig(bits=2))


def _y(chip: ChipConfig) -> float:
    y, _ = cimsim.matmul(X, W, chip)
    return float(y[0, 0])


@pytest.mark.parametrize("bits,zero_aligned,readout,want", [
    (7, False, "analog", -124.0), (4, False, "analog", -84.0),
    (7, True, "analog", -124.0), (4, True, "analog", -154.0 - 2.0 / 7.0),
    (4, False, "digital", -141.6),
])
def test_example_1_differential_full_scale(bits: int, zero_aligned: bool, readout: str,
                                           want: float) -> None:
    chip = _chip()
    chip = chip.replace(adc=chip.adc.replace(bits=bits, zero_aligned=zero_aligned),
                        differential_readout=readout)
    assert _y(chip) == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize("slice_readout,compensation,want", [
    ("digital", "none", -139.0), ("digital", "digital", -129.4), ("digital", "analog", -124.0),
    ("analog", "none", -133.0), ("analog", "digital", -123.4), ("analog", "analog", -124.0),
])
def test_examples_2_and_4_off_current(slice_readout: str, compensation: str,
                                      want: float) -> None:
    chip = _chip()
    chip = chip.replace(weight_encoding="twos_complement",
                        array=chip.array.replace(slice_readout=slice_readout),
                        device=chip.device.replace(on_off_ratio=31,
                                                   off_current_compensation=compensation),
                        adc=chip.adc.replace(bits=12))
    assert _y(chip) == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize("bits,readout,want", [
    (8, "analog", -124.0), (4, "analog", -120.0), (4, "digital", -154.0 - 2.0 / 7.0)])
def test_example_4_analog_slice_readout(bits: int, readout: str, want: float) -> None:
    chip = _chip()
    chip = chip.replace(array=chip.array.replace(slice_readout=readout),
                        adc=chip.adc.replace(bits=bits))
    assert _y(chip) == pytest.approx(want, abs=1e-9)


def test_example_2_differential_digital_readout_stays_exact() -> None:
    """"Differential with digital read-out stays exact under `digital` compensation"."""
    chip = _chip()
    chip = chip.replace(device=chip.device.replace(on_off_ratio=31,
                                                   off_current_compensation="digital"),
                        adc=chip.adc.replace(bits=12), differential_readout="digital")
    assert _y(chip) == -124.0
