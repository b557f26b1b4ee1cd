"""The Pareto front of a sweep table: maximum accuracy, minimum energy per inference."""

from __future__ import annotations

import math

import pandas as pd

__all__ = ["pareto_front"]


def pareto_front(frame: pd.DataFrame, *, accuracy: str = "accuracy",
                 energy: str = "energy_pj_per_inference") -> pd.Series:
    """Which rows are Pareto-optimal for (max ``accuracy``, min ``energy``).

    A row is on the front when its status is ``ok``, both values are finite, and no other such
    row is at least as accurate and at most as costly while better in one of the two. Rows with
    equal values are all on the front (or none).

    Returns
    -------
    Series of bool, aligned with ``frame.index``.
    """
    acc = pd.to_numeric(frame[accuracy], errors="coerce")
    en = pd.to_numeric(frame[energy], errors="coerce")
    ok = acc.notna() & en.notna() & (en.abs() != math.inf)
    if "status" in frame:
        ok &= frame["status"].eq("ok")
    on = pd.Series(False, index=frame.index)
    idx = list(frame.index[ok])
    for i in idx:
        dominated = any(
            acc[j] >= acc[i] and en[j] <= en[i] and (acc[j] > acc[i] or en[j] < en[i])
            for j in idx if j != i
        )
        on[i] = not dominated
    return on
