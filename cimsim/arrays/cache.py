"""Programmed cells kept across deploys, so that a sweep that changes only the ADC or the noise
does not draw the programming variation again.

Programming a layer has two parts (:mod:`cimsim.arrays.program`): drawing the device state
(:func:`~cimsim.arrays.program.draw_cells`: digits, variation, faults: the cost of a normal
draw per cell) and assembling the layer around it for a chip
(:func:`~cimsim.arrays.program.assemble`: conversions, GEMM operands, ADC ranges: cheap).
:func:`program_seeded` keeps the drawn :class:`~cimsim.arrays.program.Cells` under a key of

- the weights' content (a BLAKE2b digest of their bytes, with shape and dtype),
- the chip settings the cells depend on (:func:`~cimsim.arrays.program.cells_key`: weight
  bits, encoding, differential read-out and the whole ``DeviceConfig``),
- the seed, and how the matrix is cut into separately programmed parts,

and assembles the layer for the chip it is given, so another ADC, noise setting, DAC or array
geometry reuses the cells, while a changed weight, device field or seed draws anew. What it
returns is exactly what programming from scratch returns (tested).

The cache is per process, least recently used entries evicted beyond a byte budget:
``CIMSIM_PROGRAM_CACHE_MB`` in the environment (default 1024; 0 disables it) or
:func:`set_max_bytes`. The cached arrays are shared by the layers built from them; nothing in
cimsim writes to a programmed layer's arrays.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..config import ChipConfig
from ..errors import ConfigError
from .program import (
    Cells,
    ProgrammedLayer,
    _check_row_tiles,
    _check_weights,
    _draw_cells,
    assemble,
    cells_key,
    default_row_tiles,
    with_aging,
)

__all__ = ["CacheInfo", "cache_info", "clear", "program_seeded", "set_max_bytes"]

#: Default byte budget of the cache, MiB (``CIMSIM_PROGRAM_CACHE_MB`` overrides it).
DEFAULT_MB = 1024

Part = tuple[int, int, "list[tuple[int, int]] | None"]


@dataclass(frozen=True)
class CacheInfo:
    """Counters of the process's programming cache."""

    hits: int
    misses: int
    entries: int
    nbytes: int
    max_bytes: int


class _LRU:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple, tuple[list[Cells], int]] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self.lock = threading.Lock()  # a threaded sweep may deploy from several threads

    def get(self, key: tuple) -> list[Cells] | None:
        with self.lock:
            hit = self.entries.get(key)
            if hit is None:
                self.misses += 1
                return None
            self.entries.move_to_end(key)
            self.hits += 1
            return hit[0]

    def put(self, key: tuple, cells: list[Cells]) -> None:
        size = sum(c.nbytes for c in cells)
        with self.lock:
            if size > self.max_bytes or key in self.entries:
                return
            self.entries[key] = (cells, size)
            self.nbytes += size
            self._evict()

    def _evict(self) -> None:
        while self.nbytes > self.max_bytes and self.entries:
            _, (_, size) = self.entries.popitem(last=False)
            self.nbytes -= size


def _budget_from_env() -> int:
    raw = os.environ.get("CIMSIM_PROGRAM_CACHE_MB", str(DEFAULT_MB))
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not (mb >= 0 and math.isfinite(mb)):  # inf failed in int() with an OverflowError
        raise ConfigError(f"CIMSIM_PROGRAM_CACHE_MB = {raw!r} is invalid; allowed: a finite "
                          "number of MiB >= 0 (0 disables the programming cache)")
    return int(mb * 2**20)


_CACHE = _LRU(_budget_from_env())


def set_max_bytes(max_bytes: int) -> None:
    """Set the cache's byte budget (0 disables it), evicting what no longer fits."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) \
            or max_bytes < 0:
        raise ConfigError(f"max_bytes = {max_bytes!r} is invalid; allowed: an integer >= 0")
    with _CACHE.lock:
        _CACHE.max_bytes = int(max_bytes)
        _CACHE._evict()


def clear() -> None:
    """Drop every cached programming and reset the counters."""
    with _CACHE.lock:
        _CACHE.entries.clear()
        _CACHE.nbytes = _CACHE.hits = _CACHE.misses = 0


def cache_info() -> CacheInfo:
    """Hits, misses, entries and bytes held."""
    with _CACHE.lock:
        return CacheInfo(_CACHE.hits, _CACHE.misses, len(_CACHE.entries), _CACHE.nbytes,
                         _CACHE.max_bytes)


def _digest(w: np.ndarray) -> bytes:
    w = np.ascontiguousarray(w)
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{w.dtype.str}{w.shape}".encode())
    h.update(w.view(np.uint8).reshape(-1).data)
    return h.digest()


def program_seeded(
    w_int: np.ndarray,
    chip: ChipConfig,
    seed: int,
    *,
    input_signed: bool,
    parts: list[Part],
    names: list[str],
) -> list[ProgrammedLayer]:
    """Program the column ranges ``parts`` of ``w_int`` (N, K), one layer each, all drawn in
    order from ``numpy.random.default_rng(seed)``, reusing cached cells where the key matches.

    ``parts``: ``(a, b, row_tiles)`` per part: columns ``a:b`` of ``w_int``, cut into
    ``row_tiles`` (relative to ``a``; None: consecutive ``n_rows`` tiles). Equal to
    ``[program(w_int[:, a:b], chip, rng, ...) for ...]`` with one generator ``rng``.
    """
    w = _check_weights(w_int, chip)
    tiles = []
    for a, b, rt in parts:
        t = default_row_tiles(b - a, chip.array.n_rows) if rt is None else list(rt)
        _check_row_tiles(t, b - a, chip.array.n_rows)  # before the expensive draws
        tiles.append(t)
    key = (_digest(w), int(seed), cells_key(chip), tuple((a, b) for a, b, _ in parts))
    cells = _CACHE.get(key) if _CACHE.max_bytes > 0 else None
    if cells is None:
        rng = np.random.default_rng(seed)
        cells = [_draw_cells(w[:, a:b], chip, rng) for a, b, _ in parts]
        if _CACHE.max_bytes > 0:
            _CACHE.put(key, cells)
    # an aging device's future: child i of the generator for part i, as program() draws it
    aging = np.random.default_rng(seed)
    return [with_aging(assemble(c, chip, input_signed=input_signed, row_tiles=t, name=nm), c,
                       aging)
            for c, t, nm in zip(cells, tiles, names, strict=True)]
