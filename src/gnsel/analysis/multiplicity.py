"""Adjusting a family of p-values for multiple comparisons (Holm-Bonferroni).

One test per measure makes a family: :func:`holm` controls the family-wise error rate
without assuming independence. NaN p-values (tests that could not be run) stay NaN and do not
count in the family.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["holm"]


def _holm_array(p: np.ndarray) -> np.ndarray:
    """Holm-adjusted copy of a float array; NaN entries stay NaN and are left out of the family."""
    out = np.full(p.shape, np.nan)
    finite = ~np.isnan(p)
    if np.any((p[finite] < 0.0) | (p[finite] > 1.0)):
        raise ValueError(f"p-values must lie in [0, 1], got {p[finite][(p[finite] < 0) | (p[finite] > 1)]}")
    if finite.any():
        from statsmodels.stats.multitest import multipletests  # heavy: statsmodels (0.8 s), only when adjusting

        out[finite] = multipletests(p[finite], method="holm")[1]
    return out


def holm(pvalues: Any) -> Any:
    """Holm-Bonferroni adjusted p-values in the container given: list, array, dict or Series.

    A Mapping gives a dict and a Series a Series with the same keys/index; an array an array of
    its shape; any other sequence a list of floats. The family is the non-NaN p-values.
    """
    if isinstance(pvalues, pd.Series):
        adjusted = _holm_array(pvalues.to_numpy(dtype=np.float64))
        return pd.Series(adjusted, index=pvalues.index, name=pvalues.name)
    if isinstance(pvalues, np.ndarray):
        p = pvalues.astype(np.float64)
        return _holm_array(p.ravel()).reshape(p.shape)
    if isinstance(pvalues, Mapping):
        keys = list(pvalues)
        adjusted = _holm_array(np.array([pvalues[k] for k in keys], dtype=np.float64))
        return {k: float(v) for k, v in zip(keys, adjusted, strict=True)}
    adjusted = _holm_array(np.asarray(list(pvalues), dtype=np.float64).ravel())
    return [float(v) for v in adjusted]
