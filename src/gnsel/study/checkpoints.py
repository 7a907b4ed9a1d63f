"""Checkpoint selection as report pieces: which epoch of every run each selector keeps, its regret against the oracle
epoch with intervals, the verdict of every GN selector against ``val_loss``, and the comparison with Wu & Summa (2026).

The computation is :mod:`gnsel.tune.checkpoints`; here the verdict rule of every part
(:func:`~gnsel.study.common.verdict_of` with :data:`~gnsel.study.common.ACC_MARGIN`) is applied to the paired
interval ``vs_baseline`` (positive = the selector's picks are better than the baseline's), and the tables, the
figure and the findings are made.

Wu & Summa, "No Validation, No Problem: Predicting Model Performance from a Single Gradient" (arXiv 2601.16874)
select the checkpoint with the least classifier-head gradient in a short tail window and report a gap to the
oracle of 4.24 +/- 2.00 Top-1 points (ImageNet-1k, universal setup). Their probe is the Frobenius norm of the
batch-mean head gradient on one batch; gnsel's ``gn_fc`` is the mean per-example squared norm of the head
gradient on the probe set, a different quantity, and ``gn_fc_mean_grad_sq`` (the squared norm of the probe-set mean
head gradient, the same argmin as their norm) is the closest analogue gnsel records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis import holm
from ..report import Figure, Finding, Table
from ..tune.checkpoints import (
    DEFAULT_SELECTORS,
    LAST,
    checkpoint_picks,
    checkpoint_summary,
    parse_selectors,
)
from ..tune.lookup import Lookup
from .common import ACC_MARGIN, ci_text, verdict_of

__all__ = ["WU_SUMMA", "checkpoint_findings", "checkpoint_report", "checkpoint_selection", "plot_checkpoints",
           "with_verdicts"]  # fmt: skip

BASELINE = "val_loss"
WU_SUMMA = (4.24, 2.00)  # Top-1 points to the oracle, mean +/- spread, ImageNet-1k, universal setup (arXiv 2601.16874)
WU_SUMMA_CITE = "Wu & Summa (2026, arXiv 2601.16874)"
_ANALOGUE = "gn_fc_mean_grad_sq"
_WORDS = {"helps": "picks better checkpoints than", "does not help": "rules out picking checkpoints better (by more "
          f"than {100 * ACC_MARGIN:.1f} points) than", "inconclusive": "is neither clearly better nor, within the "
          f"margin of {100 * ACC_MARGIN:.1f} points, ruled out better than"}  # fmt: skip


def with_verdicts(summary: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """The summary with ``p_holm`` (Holm over the GN selectors' ``p_better``, when given) and ``verdict``: the one rule
    on ``[vs_low, vs_high]`` with that adjusted p for GN selectors, ``info`` otherwise; a GN selector that helps
    against the baseline but not against ``last`` (``vs_last_low`` not above 0, when given) is ``mixed``: it is no
    better than keeping the stopping point, which needs no selection at all."""
    out = summary.copy()
    family = out["uses_gn"].astype(bool) & (out["selector"] != baseline)  # every GN selector against the baseline
    out["p_holm"] = np.nan
    if "p_better" in out and family.any():
        out.loc[family, "p_holm"] = holm(out.loc[family, "p_better"].astype(float)).to_numpy()
    verdicts = []
    for r in out.itertuples():
        v = verdict_of(r.vs_low, r.vs_high, ACC_MARGIN, r.p_holm) if r.uses_gn and r.selector != baseline else "info"
        if v == "helps" and r.selector != LAST and math.isfinite(getattr(r, "vs_last_low", math.nan)) \
                and not r.vs_last_low > 0:
            v = "mixed"
        verdicts.append(v)
    out["verdict"] = verdicts
    return out


def _with_last(summary: pd.DataFrame, picks: pd.DataFrame, resamples: int, seed: int) -> pd.DataFrame:
    """``vs_last``, ``vs_last_low``, ``vs_last_high``: the paired comparison with keeping the stopping point."""
    if LAST not in set(picks["selector"]):
        return summary
    other = checkpoint_summary(picks, LAST, resamples, seed).set_index("selector")
    cols = {"vs_baseline": "vs_last", "vs_low": "vs_last_low", "vs_high": "vs_last_high"}
    return summary.join(other[list(cols)].rename(columns=cols), on="selector")


def checkpoint_selection(lookup: Lookup, selectors: str | Sequence[str] = DEFAULT_SELECTORS, tail: int | None = None,
                         baseline: str = BASELINE, resamples: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """``(picks, summary with verdicts)`` of every selector over every run of the zoo; the baseline is added to the
    selectors when they lack it."""
    names = parse_selectors(selectors)
    picks = checkpoint_picks(lookup, names if baseline in names else [baseline, *names], tail=tail)
    summary = _with_last(checkpoint_summary(picks, baseline, resamples, seed), picks, resamples, seed)
    return picks, with_verdicts(summary, baseline)


# ------------------------------------------------------------------------------------------- figure
def _clip(values: np.ndarray, cap: float) -> np.ndarray:
    return np.minimum(values, cap)


def plot_checkpoints(summary: pd.DataFrame, path: Path, tail: int | None = None, baseline: str = BASELINE) -> Path:
    """Regret per selector (mean, 95% bar; Wu & Summa's 4.24 +/- 2.00 points as a band) and the paired difference
    to the baseline, both in test-accuracy points."""
    import matplotlib  # heavy: matplotlib, only when a figure is drawn

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # heavy: matplotlib

    s = summary.iloc[::-1]  # first selector on top
    y = np.arange(len(s))
    colors = ["tab:orange" if g else "tab:blue" for g in s["uses_gn"]]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 0.42 * len(s) + 2.2), sharey=True)
    ws, spread = WU_SUMMA
    cap = 2 * (ws + spread)  # a selector far off the scale (traj_gn picks epoch 1) is drawn clipped, with its value
    mean, low, high = (100 * s[c].to_numpy(float) for c in ("mean_regret", "low", "high"))
    ax.axvspan(ws - spread, ws + spread, color="tab:green", alpha=0.12, lw=0)
    ax.axvline(ws, color="tab:green", lw=1.2, label=f"{WU_SUMMA_CITE}: {ws:.2f} ± {spread:.2f}")
    err = np.vstack([_clip(mean, cap) - _clip(low, cap), _clip(high, cap) - _clip(mean, cap)])
    ax.barh(y, _clip(mean, cap), xerr=np.nan_to_num(err), color=colors, capsize=3)
    for yi, m in zip(y, mean):
        if math.isfinite(m) and m > cap:
            ax.text(cap, yi, f" {m:.1f} →", va="center", ha="right", fontsize=8, color="white")
    ax.set_yticks(y, s["selector"])
    ax.set_xlim(0, cap * 1.02)
    ax.set_xlabel("regret: oracle minus picked test accuracy (points)")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Regret to the oracle epoch" + (f" (last {tail} epochs)" if tail else ""), fontsize=10)
    d, dlo, dhi = (100 * s[c].to_numpy(float) for c in ("vs_baseline", "vs_low", "vs_high"))
    near = np.abs(d) <= ws + spread  # the scale of the selectors near the baseline; the others are drawn clipped
    lim = 1.2 * max(2 * 100 * ACC_MARGIN, *np.nan_to_num(np.abs(np.r_[dlo[near], dhi[near]])))
    dc = np.clip(d, -lim, lim)
    err = np.vstack([dc - np.clip(dlo, -lim, lim), np.clip(dhi, -lim, lim) - dc])
    bx.errorbar(dc, y, xerr=np.nan_to_num(err), fmt="none", ecolor="0.3", capsize=3)
    bx.scatter(dc, y, c=colors, zorder=3)
    for yi, v in zip(y, d):
        if math.isfinite(v) and abs(v) > lim:
            bx.text(np.sign(v) * lim, yi + 0.3, f"{v:+.1f}", ha="left" if v < 0 else "right", fontsize=8)
    bx.set_xlim(-lim * 1.05, lim * 1.05)
    bx.axvline(0, color="0.3", lw=0.8)
    bx.axvline(100 * ACC_MARGIN, color="0.5", lw=0.8, ls="--", label=f"margin {100 * ACC_MARGIN:.1f}")
    bx.set_xlabel(f"{baseline} regret minus this selector's (points; > 0: better)")
    bx.legend(fontsize=7, loc="lower right")
    bx.set_title("Paired against " + baseline, fontsize=10)
    for a in (ax, bx):
        a.grid(axis="x", alpha=0.3)
    fig.suptitle("Checkpoint selection: mean over runs, 95% bootstrap over configurations (seeds nested); "
                 "orange: reads GN", fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------- findings
def _points(r: object, prefix: str = "") -> str:
    """``0.45 [0.31, 0.60]`` of a summary row's regret (or its ``vs`` difference), in points."""
    cols = ("mean_regret", "low", "high") if not prefix else ("vs_baseline", "vs_low", "vs_high")
    est, low, high = (100 * float(getattr(r, c)) for c in cols)
    return ci_text(est, low, high, 2, signed=bool(prefix))


def _first_candidate_only(picks: pd.DataFrame, selector: str, tail: int | None) -> bool:
    """Whether ``selector`` picked the first candidate epoch of every run."""
    g = picks[picks["selector"] == selector]
    first = 1 if tail is None else np.maximum(1, g["stop_epoch"] - tail + 1)
    return bool(len(g)) and bool((g["epoch"] == first).all())


def checkpoint_findings(summary: pd.DataFrame, picks: pd.DataFrame, tail: int | None, resamples: int,
                        zoo: str = "the zoo", baseline: str = BASELINE) -> list[Finding]:  # fmt: skip
    """What data, which candidates and interval; the baseline's regret; a verdict per GN selector; Wu & Summa."""
    runs, configs = picks.drop_duplicates(["config", "replicate"]), picks["config"].nunique()
    window = f"the last {tail} of them" if tail else "all of them"
    by = {r.selector: r for r in summary.itertuples()}
    base = by[baseline]
    text = (f"Checkpoint selection over {len(runs)} runs ({configs} configurations, seeds nested) of {zoo}: the candidates "
            f"are each run's recorded epochs 1 to its stopping epoch ({window}; mean stopping epoch "
            f"{runs['stop_epoch'].mean():.1f}), the oracle the candidate "
            "with the best test accuracy, the regret its test accuracy minus the pick's, in points; intervals: 95% "
            f"percentile bootstrap over the configurations with their seeds nested ({resamples} resamples). "
            f"`{baseline}` has regret {_points(base)}")  # fmt: skip
    if "last" in by:
        text += f", keeping the last checkpoint (`last`, no selection) {_points(by['last'])}"
    out = [Finding(text + ".", "info")]
    n_gn = int((summary["uses_gn"].astype(bool) & (summary["selector"] != baseline)).sum())
    for r in summary.itertuples():
        if r.uses_gn and r.selector != baseline:
            v = verdict_of(r.vs_low, r.vs_high, ACC_MARGIN, getattr(r, "p_holm", None))
            last = ""
            if math.isfinite(getattr(r, "vs_last", math.nan)):
                lo, hi = 100 * r.vs_last_low, 100 * r.vs_last_high
                last = (f"; against keeping the stopping point (`last`), {ci_text(100 * r.vs_last, lo, hi, 2)} points"
                        + (", so it is no better than not selecting" if r.verdict == "mixed" else ""))
            p = getattr(r, "p_holm", math.nan)
            holm_text = f" (Holm-adjusted p over the {n_gn} GN selectors {p:.2f})" if math.isfinite(p) else ""
            out.append(Finding(f"`{r.selector}` (regret {_points(r)}) {_WORDS[v]} `{baseline}`: {baseline}'s "
                               f"regret minus its, paired per run, {_points(r, 'vs')} points{holm_text}{last}.",
                               r.verdict))  # fmt: skip
    shares = ", ".join(f"`{r.selector}` {r.share_last:.0%}" for r in summary.itertuples() if r.selector != "last")
    out.append(Finding(f"Share of runs whose pick is the stopping epoch (what `last` keeps without selecting): {shares}.",
                       "info"))  # fmt: skip
    out += _wu_summa(by, tail)
    if "traj_gn" in by and _first_candidate_only(picks, "traj_gn", tail):
        out.append(Finding("`traj_gn` accumulates over training, so it picks the first candidate of every run: it is a "
                           "term of a trajectory bound, not a checkpoint score.", "info"))  # fmt: skip
    return out


def _wu_summa(by: dict[str, object], tail: int | None) -> list[Finding]:
    """The comparison with Wu & Summa's 4.24 +/- 2.00 points, naming how the quantities differ."""
    ws, spread = WU_SUMMA
    mine = [f"`{s}` {_points(by[s])}" for s in (_ANALOGUE, "gn_fc") if s in by]
    if not mine:
        return []
    where = f"a tail window of {tail} epochs" if tail else "every recorded epoch (no tail window)"
    return [Finding(f"{WU_SUMMA_CITE} close the gap to the oracle to {ws:.2f} ± {spread:.2f} Top-1 points (ImageNet-1k, "
                    "universal setup) by picking the least classifier-head gradient in a short tail window; here, over "
                    f"{where}: {', '.join(mine)} points. Their probe is the Frobenius norm of the batch-mean head "
                    f"gradient on one batch; `{_ANALOGUE}` is its square on the probe set (same argmin), while `gn_fc` "
                    "is the mean per-example squared norm, another quantity; the data sets, models and accuracies "
                    "(here near the ceiling) differ too, so the numbers are context, not a replication.", "info")]  # fmt: skip


# ------------------------------------------------------------------------------------------- report
def checkpoint_report(lookup: Lookup, folder: Path, selectors: str | Sequence[str] = DEFAULT_SELECTORS,
                      tail: int | None = None, baseline: str = BASELINE, resamples: int = 1000, seed: int = 0,
                      zoo: str = "the zoo") -> tuple[list[Table], list[Figure], list[Finding]]:  # fmt: skip
    """Tables ``checkpoint_selection`` and ``checkpoint_picks``, the figure ``checkpoint_selection.png`` (in
    ``folder``) and the findings."""
    picks, summary = checkpoint_selection(lookup, selectors, tail, baseline, resamples, seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    window = f"the last {tail} recorded epochs" if tail else "every recorded epoch 1..stop"
    tables = [
        Table("checkpoint_selection", summary, f"Per selector, over every run of {zoo} (candidates: {window}): regret = "
              "the oracle candidate's test accuracy minus the pick's (a fraction; `regret_points` x100), mean with a 95% "
              "bootstrap interval over configurations (seeds nested), median, share of runs where the pick is as good as "
              f"the oracle, mean picked epoch, `mean_regret_all` against the best of every recorded epoch; `vs_baseline` "
              f"= `{baseline}`'s regret minus this one's, paired per run (> 0: better), with its interval and verdict.",
              digits=4),
        Table("checkpoint_picks", picks, "The pick of every (run, selector): epoch, its test accuracy, the oracle "
              "epoch and its, the regret, the run's stopping epoch.", digits=4, max_rows=12),
    ]  # fmt: skip
    figure = Figure(plot_checkpoints(summary, folder / "checkpoint_selection.png", tail, baseline),
                    f"Checkpoint selection: regret to the oracle epoch per selector (points, mean and 95% interval) "
                    f"beside {WU_SUMMA_CITE}'s 4.24 ± 2.00, and paired against `{baseline}`")  # fmt: skip
    return tables, [figure], checkpoint_findings(summary, picks, tail, resamples, zoo, baseline)
