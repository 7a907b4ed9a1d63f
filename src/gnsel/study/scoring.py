"""How well each measure ranks a zoo's models, with intervals that resample configurations (seeds nested).

One table per set of runs (every measure a row), shared by the correlation and architectures parts:

* ``kendall`` with its 95% interval from a two-stage bootstrap: the zoo's *configurations* are drawn with
  replacement, then the seeds of each drawn configuration (:func:`gnsel.analysis.nested_indices`), so the
  interval covers which models happen to be in the zoo and the seed-to-seed noise, not only the latter;
  every measure sees the same resamples, so differences between measures are paired;
* ``p_holm``: the one-sided bootstrap p-value of "tau <= 0", Holm-adjusted over all the measures scored;
* ``granulated`` (Jiang et al. 2020's Psi) with the same kind of interval, for the measures named in
  ``granulated_for`` (a duplicated configuration in a resample adds pairs tied in everything, which
  count 0: the resampled Psi leans towards 0, so the interval is conservative);
* the controls: ``partial`` (Kendall's partial tau given the training loss) and ``stratified`` (the
  pair-weighted mean tau within quartiles of the training loss): does a measure say more than "this model
  trained less"?; and ``vs_baselines`` = tau minus the best tau of the baselines that need no model
  (``budget``, ``train_loss``, ``train_error``), paired by resample, with its interval: a measure *beats
  the baselines* only if that interval lies above 0;
* ``rank``: 1 + the number of measures whose interval lies entirely above this one's
  (:func:`gnsel.analysis.separated_ranks`), so measures whose intervals overlap share a rank.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..analysis import (
    bootstrap_pvalue,
    granulated_kendall,
    holm,
    kendall,
    nested_indices,
    partial_kendall,
    percentile_interval,
    quantile_strata,
    separated_ranks,
    stratified_kendall,
)

__all__ = ["BASELINES", "GRANULATED_FOR", "MIN_CONVERGED", "Scores", "config_labels", "converged", "score_measures",
           "scored_runs"]

BASELINES = ("budget", "train_loss", "train_error")
"""Measures that need no trained model's weights: the training budget and how far training got."""
GRANULATED_FOR = ("gn_full", "gn_fc", "traj_gn", "val_loss", *BASELINES)
CONTROL = "train_loss"
MIN_CONVERGED = 8
"""With fewer runs that met the training criterion than this, every run is scored (and the report says so)."""


@dataclass
class Scores:
    """A score table (one row per measure) and each measure's bootstrap taus (the same resamples for all)."""

    table: pd.DataFrame
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    n_boot: int = 0
    n_models: int = 0
    n_configs: int = 0


def converged(runs: pd.DataFrame) -> pd.Series:
    """Whether each run met its training criterion (a ``converged`` column; empty counts as not)."""
    return runs["converged"].astype("boolean").fillna(False).astype(bool)


