"""Kendall tau of a measure and a target with a third variable held fixed: partial and stratified.

:func:`partial_kendall` removes the part of the association that both share with ``z``
(Kendall's partial tau); :func:`stratified_kendall` compares only rows of the same stratum
(e.g. of :func:`quantile_strata` of ``z``) and pools the within-stratum taus by their pairs.
Inputs are array-likes of one length, compared by position (a pandas index is not aligned). Rows holding
a NaN are dropped; ``+-inf`` are ordered values (above / below every finite value, equal infinities tie),
also when :func:`quantile_strata` bins them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ._common import order_ranks
from .ranking import kendall

__all__ = ["partial_kendall", "quantile_strata", "stratified_kendall"]


def _floats(a: Any) -> np.ndarray:
    """``a`` as a flat float64 array (by position)."""
    return np.asarray(a, dtype=np.float64).ravel()


def partial_kendall(x: Any, y: Any, z: Any) -> float:
    """Kendall's partial tau of ``x`` and ``y`` given ``z`` from the three pairwise tau-b.

    ``(t_xy - t_xz t_yz) / sqrt((1 - t_xz^2)(1 - t_yz^2))`` over the rows where none is NaN;
    NaN under 3 rows, when a tau is undefined (a constant input) or the denominator is 0.
    """
    xa, ya, za = _floats(x), _floats(y), _floats(z)
    if not xa.size == ya.size == za.size:
        raise ValueError(f"x, y and z differ in length: {xa.size}, {ya.size}, {za.size}")
    keep = ~(np.isnan(xa) | np.isnan(ya) | np.isnan(za))
    xa, ya, za = xa[keep], ya[keep], za[keep]
    if xa.size < 3:
        return float("nan")
    t_xy, t_xz, t_yz = kendall(xa, ya).value, kendall(xa, za).value, kendall(ya, za).value
    if math.isnan(t_xy) or math.isnan(t_xz) or math.isnan(t_yz):
        return float("nan")
    denominator = (1.0 - t_xz**2) * (1.0 - t_yz**2)
    if not denominator > 0.0:
        return float("nan")
    return float((t_xy - t_xz * t_yz) / math.sqrt(denominator))


def stratified_kendall(x: Any, y: Any, strata: Any) -> float:
    """Mean of the within-stratum Kendall tau-b of ``x`` and ``y``, weighted by pairs ``n_s(n_s-1)/2``.

    Rows with a NaN ``x``/``y`` or a missing label are dropped; strata under 2 rows or with an
    undefined tau (constant within) are skipped; NaN if none is left.
    """
    xa, ya = _floats(x), _floats(y)
    labels = np.asarray(strata, dtype=object).ravel()
    if not xa.size == ya.size == labels.size:
        raise ValueError(f"x, y and strata differ in length: {xa.size}, {ya.size}, {labels.size}")
    codes, _ = pd.factorize(labels)  # a missing label (None/NaN) gets -1
    keep = ~(np.isnan(xa) | np.isnan(ya)) & (codes >= 0)
    xa, ya, codes = xa[keep], ya[keep], codes[keep]
    total, weight = 0.0, 0.0
    for rows in pd.Series(codes).groupby(codes).indices.values():
        n = rows.size
        if n < 2:
            continue
        tau = kendall(xa[rows], ya[rows]).value
        if math.isnan(tau):
            continue
        pairs = n * (n - 1) / 2.0
        total += pairs * tau
        weight += pairs
    return float(total / weight) if weight > 0 else float("nan")


def quantile_strata(z: Any, n_bins: int = 4) -> np.ndarray:
    """Integer stratum labels ``0..k-1`` of ``z`` by its quantiles (``pd.qcut``, duplicate edges dropped).

    NaN ``z`` gets -1; a constant ``z`` is one stratum (0), so ``k`` may be below ``n_bins``. ``+-inf`` are
    ordered values: with any, the quantiles are taken of the ranks (the same strata as of the values, which
    quantile interpolation cannot do across an infinity: ``inf - inf`` is NaN).
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    za = _floats(z)
    labels = np.full(za.size, -1, dtype=np.int64)
    finite = ~np.isnan(za)
    if not finite.any():
        return labels
    values = za[finite]
    if np.all(values == values[0]):
        labels[finite] = 0
        return labels
    binned = pd.qcut(order_ranks(values), n_bins, labels=False, duplicates="drop")
    labels[finite] = np.asarray(binned, dtype=np.int64)
    return labels
