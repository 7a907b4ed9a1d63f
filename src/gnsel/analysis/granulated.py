"""Granulated Kendall coefficient of Jiang et al. (2020), "Fantastic Generalization Measures", Eq. 4-5.

For each hyper-parameter ``i`` the models are split into groups that share the values of
every *other* hyper-parameter (Jiang et al.: one group per point of
``Theta_1 x ... x Theta_{i-1} x Theta_{i+1} x ... x Theta_n``); inside a group only
hyper-parameter ``i`` (and the seed, if there are replicates) varies. ``psi_i`` is the
unweighted mean over groups of the group's Kendall coefficient and ``Psi`` the mean of
the ``psi_i``.

Conventions (fixed here, since the paper assumes a complete grid with one model per point):

* group tau, ``tau="jiang"`` (default): the paper's Eq. 3, the plain average over the
  group's pairs of ``sign(mu_a - mu_b) * sign(g_a - g_b)``; a pair tied in the measure or
  in the target contributes 0 and still counts in the denominator (this is tau-a).
  ``tau="b"``: Kendall tau-b inside the group instead; a group in which every pair is tied
  in the measure or in the target has no tau-b and is skipped.
* a group is used only if it holds at least 2 models *and* at least 2 distinct values of
  hyper-parameter ``i``; otherwise it is skipped (counted in ``n_skipped``). Replicates
  (same config, e.g. other seeds) stay in their group and their pairs count.
* ``psi_i`` is NaN when no group of ``i`` is usable; ``Psi`` is the mean of the defined
  ``psi_i`` (NaN if none); ``n_defined`` says how many entered it.
* rows with a NaN measure or target are dropped first (``n_nan`` counts them); a NaN
  hyper-parameter value is a value. ``+-inf`` in the measure or the target are ordered values
  (above / below every finite value; equal infinities tie), so every axis keeps its groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from ._common import clean_frame, group_ids, hparam_codes, order_sign, within_group_pairs

__all__ = ["GranulatedResult", "granulated_kendall", "grouped_tau"]


@dataclass(frozen=True)
class GranulatedResult:
    """Per-hyper-parameter ``psi`` with group/pair counts, the overall ``Psi``, and the number ``n_nan`` of
    rows dropped for a NaN measure or target."""

    psi: dict[str, float]
    n_groups: dict[str, int]
    n_skipped: dict[str, int]
    n_pairs: dict[str, int]
    overall: float
    n_defined: int
    tau: str = field(default="jiang")
    n_nan: int = 0

    @property
    def value(self) -> float:
        """The overall granulated coefficient Psi."""
        return self.overall

    def to_frame(self) -> pd.DataFrame:
        """One row per hyper-parameter: psi, n_groups, n_skipped, n_pairs."""
        return pd.DataFrame(
            {"psi": self.psi, "n_groups": self.n_groups,
             "n_skipped": self.n_skipped, "n_pairs": self.n_pairs}
        ).rename_axis("hparam")


def grouped_tau(
    measure: np.ndarray, target: np.ndarray, groups: np.ndarray, *, tau: Literal["jiang", "b"] = "jiang"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group id ``0..G-1``: (tau or NaN, number of pairs, whether tau is defined)."""
    n_groups = int(groups.max()) + 1 if groups.size else 0
    i, j = within_group_pairs(groups)
    dm = order_sign(measure[i], measure[j])  # not np.sign(a - b): inf - inf is NaN, here a tie
    dg = order_sign(target[i], target[j])
    g = groups[i]
    pairs = np.bincount(g, minlength=n_groups).astype(np.float64)
    concord = np.bincount(g, weights=dm * dg, minlength=n_groups)
    if tau == "jiang":
        denom = pairs
    elif tau == "b":
        untied_m = np.bincount(g, weights=(dm != 0).astype(np.float64), minlength=n_groups)
        untied_g = np.bincount(g, weights=(dg != 0).astype(np.float64), minlength=n_groups)
        denom = np.sqrt(untied_m * untied_g)
    else:
        raise ValueError(f"tau must be 'jiang' or 'b', got {tau!r}")
    ok = denom > 0
    values = np.full(n_groups, np.nan)
    values[ok] = concord[ok] / denom[ok]
    return values, pairs.astype(np.int64), ok


def granulated_kendall(
    df: pd.DataFrame,
    measure: str,
    target: str,
    hparams: Sequence[str],
    *,
    tau: Literal["jiang", "b"] = "jiang",
) -> GranulatedResult:
    """Granulated Kendall psi_i per hyper-parameter and Psi = mean_i psi_i (Jiang et al. 2020, Eq. 4-5)."""
    hparams = list(hparams)
    if not hparams:
        raise ValueError("granulated_kendall needs at least one hyper-parameter")
    data = clean_frame(df, [measure, target], hparams)
    mu = pd.to_numeric(data[measure]).to_numpy(np.float64)
    gap = pd.to_numeric(data[target]).to_numpy(np.float64)
    codes = hparam_codes(data, hparams)
    psi: dict[str, float] = {}
    used: dict[str, int] = {}
    skipped: dict[str, int] = {}
    n_pairs: dict[str, int] = {}
    for k, h in enumerate(hparams):
        groups = group_ids(np.delete(codes, k, axis=1))
        n_all = int(groups.max()) + 1 if groups.size else 0
        values, pairs, ok = grouped_tau(mu, gap, groups, tau=tau)
        # number of distinct values of hyper-parameter h inside each group
        combos = np.unique(np.c_[groups, codes[:, k]], axis=0)
        distinct = np.bincount(combos[:, 0], minlength=n_all)
        usable = ok & (distinct >= 2)
        psi[h] = float(values[usable].mean()) if usable.any() else float("nan")
        used[h] = int(usable.sum())
        skipped[h] = n_all - used[h]
        n_pairs[h] = int(pairs[usable].sum())
    defined = [v for v in psi.values() if not np.isnan(v)]
    overall = float(np.mean(defined)) if defined else float("nan")
    return GranulatedResult(psi, used, skipped, n_pairs, overall, len(defined), tau, len(df) - len(data))
