"""Events: what a simulated run did that costs energy, counted per layer.

An event is ``(component, action, bits) -> count``. They are returned by every run (never kept
in module globals) and added up by the caller; the cost model multiplies them by technology
tables (``cimsim.cost``). ``docs/hardware-model.md`` lists every event and how it is counted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import NamedTuple

__all__ = ["EventKey", "Events"]


class EventKey(NamedTuple):
    component: str
    """e.g. ``adc``, ``dac``, ``cell``, ``shift_add``, ``accumulator``, ``buffer``."""
    action: str
    """e.g. ``convert``, ``pulse``, ``read``, ``add``."""
    bits: int = 0
    """Resolution the action happens at, where it matters (ADC bits, word width); else 0."""


class Events(Mapping[EventKey, float]):
    """An immutable-by-convention mapping of :class:`EventKey` to counts, closed under ``+``."""

    __slots__ = ("_counts",)

    def __init__(self, counts: Mapping[EventKey, float] | None = None):
        self._counts: dict[EventKey, float] = {}
        for key, n in (counts or {}).items():
            key = EventKey(*key)
            self._counts[key] = self._counts.get(key, 0.0) + float(n)

    def __getitem__(self, key) -> float:
        return self._counts[EventKey(*key)]

    def __iter__(self) -> Iterator[EventKey]:
        return iter(self._counts)

    def __len__(self) -> int:
        return len(self._counts)

    def __add__(self, other: Mapping) -> Events:
        out = dict(self._counts)
        for key, n in other.items():
            key = EventKey(*key)
            out[key] = out.get(key, 0.0) + float(n)
        return Events(out)

    def __radd__(self, other) -> Events:
        return self if isinstance(other, int) and other == 0 else self.__add__(other)  # sum()

    def get(self, key, default: float = 0.0) -> float:  # type: ignore[override]
        return self._counts.get(EventKey(*key), default)

    def scaled(self, factor: float) -> Events:
        """Every count times ``factor`` (e.g. per inference)."""
        return Events({k: v * factor for k, v in self._counts.items()})

    def to_records(self) -> list[dict]:
        return [
            {"component": k.component, "action": k.action, "bits": k.bits, "count": v}
            for k, v in sorted(self._counts.items())
        ]

    def __repr__(self) -> str:
        body = ", ".join(f"{k.component}.{k.action}[{k.bits}]={v:g}"
                         for k, v in sorted(self.items()))
        return f"Events({body})"
