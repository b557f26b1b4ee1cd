"""The one-layer entry point: ``cimsim.matmul``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import engine
from ._seed import check_flag, check_seed
from .arrays._rng import stream_key
from .arrays.program import program
from .config import ChipConfig, as_chip
from .events import Events

__all__ = ["matmul"]


def matmul(
    x_int: np.ndarray,
    w_int: np.ndarray,
    chip: ChipConfig | str | Path,
    seed: int = 0,
    *,
    input_signed: bool | None = None,
    calibration: np.ndarray | None = None,
    row_tiles: list[tuple[int, int]] | None = None,
    chunk_vectors: int | None = None,
) -> tuple[np.ndarray, Events]:
    """Run one layer's integer matrix product on the simulated chip.

    Parameters
    ----------
    x_int : (M, K) integer array
        Quantized inputs, ``[0, 2^B_x - 1]`` unsigned or the signed range of the chip's
        signed-input mode (``cimsim.arrays.encoding.input_range``).
    w_int : (N, K) integer array
        Quantized weights in ``cimsim.arrays.encoding.weight_range(chip)``.
    chip : ChipConfig, str or Path
        The chip, or a preset name or ``.toml`` path (``cimsim.config.as_chip``).
    seed : int
        Seeds the programming variation/faults and the conversion noise of this call.
    input_signed : bool, optional
        Whether inputs are signed; default: signed iff ``x_int`` (or ``calibration``) has a
        negative value.
    calibration : (M_cal, K) integer array, optional
        Inputs that set the ADC ranges when ``chip.adc.range_policy == 'calibrated'``; another
        policy sets them without inputs and reads only their sign (``input_signed``), so
        chip-agnostic code may pass them always.
    row_tiles : list of (start, stop), optional
        Custom row tiles (e.g. kernel-preserving); default consecutive ``n_rows`` chunks.
    chunk_vectors : int, optional
        Input vectors simulated per chunk (default: as many as fit
        ``cimsim.engine.CHUNK_BYTES``); the outputs and integer counts do not depend on it.

    Returns
    -------
    y : (M, N) float64
        The integer-domain result; exactly ``x_int @ w_int.T`` on a lossless chip (below
        2^53 in magnitude, float64's integers).
    events : Events
        What the run did (conversions, pulses, cell reads, ...), for the cost model.
    """
    chip = as_chip(chip)
    if input_signed is None:
        xs = [np.asarray(x_int)] + ([np.asarray(calibration)] if calibration is not None else [])
        input_signed = any(a.size and np.issubdtype(a.dtype, np.number) and a.min() < 0
                           for a in xs)
    seed = check_seed(seed)  # -1 would fail deep in NumPy; 2**64 alias 0 in the noise keys
    rng = np.random.default_rng(seed)
    layer = program(w_int, chip, rng, input_signed=check_flag(input_signed, "input_signed"),
                    row_tiles=row_tiles)
    if calibration is not None:
        layer = engine.calibrate(layer, calibration, chunk_vectors=chunk_vectors)
    noise_seed = stream_key(seed, 1)  # independent of how many draws programming made
    return engine.run(layer, x_int, noise_seed=noise_seed, chunk_vectors=chunk_vectors)
