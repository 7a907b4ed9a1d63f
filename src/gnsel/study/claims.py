"""The *claims* part: the seed paper's five claims, each measured, with its interval and a verdict.

It trains nothing: it reads the sections of the other parts (correlation, cost, hpo, architectures) and
writes one row per claim (``tables/claims.csv``: ``claim, statement, measured, estimate, low, high,
verdict``) and the tests behind the verdicts (``claims_tests``). The report shows it first.

Verdicts are decided by stated margins, never by "the interval contains 0":

* a Kendall tau is *strong* when it exceeds :data:`STRONG_TAU` (0.2);
* a selection effect (test accuracy, as a fraction) smaller than :data:`PRACTICAL` (0.005, half an
  accuracy point) is *no practical difference*;
* the fc speed-up is compared with the paper's lower figure, :data:`SPEEDUP` (200x).

Each claim with a statistical test (1, 3, 4, 5) is tested one-sided in the direction its estimate points
(for the claim: estimate beyond the margin; against it: estimate on the other side), with the p-value of
the normal approximation to its 95% interval (standard error = width / 3.92); the four p-values are
Holm-adjusted together, and a claim is ``confirmed`` or ``refuted`` only if its adjusted p is below 0.05,
otherwise ``inconclusive``. Claim 2 is a measured range over architectures, not a test: ``confirmed`` if
every architecture's fc speed-up range lies at or above 200x, ``refuted`` if all lie below, otherwise
``inconclusive``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from scipy.stats import norm

from ..analysis import holm
from ..report import Finding, Section, Table
from .common import ACC_MARGIN, ci_text
from .part import StudyContext, StudyPart, study_part, table_of

__all__ = ["CLAIM_COLUMNS", "PRACTICAL", "SPEEDUP", "STATEMENTS", "STRONG_TAU", "Claim", "ClaimsPart", "claims_table"]

CLAIM_COLUMNS = ["claim", "statement", "measured", "estimate", "low", "high", "verdict"]
STRONG_TAU = 0.2
PRACTICAL = ACC_MARGIN  # the margin every part reads selection effects against
SPEEDUP = 200.0
ALPHA = 0.05
STATEMENTS = {
    1: "GN measures correlate strongly with the generalization error (gap).",
    2: "The fc approximation of GN is 200x to 20,000x faster than exact GN.",
    3: "GN as one of the search objectives selects models with lower generalization error, marginally "
       "(a small accuracy gain) and at a high cost.",
    4: "Bandit-based and population-based searches (BOHB, PBT) do worse with GN objectives, because the "
       "GN-gap relation changes across the phases of training.",
    5: "GN fails to predict the generalization of models of different architectures, compared with the "
       "state-of-the-art measures.",
}  # fmt: skip


@dataclass
class Claim:
    """One claim's measurement: the estimate, its 95% interval, and the margin its verdict is read against."""

    claim: int
    measured: str
    estimate: float
    low: float
    high: float
    margin: float = math.nan
    claim_side: int = 1  # +1: the claim holds if the estimate exceeds the margin; -1: if it is below
    tested: bool = True


def _p_beyond(c: Claim) -> tuple[int, float]:
    """(side of the margin the estimate points to: +1 claim / -1 against, one-sided normal-approximation p)."""
    if not all(math.isfinite(v) for v in (c.estimate, c.low, c.high, c.margin)) or c.high <= c.low:
        return 0, math.nan
    se = (c.high - c.low) / (2 * 1.959964)
    z = (c.estimate - c.margin) / se * c.claim_side
    side = 1 if z > 0 else -1
    return side, float(norm.sf(abs(z)))


