"""Two-stage (cluster) bootstrap of any statistic of a frame, and one-sided bootstrap p-values.

A study has several seeds per configuration: :func:`cluster_bootstrap` draws configurations
(the values of a ``group`` column) with replacement and then, inside each drawn configuration,
its rows (seeds) with replacement, so both sources of variation enter the interval.
:func:`bootstrap_pvalue` turns the resampled statistics into a one-sided p-value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ._common import as_float

__all__ = ["BootstrapResult", "bootstrap_pvalue", "cluster_bootstrap", "nested_indices", "percentile_interval"]

MIN_SAMPLES = 10  # fewer finite resamples than this give a NaN interval


@dataclass(frozen=True)
class BootstrapResult:
    """The statistic on the data, a percentile interval, the finite resamples and how many failed."""

    estimate: float
    low: float
    high: float
    samples: np.ndarray = field(repr=False, compare=False)
    n_failed: int = 0

    @property
    def width(self) -> float:
        """``high - low`` (NaN when the interval is)."""
        return float(self.high - self.low)


def _members(frame: pd.DataFrame, group: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions of every group laid end to end, with each group's start and size in them."""
    if group is None:
        n = len(frame)
        return np.arange(n), np.arange(n), np.ones(n, dtype=np.int64)
    if group not in frame.columns:
        raise KeyError(f"group column not in the frame: {group!r}")
    positions = list(frame.groupby(group, sort=False, dropna=False).indices.values())
    sizes = np.array([p.size for p in positions], dtype=np.int64)
    flat = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
    starts = np.cumsum(sizes) - sizes
    return flat, starts, sizes


def nested_indices(frame: pd.DataFrame, group: str | None, *, n_boot: int, seed: int = 0) -> list[np.ndarray]:
    """Row positions of ``n_boot`` two-stage resamples: groups drawn with replacement, then rows within each.

    :func:`cluster_bootstrap` uses them; a caller scoring many statistics on one resample (every measure of a
    zoo) draws them once and reuses them, so that all statistics see the same resamples (paired).
    """
    flat, starts, sizes = _members(frame, group)
    n_groups = sizes.size
    if n_groups == 0:
        return []
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        picked = rng.integers(0, n_groups, size=n_groups)
        picked_sizes = sizes[picked]
        inside = rng.integers(0, np.repeat(picked_sizes, picked_sizes))  # a row of its group, per slot
        out.append(flat[np.repeat(starts[picked], picked_sizes) + inside])
    return out


def cluster_bootstrap(
    frame: pd.DataFrame,
    statistic: Callable[[pd.DataFrame], float],
    *,
    group: str | None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> BootstrapResult:
    """Percentile interval of ``statistic`` by resampling groups, then rows within each drawn group.

    ``group=None`` makes every row its own group (a plain row bootstrap). Resamples whose
    statistic is not finite or raises ``ValueError`` are counted in ``n_failed`` and dropped;
    the interval is NaN with under 10 finite resamples. Deterministic for a ``seed``.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    estimate = as_float(statistic(frame))
    draws = nested_indices(frame, group, n_boot=n_boot, seed=seed)
    if not draws:
        return BootstrapResult(estimate, math.nan, math.nan, np.zeros(0), 0)
    values = np.full(n_boot, np.nan)
    n_failed = 0
    for b, idx in enumerate(draws):
        try:
            value = as_float(statistic(frame.iloc[idx]))
        except ValueError:
            n_failed += 1
            continue
        if math.isfinite(value):
            values[b] = value
        else:
            n_failed += 1
    samples = values[np.isfinite(values)]
    low, high = percentile_interval(samples, level)
    return BootstrapResult(estimate, low, high, samples, n_failed)


def percentile_interval(samples: Any, level: float = 0.95, min_samples: int = MIN_SAMPLES) -> tuple[float, float]:
    """The percentile interval at ``level`` of the finite ``samples``; NaN with fewer than ``min_samples``."""
    s = np.asarray(samples, dtype=np.float64).ravel()
    s = s[np.isfinite(s)]
    if s.size < min_samples:
        return math.nan, math.nan
    low, high = np.quantile(s, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(low), float(high)


def bootstrap_pvalue(samples: Any, threshold: float, alternative: str) -> float:
    """One-sided p-value of the claim "statistic > threshold" (``"greater"``) or "< threshold" (``"less"``).

    ``(1 + #{samples on the wrong side or equal}) / (1 + B)`` over the ``B`` finite samples;
    NaN and infinite samples are ignored, NaN if none is left.
    """
    if alternative not in ("greater", "less"):
        raise ValueError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    s = np.asarray(samples, dtype=np.float64).ravel()
    s = s[np.isfinite(s)]
    if s.size == 0:
        return float("nan")
    wrong = np.count_nonzero(s <= threshold) if alternative == "greater" else np.count_nonzero(s >= threshold)
    return float((1 + wrong) / (1 + s.size))
