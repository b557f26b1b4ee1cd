"""The Pareto front of a sweep table: maximum accuracy, minimum energy per inference."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["front_group", "pareto_front"]


def pareto_front(frame: pd.DataFrame, *, accuracy: str = "accuracy",
                 energy: str = "energy_pj_per_inference", by: str | None = None) -> pd.Series:
    """Which rows are Pareto-optimal for (max ``accuracy``, min ``energy``).

    A row is on the front when its status is ``ok``, both values are finite, and no other such
    row is at least as accurate and at most as costly while better in one of the two. Rows with
    equal values are all on the front (or none). With ``by`` (a column), rows compete only with
    the rows of their own value of it: one front per value (a sweep's ``time_s``: the time after
    programming is no design choice, so a point is weighed against the others at its time).

    Returns
    -------
    Series of bool, aligned with ``frame.index``.
    """
    # by position: a frame with a repeated index (tables concatenated) failed on a Series
    acc = pd.to_numeric(frame[accuracy], errors="coerce").to_numpy(dtype=float)
    en = pd.to_numeric(frame[energy], errors="coerce").to_numpy(dtype=float)
    # both finite: an infinite accuracy (a trace's sqnr_db of an exact layer) took the front
    ok = np.isfinite(acc) & np.isfinite(en)
    if "status" in frame:
        ok &= frame["status"].eq("ok").to_numpy()
    group = (frame[by].astype(str).to_numpy() if by is not None
             else np.full(len(frame), ""))
    on = np.zeros(len(frame), dtype=bool)
    idx = np.flatnonzero(ok)
    for i in idx:
        dominated = any(
            acc[j] >= acc[i] and en[j] <= en[i] and (acc[j] > acc[i] or en[j] < en[i])
            for j in idx if j != i and group[j] == group[i]
        )
        on[i] = not dominated
    return pd.Series(on, index=frame.index)


def front_group(frame: pd.DataFrame) -> str | None:
    """The column a sweep table's fronts are taken per (:func:`pareto_front`'s ``by``):
    ``time_s`` when the sweep ran at more than one time after programming, else None."""
    if "time_s" in frame and frame["time_s"].astype(str).nunique() > 1:
        return "time_s"
    return None
