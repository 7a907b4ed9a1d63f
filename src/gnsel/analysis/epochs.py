"""Scores along training: apply a scorer to the runs' state at each epoch."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._common import as_float
from .bootstrap import bootstrap_ci

__all__ = ["combine_epoch_scores", "per_epoch"]


def per_epoch(
    df_epochs: pd.DataFrame,
    score_fn: Callable[[pd.DataFrame], Any],
    epochs: Iterable[int] | None = None,
    *,
    ci: bool = False,
    n_boot: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
    groups: str | Sequence[str] | None = None,
    epoch_col: str = "epoch",
) -> pd.DataFrame:
    """Frame indexed by epoch with ``score`` and ``n`` (rows), plus ``low``/``high`` when ``ci``.

    ``df_epochs`` holds one row per run per epoch; ``score_fn`` gets the rows of one epoch
    and returns a number or a result with ``.value``. ``epochs`` restricts (and orders) the
    epochs; an epoch absent from the table gives a row of NaN with ``n = 0``. ``ci`` adds a
    percentile bootstrap over the epoch's rows (see :func:`bootstrap_ci`; ``groups``
    resamples whole clusters).
    """
    if epoch_col not in df_epochs.columns:
        raise KeyError(f"no {epoch_col!r} column in the epoch table")
    present = np.sort(df_epochs[epoch_col].dropna().unique())
    wanted = list(present) if epochs is None else list(epochs)
    by_epoch = dict(tuple(df_epochs.groupby(epoch_col, sort=True)))
    rows = []
    for e in wanted:
        part = by_epoch.get(e)
        row: dict[str, float] = {epoch_col: e}
        if part is None or part.empty:
            row.update(score=np.nan, n=0)
            if ci:
                row.update(low=np.nan, high=np.nan)
        elif ci:
            est, low, high = bootstrap_ci(score_fn, part, n_boot=n_boot, alpha=alpha,
                                          seed=seed, groups=groups)
            row.update(score=est, low=low, high=high, n=len(part))
        else:
            row.update(score=as_float(score_fn(part)), n=len(part))
        rows.append(row)
    columns = [epoch_col, "score", "low", "high", "n"] if ci else [epoch_col, "score", "n"]
    out = pd.DataFrame(rows, columns=columns).set_index(epoch_col)
    out["n"] = out["n"].astype(int)
    return out


def combine_epoch_scores(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Wide frame epoch x measure from ``{name: per_epoch(...)}``, with ``<name>_low``/``<name>_high``."""
    parts = []
    for name, frame in frames.items():
        part = pd.DataFrame({name: frame["score"]})
        if {"low", "high"} <= set(frame.columns):
            part[f"{name}_low"] = frame["low"]
            part[f"{name}_high"] = frame["high"]
        parts.append(part)
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, axis=1).sort_index()
