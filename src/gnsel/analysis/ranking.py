"""Rank correlations between a measure and a target: Kendall tau-b and Spearman rho.

Pairs holding a NaN are dropped (``Score.n_nan`` counts them); ``+-inf`` are ordered values (``+inf``
above every finite value, ``-inf`` below, equal infinities tied), so ``kendall([1, 2, inf], [1, 2, 3])`` is 1.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from ._common import finite_pairs, order_ranks

__all__ = ["Score", "kendall", "spearman"]


@dataclass(frozen=True)
class Score:
    """A correlation ``value``, its two-sided ``p_value``, the number ``n`` of pairs used and the number
    ``n_nan`` of pairs dropped because they hold a NaN."""

    value: float
    p_value: float
    n: int
    n_nan: int = 0

    def __float__(self) -> float:
        """The correlation value."""
        return float(self.value)


def _degenerate(x: np.ndarray, y: np.ndarray) -> bool:
    """True when no correlation is defined: under two points or a constant input."""
    return x.size < 2 or np.all(x == x[0]) or np.all(y == y[0])


def _pairs(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """The non-NaN pairs, infinities replaced by ranks that keep their order, and how many were dropped."""
    n_all = np.asarray(x).size
    xa, ya = finite_pairs(x, y)
    return order_ranks(xa), order_ranks(ya), int(n_all - xa.size)


def kendall(x: Any, y: Any) -> Score:
    """Kendall tau-b (ties handled; equals ``scipy.stats.kendalltau``) over the non-NaN pairs, infinities ordered."""
    xa, ya, n_nan = _pairs(x, y)
    if _degenerate(xa, ya):
        return Score(float("nan"), float("nan"), int(xa.size), n_nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.kendalltau(xa, ya, variant="b")
    return Score(float(res.statistic), float(res.pvalue), int(xa.size), n_nan)


def spearman(x: Any, y: Any) -> Score:
    """Spearman rho (average ranks for ties; equals ``scipy.stats.spearmanr``) over the non-NaN pairs,
    infinities ordered."""
    xa, ya, n_nan = _pairs(x, y)
    if _degenerate(xa, ya):
        return Score(float("nan"), float("nan"), int(xa.size), n_nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.spearmanr(xa, ya)
    return Score(float(res.statistic), float(res.pvalue), int(xa.size), n_nan)
