"""Claim 2 of the seed paper, "the fc approximation is 200-20,000x faster than exact GN", measured as it was made.

The paper's exact GN was the naive per-example loop, so the paper's speed-up is ``naive / gn_fc``;
gnsel's own exact engine gives ``gn_full / gn_fc`` beside it. Both are ratios *paired by round*:
round ``i`` of one method over round ``i`` of the other, timed in the same interleaved round of
:func:`gnsel.study.cost.measure_costs`, so load on a shared machine hits both sides of a ratio alike.

:func:`paired_ratios` is that division on the long frame, :func:`claim2_table` one row per case
(median and [min, max] over rounds), :func:`claim2_summary` the estimate over cases and
:func:`claim2_findings` the sentences, every number in them read from those two tables.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Mapping

import numpy as np
import pandas as pd

from ..report import Finding
from .cost import paired_ratios

__all__ = [
    "CLAIM2_COLUMNS",
    "ESTIMATE_KEYS",
    "SPREAD_WARNING",
    "claim2_findings",
    "claim2_summary",
    "claim2_table",
    "paired_ratios",
    "ratio_text",
]

CLAIM2_COLUMNS: tuple[str, ...] = (
    "case", "model", "input_shape", "params", "naive_over_fc", "naive_over_fc_low", "naive_over_fc_high",
    "exact_over_fc", "exact_over_fc_low", "exact_over_fc_high", "rounds", "spread", "paper_case",
)  # fmt: skip
ESTIMATE_KEYS: tuple[str, ...] = (
    "estimate", "low", "high", "n_cases", "exact_estimate", "exact_low", "exact_high",
    "paper_estimate", "paper_low", "paper_high", "paper_cases",
)  # fmt: skip
SPREAD_WARNING = 1.5
"""A case whose paired ratios vary more than this factor (max / min over rounds) gets a warning."""
PAPER_RANGE = (200.0, 20_000.0)  # the speed-up the paper claimed (its exact GN: the naive loop)
_RATIOS = {"naive_over_fc": ("naive", "gn_fc"), "exact_over_fc": ("gn_full", "gn_fc")}


def ratio_text(v: float) -> str:
    """A ratio as the findings write it: 3 digits for >= 100, 1 decimal for >= 10, else 2 decimals."""
    if not math.isfinite(v):
        return "n/a"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def claim2_table(frame: pd.DataFrame, paper_cases: Collection[str] = ()) -> pd.DataFrame:
    """One row per case: ``naive/gn_fc`` and ``gn_full/gn_fc`` paired by round, median with [min, max] over rounds.

    ``rounds`` counts the rounds paired in both ratios, ``spread`` is the larger of the two ratios'
    max/min over rounds, ``paper_case`` marks the cases named in ``paper_cases``. Columns :data:`CLAIM2_COLUMNS`.
    """
    ratios = {key: paired_ratios(frame, *methods) for key, methods in _RATIOS.items()}
    rows = []
    for case in dict.fromkeys(frame["case"]):
        first = frame[frame["case"] == case].iloc[0]
        row = {"case": case, **{c: first[c] for c in ("model", "input_shape", "params") if c in frame.columns}}
        rounds, spread = [], []
        for key, r in ratios.items():
            vals = r.loc[r["case"] == case, "ratio"].to_numpy(float)
            has = len(vals) > 0
            row[key] = float(np.median(vals)) if has else math.nan
            row[f"{key}_low"] = float(vals.min()) if has else math.nan
            row[f"{key}_high"] = float(vals.max()) if has else math.nan
            rounds.append(len(vals))
            spread.append(float(vals.max() / vals.min()) if has and vals.min() > 0 else math.nan)
        row.update({"rounds": min(rounds), "spread": max(spread), "paper_case": case in set(paper_cases)})
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.reindex(columns=list(CLAIM2_COLUMNS))


def _over(table: pd.DataFrame, key: str) -> tuple[float, float, float]:
    """(median case, min of the lows, max of the highs) of ratio ``key``; NaNs with no rows."""
    vals = table[key].dropna()
    if not len(vals):
        return math.nan, math.nan, math.nan
    return float(statistics.median_low(vals)), float(table[f"{key}_low"].min()), float(table[f"{key}_high"].max())


def claim2_summary(table: pd.DataFrame) -> dict[str, float | int]:
    """The claim-2 estimate over a :func:`claim2_table`'s cases: keys :data:`ESTIMATE_KEYS`.

    ``estimate`` is the median case's ``naive_over_fc`` (for an even count the lower middle one, so it
    is always a measured value of the table), ``low``/``high`` the smallest low and largest high: the
    span over architectures and rounds, not a confidence interval. ``exact_*`` the same for
    ``exact_over_fc``, ``paper_*`` for the paper cases only (NaN without any).
    """
    est, low, high = _over(table, "naive_over_fc")
    ex, ex_low, ex_high = _over(table, "exact_over_fc")
    paper = table[table["paper_case"].astype(bool)] if "paper_case" in table.columns else table.iloc[:0]
    p, p_low, p_high = _over(paper, "naive_over_fc")
    return {"estimate": est, "low": low, "high": high, "n_cases": len(table),
            "exact_estimate": ex, "exact_low": ex_low, "exact_high": ex_high,
            "paper_estimate": p, "paper_low": p_low, "paper_high": p_high, "paper_cases": len(paper)}  # fmt: skip


def _case_of(table: pd.DataFrame, key: str, value: float) -> str:
    return str(table.loc[table[key] == value, "case"].iloc[0]) if (table[key] == value).any() else "?"


def _rounds_text(table: pd.DataFrame) -> str:
    lo, hi = int(table["rounds"].min()), int(table["rounds"].max())
    return f"{lo} rounds each" if lo == hi else f"{lo} to {hi} rounds each"


def _vs_paper(low: float, high: float) -> str:
    if high < PAPER_RANGE[0]:
        return "below the whole range the paper claimed"
    if low > PAPER_RANGE[1]:
        return "above the whole range the paper claimed"
    return "overlapping the range the paper claimed"


def _sentence(table: pd.DataFrame, est: Mapping[str, float], prefix: str, what: str) -> str:
    """One claim-2 sentence over ``table``'s cases; ``prefix`` picks the estimate's keys ("" or "paper_")."""
    n, lo, hi = est[f"{prefix}estimate"], est[f"{prefix}low"], est[f"{prefix}high"]
    ex, ex_lo, ex_hi = _over(table, "exact_over_fc")
    return (f"{what}the fc approximation is {ratio_text(n)}x faster than the naive per-example exact GN (the "
            f"paper's comparison; median case {_case_of(table, 'naive_over_fc', n)}, range [{ratio_text(lo)}, "
            f"{ratio_text(hi)}] over {len(table)} architectures and {_rounds_text(table)}; {_vs_paper(lo, hi)}) and "
            f"{ratio_text(ex)}x faster than gnsel's exact engine (median case {_case_of(table, 'exact_over_fc', ex)}, "
            f"range [{ratio_text(ex_lo)}, {ratio_text(ex_hi)}]).")  # fmt: skip


def claim2_findings(table: pd.DataFrame, spread_warning: float = SPREAD_WARNING) -> list[Finding]:
    """Claim 2 in words: over all cases, over the paper cases, and a warning per case whose rounds disagree."""
    if table.empty:
        return []
    est = claim2_summary(table)
    out = [Finding(_sentence(table, est, "", "Over all timed architectures, "), "info")]
    paper = table[table["paper_case"].astype(bool)]
    if len(paper):
        names = ", ".join(map(str, paper["case"]))
        out.append(Finding(_sentence(paper, est, "paper_", f"On the paper's architectures at their input shape "
                                                           f"({names}), "), "info"))  # fmt: skip
    for _, r in table[table["spread"] > spread_warning].iterrows():
        out.append(Finding(
            f"Warning: the rounds of {r.case} disagree (spread {ratio_text(r.spread)}, max/min over rounds): naive/fc "
            f"ranged [{ratio_text(r.naive_over_fc_low)}, {ratio_text(r.naive_over_fc_high)}] around "
            f"{ratio_text(r.naive_over_fc)}x and exact/fc [{ratio_text(r.exact_over_fc_low)}, "
            f"{ratio_text(r.exact_over_fc_high)}] around {ratio_text(r.exact_over_fc)}x; the machine was probably "
            "busy, so its medians are less certain.", "info"))  # fmt: skip
    return out
