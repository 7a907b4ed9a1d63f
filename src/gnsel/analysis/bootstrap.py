"""Percentile bootstrap confidence intervals for any of the scores, resampling models (rows)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ._common import as_float

__all__ = ["CI", "bootstrap_ci"]


class CI(NamedTuple):
    """A point estimate on the full data and a percentile interval ``[low, high]``."""

    estimate: float
    low: float
    high: float


def bootstrap_ci(
    fn: Callable[[pd.DataFrame], Any],
    df: pd.DataFrame,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    groups: str | Sequence[str] | None = None,
) -> CI:
    """Percentile bootstrap (estimate, low, high) of ``fn(df)``, resampling rows (or whole ``groups``).

    ``fn`` maps a frame to a number or to a result with a ``.value`` (``Score``,
    ``GranulatedResult``, ``CMIResult``, ``SignErrorResult``). Rows are drawn with
    replacement; with ``groups`` (e.g. ``"seed"``) whole clusters are drawn instead, which
    keeps each resample a set of complete sub-grids -- advisable for the grid-structured
    scores, where a duplicated row becomes a spurious tied "replicate". Resamples whose
    score is not finite (NaN; the scorers' scores are never infinite) are dropped (a warning says
    how many); the interval is NaN if all are.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    estimate = as_float(fn(df))
    rng = np.random.default_rng(seed)
    if groups is None:
        members = [np.array([r]) for r in range(len(df))]
    else:
        cols = [groups] if isinstance(groups, str) else list(groups)
        members = list(df.groupby(cols, sort=False, dropna=False).indices.values())
    n_units = len(members)
    if n_units == 0:
        return CI(estimate, float("nan"), float("nan"))
    stats = np.empty(n_boot)
    for b in range(n_boot):
        pick = rng.integers(0, n_units, size=n_units)
        rows = np.concatenate([members[p] for p in pick])
        stats[b] = as_float(fn(df.iloc[rows]))
    finite = stats[np.isfinite(stats)]
    if finite.size < n_boot:
        warnings.warn(f"{n_boot - finite.size} of {n_boot} bootstrap resamples gave a non-finite (NaN) score "
                      "and were dropped", stacklevel=2)
    if finite.size == 0:
        return CI(estimate, float("nan"), float("nan"))
    low, high = np.quantile(finite, [alpha / 2.0, 1.0 - alpha / 2.0])
    return CI(estimate, float(low), float(high))
