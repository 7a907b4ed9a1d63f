"""Rank correlations between a measure and a target: Kendall tau-b and Spearman rho."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from ._common import finite_pairs

__all__ = ["Score", "kendall", "spearman"]


@dataclass(frozen=True)
class Score:
    """A correlation ``value``, its two-sided ``p_value`` and the number ``n`` of pairs used."""

    value: float
    p_value: float
    n: int

    def __float__(self) -> float:
        """The correlation value."""
        return float(self.value)


def _degenerate(x: np.ndarray, y: np.ndarray) -> bool:
    """True when no correlation is defined: under two points or a constant input."""
    return x.size < 2 or np.all(x == x[0]) or np.all(y == y[0])


def kendall(x: Any, y: Any) -> Score:
    """Kendall tau-b (ties handled; equals ``scipy.stats.kendalltau``) over the non-NaN pairs."""
    xa, ya = finite_pairs(x, y)
    if _degenerate(xa, ya):
        return Score(float("nan"), float("nan"), int(xa.size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.kendalltau(xa, ya, variant="b")
    return Score(float(res.statistic), float(res.pvalue), int(xa.size))


def spearman(x: Any, y: Any) -> Score:
    """Spearman rho (average ranks for ties; equals ``scipy.stats.spearmanr``) over the non-NaN pairs."""
    xa, ya = finite_pairs(x, y)
    if _degenerate(xa, ya):
        return Score(float("nan"), float("nan"), int(xa.size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.spearmanr(xa, ya)
    return Score(float(res.statistic), float(res.pvalue), int(xa.size))
