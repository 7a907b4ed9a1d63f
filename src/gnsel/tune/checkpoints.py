"""Checkpoint selection: which epoch of every run of a finished zoo does each selector pick, and how far is it
from the oracle epoch?

For every run (configuration and seed) and every *selector*, the picked epoch is the candidate with the least
selector value; ties go to the earliest epoch, and candidates whose value is NaN are never picked (a run whose
every candidate is NaN gets no pick: NaN). The candidates are the run's recorded epochs ``1..stop_epoch`` --
never epoch 0 (the untrained model) and never the copies a :class:`~gnsel.tune.lookup.Lookup` forward-fills
after a run stopped at its training criterion -- or, with ``tail=k``, only the last ``k`` of them.

The *oracle* is the candidate with the best test accuracy (earliest on ties), over the same candidates as the
selectors: with a tail window the regret measures the selection inside the window, as a tail-window selection
is judged against the best checkpoint it could have kept. ``best_test_acc`` (over every recorded epoch) and
``regret_all`` (against it) show what the window itself costs; without a window the two regrets are equal.
The regret is the oracle's test accuracy minus the pick's, a fraction (0 = the pick is as good as the oracle).

Selectors: any single objective of :mod:`gnsel.tune.objectives` (``val_loss``, ``gn_fc``,
``val_loss+0.1*gn_fc``, ...), evaluated only through :meth:`Lookup.objective_table`, and the built-ins
``last`` (the stopping point: the checkpoint one keeps without any selection) and the raw records
``gn_fc_mean_grad_sq`` / ``gn_full_mean_grad_sq`` (the squared norm of the probe-set *mean* gradient; for the
head this has the same argmin as the Frobenius norm of the batch-mean head gradient Wu & Summa (2026) probe,
whereas ``gn_fc`` is the mean *per-example* squared norm). The oracle is not a selector.

:func:`checkpoint_summary` gives per selector the mean regret with a 95% percentile interval from a bootstrap
over configurations with their seeds nested (:func:`gnsel.analysis.resample.nested_indices`), and the paired
difference to a baseline selector on the same resamples; ``share_last`` is the share of runs whose pick is the
stopping epoch (what ``last`` keeps), ``share_oracle`` that of runs whose pick is as good as the oracle, both over
the runs with a pick. The verdicts (the study's one rule, on the paired interval) are added by
:func:`gnsel.study.checkpoints.with_verdicts`: the tune layer does not import the study.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..analysis.resample import bootstrap_pvalue, nested_indices, percentile_interval
from .lookup import Lookup
from .objectives import Objective, parse_objective
from .replay import split_objectives

__all__ = [
    "BUILT_IN",
    "DEFAULT_SELECTORS",
    "LAST",
    "PICK_COLUMNS",
    "RAW_SELECTORS",
    "checkpoint_picks",
    "checkpoint_summary",
    "parse_selectors",
    "selector_uses_gn",
    "stop_epochs",
]  # fmt: skip

LAST = "last"
RAW_SELECTORS = {  # recorded metrics that are no objective term, selectable by name (all GN)
    "gn_fc_mean_grad_sq": "squared norm of the classifier head's mean gradient on the probe set",
    "gn_full_mean_grad_sq": "squared norm of the full mean gradient on the probe set",
}
BUILT_IN = (LAST, *RAW_SELECTORS)
DEFAULT_SELECTORS = ("last", "val_loss", "val_error", "gn_full", "gn_fc", "gn_fc_mean_grad_sq", "traj_gn",
                     "val_loss+0.1*gn_full", "val_loss+0.1*gn_fc", "val_loss+1*gn_fc")  # fmt: skip
PICK_COLUMNS = ("config", "label", "replicate", "run_id", "selector", "epoch", "test_acc", "oracle_epoch",
                "oracle_test_acc", "regret", "best_test_acc", "regret_all", "stop_epoch")  # fmt: skip


# ----------------------------------------------------------------------------- selectors
def _objective(text: str) -> Objective:
    """A single objective, or a one-line ValueError (multi-objectives pick no single epoch)."""
    try:
        obj = parse_objective(text)
    except ValueError as err:
        raise ValueError(f"{err}; or a built-in selector: {', '.join(BUILT_IN)}") from None
    if obj.multi:
        raise ValueError(f"checkpoint selection needs a single objective, not the multi-objective {text!r}")
    return obj


def parse_selectors(text: str | Sequence[str]) -> list[str]:
    """Selector texts from ``"a,b"`` / ``"a;b"`` (split as objectives are) or a list; each checked, duplicates
    dropped; a ValueError names a bad one."""
    items = split_objectives(text) if isinstance(text, str) else [str(t).strip() for t in text if str(t).strip()]
    if not items:
        raise ValueError(f"give at least one selector, e.g. 'val_loss,gn_fc'; built-ins: {', '.join(BUILT_IN)}")
    for s in items:
        if s not in BUILT_IN:
            _objective(s)
    return list(dict.fromkeys(items))


def selector_uses_gn(selector: str) -> bool:
    """Whether a selector reads a gradient norm (``last`` does not; the raw GN records do)."""
    if selector == LAST:
        return False
    return selector in RAW_SELECTORS or _objective(selector).uses_gn


def _values(lookup: Lookup, selector: str) -> np.ndarray:
    """The selector's value per (config, replicate, epoch); smaller is picked."""
    shape = lookup.metrics["test_acc"].shape
    if selector == LAST:
        return np.broadcast_to(-np.arange(shape[2], dtype=float), shape)
    if selector in RAW_SELECTORS:
        if selector not in lookup.metrics:
            raise ValueError(f"selector {selector!r} needs a metric the zoo does not record")
        return lookup.metrics[selector]
    return lookup.objective_table(_objective(selector))[0][..., 0]