def claims_table(claims: list[Claim]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The claims table (:data:`CLAIM_COLUMNS`) and the tests behind it (side, p, Holm-adjusted p, margin)."""
    tests = {c.claim: _p_beyond(c) for c in claims if c.tested}
    adjusted = holm({k: p for k, (_, p) in tests.items()})
    rows, test_rows = [], []
    for c in claims:
        if c.tested:
            side, p = tests[c.claim]
            p_adj = adjusted[c.claim]
            verdict = "inconclusive" if not (p_adj < ALPHA) else ("confirmed" if side > 0 else "refuted")
        else:
            side, p, p_adj = 0, math.nan, math.nan
            ok = [math.isfinite(v) for v in (c.low, c.high)]
            verdict = ("confirmed" if all(ok) and c.low >= c.margin else "refuted" if all(ok) and c.high < c.margin
                       else "inconclusive")  # fmt: skip
        rows.append({"claim": c.claim, "statement": STATEMENTS[c.claim], "measured": c.measured,
                     "estimate": c.estimate, "low": c.low, "high": c.high, "verdict": verdict})  # fmt: skip
        test_rows.append({"claim": c.claim, "margin": c.margin, "claim_side": c.claim_side, "tested": c.tested,
                          "direction": {1: "for the claim", -1: "against it", 0: ""}[side], "p": p,
                          "p_holm": p_adj, "verdict": verdict})  # fmt: skip
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS), pd.DataFrame(test_rows)


def _missing(claim: int, why: str) -> Claim:
    return Claim(claim, f"not measured: {why}", math.nan, math.nan, math.nan)


def claim1(sections: Mapping[str, Section]) -> Claim:
    """Kendall tau of exact GN with the loss gap over the converged models of the correlation zoo."""
    t = table_of(sections.get("correlation"), "correlation_scores")
    if t is None or "gn_full" not in t.index:
        return _missing(1, "the correlation part has not run")
    r = t.loc["gn_full"]
    fc = f"; GN fc {ci_text(*t.loc['gn_fc', ['kendall', 'kendall_low', 'kendall_high']])}" if "gn_fc" in t.index else ""
    return Claim(1, f"Kendall tau of exact GN (probe of training examples, stopping point) with the loss gap over "
                 f"{int(r['models'])} models of the correlation zoo{fc}; strong = above {STRONG_TAU}",
                 float(r["kendall"]), float(r["kendall_low"]), float(r["kendall_high"]), STRONG_TAU)  # fmt: skip


def claim2(sections: Mapping[str, Section]) -> Claim:
    """The paper's speed-up: the naive per-example exact GN over the fc approximation, per architecture."""
    from .cost_part import claim2_estimate  # heavy: the cost part (torch timing code), only to read its table

    section = sections.get("cost")
    est = claim2_estimate(section) if section is not None else None
    if not est or not math.isfinite(est.get("estimate", math.nan)):
        return _missing(2, "the cost part has not run")
    text = (f"naive per-example exact GN / fc GN, median over {est['n_cases']} architectures (range over "
            f"architectures and rounds); gnsel's exact engine / fc: {est['exact_estimate']:.1f}x "
            f"[{est['exact_low']:.1f}, {est['exact_high']:.1f}]")
    if math.isfinite(est.get("paper_estimate", math.nan)):
        text += (f"; the paper's architectures at CIFAR shape: naive/fc {est['paper_estimate']:.0f}x "
                 f"[{est['paper_low']:.0f}, {est['paper_high']:.0f}]")
    return Claim(2, text, float(est["estimate"]), float(est["low"]), float(est["high"]), SPEEDUP, tested=False)


def _mixed_objective(effects: pd.DataFrame) -> str | None:
    """The pre-specified GN objective of claims 3 and 4: the first single objective mixing val_loss with GN fc."""
    objs = [o for o in dict.fromkeys(effects["objective"]) if "val_loss" in o and "gn" in o and not o.startswith("[")]
    fc = [o for o in objs if "gn_fc" in o]
    return (fc or objs or [None])[0]


def claim3(sections: Mapping[str, Section]) -> Claim:
    """Random search (exact): test accuracy selected by val_loss + w * GN fc minus by val_loss, zoo bootstrap."""
    eff = table_of(sections.get("hpo"), "hpo_effects")
    if eff is None or eff.empty:
        return _missing(3, "the hpo part has not run")
    obj = _mixed_objective(eff)
    rows = eff[(eff["objective"] == obj) & (eff["algorithm"] == "random")] if obj else eff.iloc[0:0]
    if rows.empty:
        return _missing(3, "no random-search effect of a GN objective")
    r = rows.iloc[0]
    cost = table_of(sections.get("hpo"), "hpo_gn_cost")
    extra = ""
    if cost is not None and "gn_share" in cost.columns and len(cost):
        extra = f"; GN measurement's share of the search time: median {cost['gn_share'].median():.0%}"
    if -PRACTICAL < float(r["low"]) and float(r["high"]) < PRACTICAL:
        extra += f"; the whole interval lies within +-{PRACTICAL}: no practical difference either way"
    tuned = table_of(sections.get("hpo"), "hpo_weight_tuned")
    if tuned is not None and len(tuned):
        for t in tuned[tuned["algorithm"] == "random"].itertuples():
            extra += (f"; with w tuned on validation data, `{t.objective}` (w = {t.weight:g}): "
                      f"{ci_text(t.effect, t.low, t.high, 4)}")
    return Claim(3, f"random search ({r['method']}): expected test accuracy of the model selected by `{obj}` minus "
                 f"by `val_loss` (fraction; no practical difference within +-{PRACTICAL}); interval: bootstrap over "
                 f"the zoo's configurations, seeds nested ({int(r['resamples'])} resamples){extra}",
                 float(r["effect"]), float(r["low"]), float(r["high"]), 0.0)  # fmt: skip


def claim4(sections: Mapping[str, Section]) -> Claim:
    """BOHB's GN-objective effect minus random search's (paired by zoo resample): below 0 means BOHB does worse."""
    gaps = table_of(sections.get("hpo"), "hpo_bandit_gap")
    eff = table_of(sections.get("hpo"), "hpo_effects")
    if gaps is None or gaps.empty or eff is None:
        return _missing(4, "the hpo part ran no bandit search beside random search")
    obj = _mixed_objective(eff)
    pick = gaps[(gaps["objective"] == obj)] if obj else gaps.iloc[0:0]
    bohb = pick["algorithm"].astype(str).str.startswith("bohb")
    pick = pick[bohb] if bohb.any() else pick
    if pick.empty:
        return _missing(4, "no bandit gap for the GN objective")
    r = pick.iloc[0]
    phase = _phase_text(sections)
    alone = gaps[(gaps["algorithm"] == r["algorithm"]) & gaps["objective"].isin(["gn_fc", "gn_full"])]
    for a in alone.itertuples():
        phase += f"; with `{a.objective}` alone: {ci_text(a.gap, a.low, a.high, 4)}"
    alg = str(r["algorithm"]).removesuffix("-random")
    return Claim(4, f"{alg} minus random search: the effect of `{obj}` over `val_loss` on the selected "
                 f"model's test accuracy (fraction; below -{PRACTICAL} = worse in practice), paired by zoo resample "
                 f"({int(r['resamples'])}); PBT runs only live, one seed, so it has no interval{phase}",
                 float(r["gap"]), float(r["low"]), float(r["high"]), -PRACTICAL, claim_side=-1)  # fmt: skip


def _phase_text(sections: Mapping[str, Section]) -> str:
    ph = table_of(sections.get("correlation"), "correlation_phases")
    if ph is None or ph.empty:
        return ""
    g = ph[ph["measure"] == "gn_full"].set_index("phase")
    if not {"early", "final"} <= set(g.index):
        return ""
    e, f = g.loc["early"], g.loc["final"]
    return (f"; the reason given: exact GN's tau with the gap early in training "
            f"{ci_text(e.kendall, e.kendall_low, e.kendall_high)}, at the stopping point "
            f"{ci_text(f.kendall, f.kendall_low, f.kendall_high)}")


def claim5(sections: Mapping[str, Section]) -> Claim:
    """Kendall tau of exact GN with the loss gap across the architecture zoo, beside the best other measure."""
    section = sections.get("architectures")
    tables = [t.frame for t in section.tables if t.name.startswith("architectures_")] if section else []
    if not tables:
        return _missing(5, "the architectures part has not run")
    t = tables[0]
    target = "gap_loss" if (t["target"] == "gap_loss").any() else str(t["target"].iloc[0])
    t = t[t["target"] == target].set_index("measure")
    if "gn_full" not in t.index:
        return _missing(5, "exact GN was not scored across architectures")
    r = t.loc["gn_full"]
    others = t.drop(index=[m for m in t.index if m.startswith(("gn_", "traj_gn", "grad_", "mean_grad"))])
    others = others[others["agreement"].notna()]
    best = ""
    if len(others):
        b = others.loc[others["agreement"].idxmax()]
        best = (f"; the best other measure, `{others['agreement'].idxmax()}`: agreement {b['agreement']:+.2f} "
                f"(tau {ci_text(b['kendall'], b['kendall_low'], b['kendall_high'])})")
    return Claim(5, f"Kendall tau of exact GN with `{target}` over {int(r['models'])} models of different "
                 f"architectures; fails = not above {STRONG_TAU}{best}", float(r["kendall"]),
                 float(r["kendall_low"]), float(r["kendall_high"]), STRONG_TAU, claim_side=-1)  # fmt: skip


CLAIMS = (claim1, claim2, claim3, claim4, claim5)


@study_part
class ClaimsPart(StudyPart):
    """The seed paper's five claims against what the other parts measured (trains nothing)."""

    name = "claims"
    defaults: dict[str, Any] = {}
    depends_on = ("correlation", "cost", "hpo", "architectures")
    section_rank = 0.0
    verdict_rank, verdict_limit = -1.0, 5

    def run(self, ctx: StudyContext) -> Section:
        claims = [f(ctx.sections) for f in CLAIMS]
        table, tests = claims_table(claims)
        findings = [Finding(f"Claim {r.claim}: {r.statement} {r.verdict.capitalize()}: "
                            f"{_num(r.estimate, r.claim)} [{_num(r.low, r.claim)}, {_num(r.high, r.claim)}] "
                            f"({r.measured}).",
                            r.verdict)
                    for r in table.itertuples()]  # fmt: skip
        return Section(
            key="claims", title="The five claims of the seed paper",
            intro=("Each claim of the study gnsel grew from, in plain words, with what gnsel measured, the estimate "
                   "and its 95% interval, and a verdict decided by stated margins: a Kendall tau is strong above "
                   f"{STRONG_TAU}; a selection effect within +-{PRACTICAL} test accuracy (half a point) is no practical "
                   f"difference; the fc speed-up is read against the paper's {SPEEDUP:.0f}x. Claims 1, 3, 4 and 5 are "
                   "tested one-sided in the direction of their estimate (normal approximation to the interval) and "
                   "Holm-adjusted together; a verdict other than inconclusive needs an adjusted p below 0.05. "
                   "Claim 2 is a measured range, not a test."),
            findings=findings,
            tables=[Table("claims", table, "The five claims: estimate, 95% interval, verdict."),
                    Table("claims_tests", tests, "The tests behind the verdicts: the margin, the direction the "
                          "estimate points, its one-sided p and the Holm-adjusted p.")],  # fmt: skip
        )


def _num(v: float, claim: int) -> str:
    """A claim's number: a speed-up as ``17x``, a selection effect (a fraction) to 4 decimals, a tau to 3."""
    if not math.isfinite(v):
        return "n/a"
    return f"{v:.0f}x" if claim == 2 else f"{v:+.4f}" if claim in (3, 4) else f"{v:+.3f}"
