"""Ranks of measures that claim an order only where their confidence intervals are separated.

A measure's rank is 1 + the number of measures whose whole interval lies beyond its own
(strictly better), so measures with overlapping intervals share a rank and "#1" means that no
measure is separated above it. :func:`rank_text` words one measure's rank for a report.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["rank_text", "separated_ranks"]


def _aligned(estimate: Any, low: Any, high: Any) -> tuple[pd.Series, pd.Series, pd.Series]:
    """The three inputs as float Series on ``estimate``'s index (Series must share one index)."""
    est = estimate if isinstance(estimate, pd.Series) else pd.Series(estimate)
    out = [est.astype(np.float64)]
    for name, s in (("low", low), ("high", high)):
        if not isinstance(s, pd.Series):
            s = pd.Series(np.asarray(s, dtype=np.float64), index=est.index)
        elif not s.index.equals(est.index):
            if set(s.index) != set(est.index) or not s.index.is_unique:
                raise ValueError(f"{name} does not share the index of estimate")
            s = s.reindex(est.index)
        out.append(s.astype(np.float64))
    return out[0], out[1], out[2]


def separated_ranks(estimate: Any, low: Any, high: Any, *, higher_is_better: bool = True) -> pd.Series:
    """Rank (nullable ``Int64``) of each measure: 1 + the number of measures strictly separated above it.

    Above means ``other.low > this.high`` when ``higher_is_better`` (``other.high < this.low``
    otherwise); measures with a NaN estimate or bound get ``<NA>`` and count for no one.
    """
    est, lo, hi = _aligned(estimate, low, high)
    valid = (est.notna() & lo.notna() & hi.notna()).to_numpy()
    lo_v, hi_v = lo.to_numpy()[valid], hi.to_numpy()[valid]
    if np.any(lo_v > hi_v):
        raise ValueError("an interval has low > high")
    if higher_is_better:
        better = lo_v[None, :] > hi_v[:, None]  # [i, j]: j's interval lies entirely above i's
    else:
        better = hi_v[None, :] < lo_v[:, None]  # [i, j]: j's interval lies entirely below i's
    ranks = pd.Series(pd.NA, index=est.index, dtype="Int64", name="rank")
    ranks[valid] = 1 + better.sum(axis=1)
    return ranks


def rank_text(name: Any, ranks: pd.Series) -> str:
    """``"#r of n"`` for measure ``name`` (n ranked measures), plus ``" (tied with K others)"`` if shared.

    E.g. ``"#1 of 33 (tied with 3 others)"``, ``"#2 of 33"``; ``"unranked"`` for a ``<NA>`` rank.
    """
    if name not in ranks.index:
        raise KeyError(f"{name!r} is not among the ranked measures")
    rank = ranks[name]
    if pd.isna(rank):
        return "unranked"
    ranked = ranks.dropna()
    tied = int((ranked == rank).sum()) - 1
    text = f"#{int(rank)} of {ranked.size}"
    if tied > 0:
        text += f" (tied with {tied} other{'s' if tied > 1 else ''})"
    return text
