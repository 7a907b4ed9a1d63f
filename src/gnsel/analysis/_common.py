"""Shared helpers: float extraction, NaN filtering, the order of values with infinities, hyper-parameter
codes, within-group pairs.

The rule for non-finite values (see the package docstring): NaN is missing (its rows are dropped and
counted); ``+inf`` and ``-inf`` are values, ordered above and below every finite value, and two equal
infinities tie. :func:`order_sign` and :func:`order_diff` compare by that order where ``a - b`` would give
NaN (``inf - inf``); :func:`order_ranks` maps values to ranks that keep it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "as_float",
    "clean_frame",
    "finite_pairs",
    "group_ids",
    "hparam_codes",
    "order_diff",
    "order_ranks",
    "order_sign",
    "within_group_pairs",
]


def as_float(result: Any) -> float:
    """Scalar of a scorer's result: a number, or the ``.value`` of a result dataclass."""
    value = getattr(result, "value", result)
    return float(value)


def finite_pairs(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` as float arrays with every pair holding a NaN dropped (infinities are kept: values)."""
    xa = np.asarray(x, dtype=np.float64).ravel()
    ya = np.asarray(y, dtype=np.float64).ravel()
    if xa.shape != ya.shape:
        raise ValueError(f"x and y differ in length: {xa.size} != {ya.size}")
    keep = ~(np.isnan(xa) | np.isnan(ya))
    return xa[keep], ya[keep]


def order_sign(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sign(a - b)`` by the order of values: +1, 0 or -1, also for infinities (``inf`` vs ``inf``: 0, a
    tie, where ``a - b`` is NaN). Equal to ``np.sign(a - b)`` for finite values (float subtraction of two
    different finite values is never 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a > b).astype(np.float64) - (a < b).astype(np.float64)


def order_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a - b``, with 0 for equal values (``inf - inf``, a tie) instead of NaN; ``inf - x`` stays ``inf``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(a == b, 0.0, a - b)


def order_ranks(x: np.ndarray) -> np.ndarray:
    """``x`` itself when finite, else its average ranks (``-inf`` lowest, ``+inf`` highest, equal values
    tied): rank statistics are unchanged by the map, which makes infinities safe for arithmetic."""
    x = np.asarray(x, dtype=np.float64)
    if np.isfinite(x).all():
        return x
    return stats.rankdata(x, method="average")


def clean_frame(df: pd.DataFrame, columns: Sequence[str], hparams: Sequence[str]) -> pd.DataFrame:
    """Rows of ``df`` whose ``columns`` are all non-NaN (infinities are values and kept); checks that every
    column exists."""
    missing = [c for c in (*columns, *hparams) if c not in df.columns]
    if missing:
        raise KeyError(f"columns not in the frame: {missing}")
    if len(set(hparams)) != len(hparams):
        raise ValueError(f"hparams has duplicates: {list(hparams)}")
    values = df[list(columns)].apply(pd.to_numeric, errors="coerce")
    keep = values.notna().all(axis=1).to_numpy()
    return df.loc[keep]


def hparam_codes(df: pd.DataFrame, hparams: Sequence[str]) -> np.ndarray:
    """Integer code matrix (rows x hparams); equal codes mean equal values, NaN is its own value."""
    codes = np.zeros((len(df), len(hparams)), dtype=np.int64)
    for k, h in enumerate(hparams):
        codes[:, k], _ = pd.factorize(df[h], use_na_sentinel=False)
    return codes


def group_ids(codes: np.ndarray) -> np.ndarray:
    """One integer id per distinct row of ``codes`` (all rows in one group when it has no columns)."""
    if codes.shape[1] == 0:
        return np.zeros(codes.shape[0], dtype=np.int64)
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    return inverse.ravel().astype(np.int64)


def within_group_pairs(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays ``(i, j)`` of every unordered pair of rows (i != j) sharing a group id."""
    groups = np.asarray(groups)
    n = groups.size
    if n < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    sizes = np.diff(np.r_[starts, n])
    local = np.arange(n) - np.repeat(starts, sizes)          # position inside its group
    after = np.repeat(sizes, sizes) - 1 - local              # partners that follow it
    total = int(after.sum())
    left = np.repeat(np.arange(n), after)
    offset = np.arange(total) - np.repeat(np.cumsum(after) - after, after)
    right = left + 1 + offset
    return order[left], order[right]