def scored_runs(values: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """The runs to score: those that met the criterion if at least :data:`MIN_CONVERGED` did (True), else all."""
    met = converged(values)
    return (values[met], True) if met.sum() >= MIN_CONVERGED else (values, False)


def config_labels(frame: pd.DataFrame, hparams: Sequence[str]) -> pd.Series:
    """One label per configuration (the hyper-parameters' values; seeds aside) for every row."""
    if not hparams:
        return pd.Series([str(i) for i in range(len(frame))], index=frame.index)
    rows = frame[list(hparams)].itertuples(index=False)
    return pd.Series(["|".join(map(repr, row)) for row in rows], index=frame.index)


def _tau(x: np.ndarray, y: np.ndarray) -> float:
    ok = ~np.isnan(x) & ~np.isnan(y)  # +-inf are ordered values (the analysis rule); NaN is missing
    if ok.sum() < 3 or np.unique(x[ok]).size < 2:
        return math.nan
    return kendall(x[ok], y[ok]).value


def _granulated(frame: pd.DataFrame, measure: str, target: str, hparams: list[str]) -> float:
    if not hparams:
        return math.nan
    sub = frame[[measure, target, *hparams]].dropna(subset=[measure, target])
    if len(sub) < 3 or sub[measure].nunique() < 2:
        return math.nan
    return granulated_kendall(sub, measure, target, hparams).value


def score_measures(
    frame: pd.DataFrame, measures: Sequence[str], target: str, hparams: Sequence[str], *, n_boot: int = 1000,
    seed: int = 0, granulated_for: Sequence[str] = GRANULATED_FOR, granulated_boot: int = 200,
) -> Scores:  # fmt: skip
    """Score every measure in ``frame`` (one row per run) against ``target``; see the module docstring."""
    hparams = [h for h in hparams if h in frame.columns]
    measures = [m for m in measures if m in frame.columns]
    data = frame.reset_index(drop=True).copy()
    data["_config"] = config_labels(data, hparams).to_numpy()
    draws = nested_indices(data, "_config", n_boot=n_boot, seed=seed) if len(data) else []
    y = pd.to_numeric(data[target], errors="coerce").to_numpy(dtype=float)
    control = pd.to_numeric(data[CONTROL], errors="coerce").to_numpy(dtype=float) if CONTROL in data else None
    strata = quantile_strata(control, 4) if control is not None else None
    rows, samples = [], {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in measures:
            x = pd.to_numeric(data[m], errors="coerce").to_numpy(dtype=float)
            boot = np.array([_tau(x[idx], y[idx]) for idx in draws]) if draws else np.zeros(0)
            samples[m] = boot
            low, high = percentile_interval(boot)
            row = {"measure": m, "models": int(np.sum(~np.isnan(x) & ~np.isnan(y))), "kendall": _tau(x, y),
                   "kendall_low": low, "kendall_high": high,
                   "p_tau_le_0": bootstrap_pvalue(boot, 0.0, "greater") if boot.size else math.nan,
                   "granulated": _granulated(data, m, target, hparams), "granulated_low": math.nan,
                   "granulated_high": math.nan}  # fmt: skip
            if m in granulated_for and draws:
                g = np.array([_granulated(data.iloc[idx], m, target, hparams) for idx in draws[:granulated_boot]])
                row["granulated_low"], row["granulated_high"] = percentile_interval(g)
            if control is not None and m != CONTROL:
                row["partial"] = partial_kendall(x, y, control)
                row["stratified"] = stratified_kendall(x, y, strata)
            else:
                row["partial"] = row["stratified"] = math.nan
            rows.append(row)
    table = pd.DataFrame(rows).set_index("measure") if rows else pd.DataFrame()
    if table.empty:
        return Scores(table, samples, n_boot, len(data), int(data["_config"].nunique()) if len(data) else 0)
    table["p_holm"] = holm(table["p_tau_le_0"])
    _vs_baselines(table, samples)
    table["rank"] = separated_ranks(table["kendall"], table["kendall_low"], table["kendall_high"])
    return Scores(table, samples, n_boot, len(data), int(data["_config"].nunique()))


def _vs_baselines(table: pd.DataFrame, samples: dict[str, np.ndarray]) -> None:
    """Each measure's tau minus the best baseline's, paired by resample, and whether it beats them."""
    base = [b for b in BASELINES if b in table.index and math.isfinite(table.loc[b, "kendall"])]
    table["vs_baselines"] = table["vs_baselines_low"] = table["vs_baselines_high"] = math.nan
    table["beats_baselines"] = pd.array([pd.NA] * len(table), dtype="boolean")
    if not base:
        return
    best = max(base, key=lambda b: table.loc[b, "kendall"])
    for m in table.index:
        if m in BASELINES or samples.get(m) is None or not samples[m].size:
            continue
        diff = samples[m] - samples[best]
        low, high = percentile_interval(diff)
        table.loc[m, ["vs_baselines", "vs_baselines_low", "vs_baselines_high"]] = (
            table.loc[m, "kendall"] - table.loc[best, "kendall"], low, high)
        if math.isfinite(low):
            table.loc[m, "beats_baselines"] = bool(low > 0)
    table.attrs["best_baseline"] = best