# ----------------------------------------------------------------------------- candidates and picks
def stop_epochs(lookup: Lookup) -> np.ndarray:
    """Each run's last recorded epoch, shape ``(configs, replicates)``; -1 where there is no run."""
    if lookup.last_epochs is not None:
        return np.asarray(lookup.last_epochs, dtype=int)
    finite = np.isfinite(lookup.metrics["test_acc"])  # a hand-built lookup: no forward-filled copies
    idx = np.arange(finite.shape[2])
    return np.where(finite.any(axis=2), np.max(np.where(finite, idx, -1), axis=2), -1)


def _candidates(stop: np.ndarray, n_epochs: int, tail: int | None) -> np.ndarray:
    """Mask ``(configs, replicates, epochs + 1)`` of the candidate epochs: ``1..stop`` or its last ``tail``."""
    e = np.arange(n_epochs)[None, None, :]
    first = np.ones_like(stop) if tail is None else np.maximum(1, stop - tail + 1)
    return (e >= first[..., None]) & (e <= stop[..., None])


def _argmin(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The earliest candidate with the least non-NaN value per run; -1 where there is none."""
    valid = mask & ~np.isnan(values)
    masked = np.where(valid, values, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN runs: no pick
        least = np.nanmin(masked, axis=2)
    hit = valid & (masked == least[..., None])
    return np.where(valid.any(axis=2), hit.argmax(axis=2), -1)


def _at(arr: np.ndarray, epoch: np.ndarray) -> np.ndarray:
    """``arr[c, r, epoch[c, r]]``, NaN where ``epoch`` is -1."""
    got = np.take_along_axis(arr, np.maximum(epoch, 0)[..., None], axis=2)[..., 0]
    return np.where(epoch >= 0, got, np.nan)


def _epochs(epoch: np.ndarray, runs: list[tuple[int, int]]) -> list[float]:
    """The picked epoch of every run, NaN where there is no pick."""
    return [float(epoch[c, r]) if epoch[c, r] >= 0 else np.nan for c, r in runs]


def checkpoint_picks(lookup: Lookup, selectors: str | Sequence[str] = DEFAULT_SELECTORS,
                     tail: int | None = None) -> pd.DataFrame:  # fmt: skip
    """One row per (run, selector): the picked epoch and its test accuracy, the oracle's, the regret
    (columns :data:`PICK_COLUMNS`); the oracle is over the same candidates (see the module docstring)."""
    names = parse_selectors(selectors)
    if tail is not None and (isinstance(tail, bool) or not isinstance(tail, (int, np.integer)) or tail < 1):
        raise ValueError(f"tail must be a positive number of epochs, got {tail!r}")
    if "test_acc" not in lookup.metrics:
        raise ValueError("the zoo records no test_acc: there is no oracle to compare with")
    test = lookup.metrics["test_acc"]
    stop = stop_epochs(lookup)
    every, window = _candidates(stop, test.shape[2], None), _candidates(stop, test.shape[2], tail)
    oracle = _argmin(-test, window)
    oracle_acc, best = _at(test, oracle), _at(test, _argmin(-test, every))
    runs = [(c, r) for c in range(len(lookup.configs)) for r in range(int(lookup.n_replicates[c])) if stop[c, r] >= 1]
    frames = []
    for name in names:
        pick = _argmin(_values(lookup, name), window)
        acc = _at(test, pick)
        frames.append(pd.DataFrame({
            "config": [c for c, _ in runs], "label": [lookup.label(c) for c, _ in runs],
            "replicate": [r for _, r in runs], "run_id": [lookup.run_ids[c][r] for c, r in runs], "selector": name,
            "epoch": _epochs(pick, runs), "test_acc": [acc[c, r] for c, r in runs],
            "oracle_epoch": _epochs(oracle, runs),
            "oracle_test_acc": [oracle_acc[c, r] for c, r in runs],
            "regret": [oracle_acc[c, r] - acc[c, r] for c, r in runs], "best_test_acc": [best[c, r] for c, r in runs],
            "regret_all": [best[c, r] - acc[c, r] for c, r in runs], "stop_epoch": [int(stop[c, r]) for c, r in runs],
        }))  # fmt: skip
    return pd.concat(frames, ignore_index=True)[list(PICK_COLUMNS)]


# ----------------------------------------------------------------------------- summary
def _interval(estimate: float, samples: np.ndarray) -> tuple[float, float]:
    """95% percentile interval of the finite samples, widened to include the estimate where it falls outside."""
    low, high = percentile_interval(samples)
    if np.isfinite(low) and np.isfinite(estimate):
        low, high = min(low, estimate), max(high, estimate)
    return low, high


def _nanmean(arr: np.ndarray, axis: int = 0) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column with no finite value: NaN
        return np.nanmean(arr, axis=axis)


def checkpoint_summary(picks: pd.DataFrame, baseline: str = "val_loss", resamples: int = 1000,
                       seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """Per selector: mean regret with a 95% bootstrap interval over configurations (seeds nested), and the
    paired difference ``vs_baseline`` = baseline regret minus this one (positive = better than the baseline), with
    ``p_better``, the one-sided bootstrap p-value of "better than the baseline" (unadjusted)."""
    selectors = list(dict.fromkeys(picks["selector"]))
    if baseline not in selectors:
        raise ValueError(f"baseline selector {baseline!r} is not among the picks ({', '.join(selectors)})")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    wide = picks.pivot(index=["config", "replicate"], columns="selector", values="regret")
    regret = wide.reindex(columns=selectors).to_numpy(dtype=float)
    diff = regret[:, [selectors.index(baseline)]] - regret
    runs = wide.index.to_frame(index=False)
    draws = nested_indices(runs, "config", n_boot=resamples, seed=seed)
    boot_r = np.array([_nanmean(regret[i]) for i in draws]).reshape(len(draws), len(selectors))
    boot_d = np.array([_nanmean(diff[i]) for i in draws]).reshape(len(draws), len(selectors))
    rows = []
    for j, name in enumerate(selectors):
        g = picks[picks["selector"] == name]
        mean, vs = float(_nanmean(regret[:, j])), float(_nanmean(diff[:, j]))
        low, high = _interval(mean, boot_r[:, j])
        vs_low, vs_high = _interval(vs, boot_d[:, j])
        rows.append({
            "selector": name, "uses_gn": selector_uses_gn(name), "runs": int(g["regret"].notna().sum()),
            "mean_regret": mean, "low": low, "high": high, "regret_points": 100.0 * mean,
            "median_regret": float(g["regret"].median()), "share_oracle": float((g["regret"].dropna() <= 1e-12).mean()),
            "mean_test_acc": float(g["test_acc"].mean()), "mean_epoch": float(g["epoch"].mean()),
            "share_last": float((g["epoch"] == g["stop_epoch"])[g["epoch"].notna()].mean()),
            "mean_regret_all": float(g["regret_all"].mean()), "vs_baseline": vs, "vs_low": vs_low, "vs_high": vs_high,
            "p_better": bootstrap_pvalue(boot_d[:, j], 0.0, "greater") if name != baseline else np.nan,
        })  # fmt: skip
    return pd.DataFrame(rows)
