"""Shared helpers: float extraction, NaN filtering, hyper-parameter codes, within-group pairs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["as_float", "clean_frame", "finite_pairs", "group_ids", "hparam_codes", "within_group_pairs"]


def as_float(result: Any) -> float:
    """Scalar of a scorer's result: a number, or the ``.value`` of a result dataclass."""
    value = getattr(result, "value", result)
    return float(value)


def finite_pairs(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` as float arrays with every pair holding a NaN dropped."""
    xa = np.asarray(x, dtype=np.float64).ravel()
    ya = np.asarray(y, dtype=np.float64).ravel()
    if xa.shape != ya.shape:
        raise ValueError(f"x and y differ in length: {xa.size} != {ya.size}")
    keep = ~(np.isnan(xa) | np.isnan(ya))
    return xa[keep], ya[keep]


def clean_frame(df: pd.DataFrame, columns: Sequence[str], hparams: Sequence[str]) -> pd.DataFrame:
    """Rows of ``df`` whose ``columns`` are all non-NaN; checks that every column exists."""
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
