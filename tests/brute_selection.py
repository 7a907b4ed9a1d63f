"""Brute-force reference for the exact expectations of grid and random search (gnsel.tune.exact).

Enumerates every k-subset (without replacement) or every k-tuple (with replacement) of the rows; the
selection is the row with the least value, ties averaged over the tied rows. Nothing here imports gnsel.
"""

from __future__ import annotations

import itertools

import numpy as np


def brute_expected(values: np.ndarray, acc: np.ndarray, k: int, replacement: bool) -> float:
    """Mean over every k-subset (or k-tuple) of the accuracy of its least value (ties: mean over the tied)."""
    idx = range(len(values))
    draws = itertools.product(idx, repeat=k) if replacement else itertools.combinations(idx, k)
    out = []
    for d in draws:
        best = min(values[i] for i in d)
        tied = sorted({i for i in d if values[i] == best})
        out.append(np.mean([acc[i] for i in tied]))
    return float(np.mean(out))
