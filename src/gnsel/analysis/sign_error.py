"""Robust sign error of Dziugaite et al. (2020), "In search of robust measures of generalization".

An *environment* is a pair of hyper-parameter configurations that differ in exactly one
hyper-parameter (the "coupled networks" of the paper); the *family* of an environment is
the hyper-parameter that differs. Every pair of runs (r1, r2) with r1 in one configuration
and r2 in the other (all seeds crossed, as in the reference code) is a sample of the
environment, with the sign error

    SE(r1, r2) = (1 - sign(mu_1 - mu_2) * sign(g_1 - g_2)) / 2      (0, 1/2 on a tie, or 1)

and a Monte-Carlo-noise weight. The gaps are estimated on a test set of ``n_test``
examples, so by Hoeffding each estimate is off by more than ``t`` with probability at most
``2 exp(-2 n_test t^2)``; the sign of ``g_1 - g_2`` is then right with probability at least

    w_H(d) = max(0, 1 - 2 exp(-2 n_test (d / 2)^2))^2,    d = max(|g_1 - g_2| - shift, 0).

Weighting (``weighting``):

* ``"soft"`` (default, the reference code's): ``w = (w_H - (1 - delta))_+``; with the
  default ``delta = 0.5`` this is the code's ``(w_H - 0.5)_+``: a pair whose gap
  difference is below the Hoeffding bound ``hoeffding_threshold(n_test, delta)`` gets
  weight 0 (excluded), larger differences are down-weighted smoothly towards 1 - (1-delta);
* ``"hard"``: ``w = 1`` if ``w_H >= 1 - delta`` (i.e. ``|g_1 - g_2| - shift`` exceeds the
  Hoeffding bound at confidence ``1 - delta``) else 0;
* ``"none"``: every pair has weight 1 (the paper's ablation without noise filtering).

The environment's error is the weighted mean ``sum w SE / sum w``; it is kept only if
``sum w > 0`` and its effective sample size ``(sum w)^2 / sum w^2 >= min_ess`` (the paper
uses 12 with its seed replicates; the default 1 keeps any environment with weight).
Per family and over all environments the result reports the mean, the quantiles and the
max; the max over all environments (= the max over families of the family maxima) is the
robust sign error ``sup_e`` of the paper. Each environment is counted once (the reference
code lists (v1, v2) and (v2, v1), a duplicate that leaves mean and max unchanged but can
move an interpolated quantile slightly; quantiles here are ``numpy.quantile``, linear).

Sources: paper (NeurIPS 2020, arXiv:2010.11924) and its code
``nitarshan/robust-generalization-measures`` (``coupled_network/common.py``:
``hoeffding_weight``, ``sign_error``; ``experiments/coupled_networks/create_environments.py``:
``min_weight = 0.5``; ``figure_cdf_all_measures.py``: ``min_ess``, mean / 90th pct / max).

The target must be on the scale of a [0, 1]-bounded loss (error or gap as a fraction), as
Hoeffding's inequality assumes. Hyper-parameter values are compared exactly (round floats
first). Rows with a NaN measure or target are dropped (``n_nan`` counts them). ``+-inf`` are ordered
values (above / below every finite value; equal infinities tie): two runs with the same infinite measure
are a tie in the measure (``SE = 1/2``); two with the same infinite target have gap difference 0 (a tie:
Hoeffding weight 0, so the pair only counts with ``weighting="none"``, at ``SE = 1/2``); an infinite
against a finite target is a difference of ``inf``, whose sign is certain (weight 1).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from ._common import clean_frame, group_ids, hparam_codes, order_diff, order_sign, within_group_pairs

__all__ = ["SignErrorResult", "hoeffding_threshold", "hoeffding_weight", "sign_error"]


def hoeffding_weight(gap_diff: Any, n_test: int, shift: float = 0.0) -> np.ndarray:
    """Lower bound max(0, 1 - 2 exp(-n_test d^2 / 2))^2 on P(sign of the gap difference is right)."""
    d = np.maximum(np.abs(np.asarray(gap_diff, dtype=np.float64)) - shift, 0.0)
    phi = 2.0 * np.exp(-2.0 * n_test * (d / 2.0) ** 2)
    return np.maximum(0.0, 1.0 - phi) ** 2


def hoeffding_threshold(n_test: int, delta: float) -> float:
    """Smallest |g_1 - g_2| whose sign is right with probability >= 1 - delta (Hoeffding)."""
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    return float(np.sqrt(2.0 / n_test * np.log(2.0 / (1.0 - np.sqrt(1.0 - delta)))))


@dataclass(frozen=True)
class SignErrorResult:
    """Mean, max (robust) and quantiles of environment sign errors, per family and overall; ``n_dropped``
    environments not kept (no weight, or too small an effective sample size), ``n_nan`` rows dropped for a
    NaN measure or target."""

    mean: float
    max: float
    quantiles: dict[float, float]
    worst_family: str | None
    per_family: pd.DataFrame
    environments: pd.DataFrame
    n_dropped: int
    n_nan: int = 0

    @property
    def value(self) -> float:
        """The mean sign error over environments (use ``.max`` for the robust one)."""
        return self.mean


def _pair_weights(gap_diff: np.ndarray, weighting: str, n_test: int | None,
                  delta: float, shift: float) -> np.ndarray:
    """Weight of each run pair from its gap difference."""
    if weighting == "none":
        return np.ones_like(gap_diff)
    if n_test is None or n_test <= 0:
        raise ValueError("n_test (the test-set size behind the target) is required unless weighting='none'")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    w = hoeffding_weight(gap_diff, n_test, shift)
    if weighting == "soft":
        return np.maximum(w - (1.0 - delta), 0.0)
    if weighting == "hard":
        return (w >= 1.0 - delta).astype(np.float64)
    raise ValueError(f"weighting must be 'soft', 'hard' or 'none', got {weighting!r}")


def _summary(errors: np.ndarray, quantiles: Sequence[float]) -> dict[str, float]:
    """n, mean, max and the requested quantiles of a set of environment errors."""
    out: dict[str, float] = {"n_envs": float(errors.size)}
    empty = errors.size == 0
    out["mean"] = float("nan") if empty else float(errors.mean())
    out["max"] = float("nan") if empty else float(errors.max())
    for q in quantiles:
        out[f"q{q:g}"] = float("nan") if empty else float(np.quantile(errors, q))
    return out


def sign_error(
    df: pd.DataFrame,
    measure: str,
    target: str,
    hparams: Sequence[str],
    *,
    n_test: int | None = None,
    delta: float = 0.5,
    weighting: Literal["soft", "hard", "none"] = "soft",
    shift: float = 0.0,
    min_ess: float = 1.0,
    quantiles: Sequence[float] = (0.5, 0.9),
    couple_on: str | Sequence[str] | None = None,
) -> SignErrorResult:
    """Sign error of ``measure`` vs ``target`` over coupled-network environments (Dziugaite et al. 2020)."""
    hparams = list(hparams)
    if not hparams:
        raise ValueError("sign_error needs at least one hyper-parameter")
    couple = [couple_on] if isinstance(couple_on, str) else list(couple_on or [])
    data = clean_frame(df, [measure, target], hparams + couple)
    mu = pd.to_numeric(data[measure]).to_numpy(np.float64)
    gap = pd.to_numeric(data[target]).to_numpy(np.float64)
    if weighting != "none" and gap.size and np.nanmax(np.abs(gap)) > 1.0:
        warnings.warn("target exceeds 1 in absolute value: the Hoeffding weights assume a "
                      "[0, 1]-bounded loss (pass fractions, not percentages)", stacklevel=2)
    codes = hparam_codes(data, hparams)
    config = group_ids(codes)
    first = np.unique(config, return_index=True)[1]          # a row of each config
    extra = hparam_codes(data, couple) if couple else np.zeros((len(data), 0), dtype=np.int64)
    frames = []
    for k, h in enumerate(hparams):
        groups = group_ids(np.c_[np.delete(codes, k, axis=1), extra])
        i, j = within_group_pairs(groups)
        differ = codes[i, k] != codes[j, k]
        i, j = i[differ], j[differ]
        if i.size == 0:
            continue
        # by the order of values: inf - inf is a tie (difference 0), not NaN, which pandas' sums would skip
        w = _pair_weights(order_diff(gap[i], gap[j]), weighting, n_test, delta, shift)
        se = (1.0 - order_sign(mu[i], mu[j]) * order_sign(gap[i], gap[j])) / 2.0
        lo, hi = np.minimum(config[i], config[j]), np.maximum(config[i], config[j])
        values = data[h].to_numpy()
        frames.append(pd.DataFrame({"family": h, "config_a": lo, "config_b": hi,
                                    "value_a": values[first[lo]], "value_b": values[first[hi]],
                                    "w": w, "w2": w * w, "wse": w * se, "pairs": 1}))
    columns = ["family", "config_a", "config_b", "value_a", "value_b",
               "n_pairs", "weight", "ess", "sign_error", "kept"]
    if frames:
        pairs = pd.concat(frames, ignore_index=True)
        env = pairs.groupby(["family", "config_a", "config_b"], sort=False).agg(
            value_a=("value_a", "first"), value_b=("value_b", "first"), weight=("w", "sum"),
            w2=("w2", "sum"), wse=("wse", "sum"), n_pairs=("pairs", "sum"),
        ).reset_index()
        with np.errstate(divide="ignore", invalid="ignore"):
            env["ess"] = np.where(env["weight"] > 0, env["weight"] ** 2 / env["w2"], 0.0)
            env["sign_error"] = np.where(env["weight"] > 0, env["wse"] / env["weight"], np.nan)
        env["kept"] = (env["weight"] > 0) & ((env["ess"] >= min_ess) | np.isclose(env["ess"], min_ess))
        env = env[columns]
    else:
        env = pd.DataFrame(columns=columns)
    kept = env[env["kept"].astype(bool)]
    rows = {h: _summary(kept.loc[kept["family"] == h, "sign_error"].to_numpy(np.float64), quantiles)
            for h in hparams}
    per_family = pd.DataFrame.from_dict(rows, orient="index").rename_axis("family")
    per_family["n_envs"] = per_family["n_envs"].astype(int)
    overall = _summary(kept["sign_error"].to_numpy(np.float64), quantiles)
    worst = None
    if kept.shape[0]:
        ranked = per_family.dropna(subset=["max"]).sort_values(
            ["max", "mean"], ascending=False, kind="stable")
        worst = str(ranked.index[0])
    return SignErrorResult(
        mean=overall["mean"], max=overall["max"],
        quantiles={float(q): overall[f"q{q:g}"] for q in quantiles},
        worst_family=worst, per_family=per_family, environments=env.reset_index(drop=True),
        n_dropped=int(env.shape[0] - kept.shape[0]), n_nan=len(df) - len(data),
    )
