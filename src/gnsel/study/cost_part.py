"""The *cost* part of a study: what exact GN costs per architecture, and claim 2 (fc GN's speed-up) as the paper made it.

The measuring is :mod:`gnsel.study.cost` (:func:`~gnsel.study.cost.measure_costs`), the claim-2 ratios
:mod:`gnsel.study.cost_claim`; this part turns the study's ``cost`` settings into
:class:`~gnsel.study.cost.CostCase` s, times them and words the ratios.

Settings: ``cases`` (each a mapping with ``model`` and optionally the keys of :data:`CASE_KEYS`) inherit
``dataset``, ``dataset_kwargs``, ``n_examples`` and ``batch_size`` and are timed ``repeats`` rounds with
the naive loop on ``naive_examples`` examples. ``paper_cases`` (same format; default none) are the paper's
architectures at their own input shape on few examples: they inherit the ``paper_``-prefixed settings
instead (``paper_dataset``: the ``synthetic`` set at CIFAR shape 3x32x32 with 10 classes by default,
``paper_n_examples``, ``paper_batch_size``, ``paper_repeats``, ``paper_naive_examples``). A case whose
paired ratios vary more than ``spread_warning`` (max/min over rounds) gets a warning finding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..models.registry import list_models
from ..report import Figure, Finding, Section, Table
from ..training import TrainConfig
from .cost import CostCase, cost_summary, measure_costs, plot_costs
from .cost_claim import (
    SPREAD_WARNING,
    claim2_findings,
    claim2_summary,
    claim2_table,
    ratio_text,
)
from .part import StudyContext, StudyPart, check_positive, study_part, table_of

CASE_KEYS = ("label", "model", "model_kwargs", "dataset", "dataset_kwargs", "batch_size", "n_examples")
PAPER_DATASET_KWARGS = {"shape": [3, 32, 32], "n_classes": 10, "n_samples": 400}
_INHERITED = ("dataset", "dataset_kwargs", "n_examples", "batch_size", "repeats", "naive_examples")


@study_part
class CostPart(StudyPart):
    """Times one training epoch, exact GN, fc GN and the naive loop per architecture."""

    name = "cost"
    defaults = {"cases": [], "dataset": "mnist1d", "dataset_kwargs": {}, "n_examples": 4000, "batch_size": 128,
                "repeats": 5, "naive_examples": 256,
                "paper_cases": [], "paper_dataset": "synthetic", "paper_dataset_kwargs": PAPER_DATASET_KWARGS,
                "paper_n_examples": 128, "paper_batch_size": 32, "paper_repeats": 3, "paper_naive_examples": 32,
                "spread_warning": SPREAD_WARNING}  # fmt: skip
    verdict_rank, answer_rank = 3, 2

    def validate(self, settings: dict[str, Any]) -> None:
        if not settings["cases"]:
            raise ValueError("cost.cases is empty: name at least one model to time")
        labels = [c.label for which in ("cases", "paper_cases") for c in cost_cases(settings, which)]
        twice = sorted({label for label in labels if labels.count(label) > 1})
        if twice:
            raise ValueError(f"cost: case label(s) {', '.join(map(repr, twice))} used twice (give each a label)")
        for key in ("n_examples", "batch_size", "repeats", "naive_examples"):
            check_positive(settings[key], f"cost.{key}")
            check_positive(settings[f"paper_{key}"], f"cost.paper_{key}")
        for which in ("cases", "paper_cases"):  # the data holds n_examples, takes its kwargs; the model builds
            for i, c in enumerate(cost_cases(settings, which)):
                try:
                    TrainConfig(dataset=c.dataset, dataset_kwargs=c.dataset_kwargs, model=c.model,
                                model_kwargs=c.model_kwargs, n_train=c.n_examples, batch_size=c.batch_size).validate()
                except ValueError as err:
                    raise ValueError(f"cost.{which}[{i}] ({c.label}, n_examples={c.n_examples}): {err}") from None
        warn = settings["spread_warning"]
        if isinstance(warn, bool) or not isinstance(warn, (int, float)) or not warn > 1:
            raise ValueError(f"cost.spread_warning must be a number > 1, got {warn!r}")

    def run(self, ctx: StudyContext) -> Section:
        return run_cost(ctx)

    def headline(self, section: Section) -> list[Finding]:
        return section.findings[:1]  # what GN costs, whatever the verdict

    def answer(self, section: Section) -> list[tuple[str, int | None]]:
        cost = table_of(section, "cost_summary")
        if cost is None:
            return []
        full = cost[cost["method"] == "gn_full"]["ratio_to_epoch"]
        if not len(full):
            return []
        return [(f"computing it exactly costs {full.min():.2f}x to {full.max():.2f}x a training epoch", None)]


def cost_cases(settings: Mapping[str, Any], which: str = "cases") -> list[CostCase]:
    """The cost part's :class:`CostCase` list for ``which`` ("cases" or "paper_cases"), with inherited defaults."""
    if which not in ("cases", "paper_cases"):
        raise ValueError(f"which must be 'cases' or 'paper_cases', got {which!r}")
    pre = "paper_" if which == "paper_cases" else ""
    out = []
    for i, c in enumerate(settings.get(which) or []):
        if not isinstance(c, Mapping) or "model" not in c:
            raise ValueError(f"cost.{which}[{i}] must be a mapping with at least 'model', got {c!r}")
        unknown = sorted(set(c) - set(CASE_KEYS))
        if unknown:
            raise ValueError(f"cost.{which}[{i}]: unknown key(s) {', '.join(map(repr, unknown))}; "
                             f"valid: {', '.join(sorted(CASE_KEYS))}")  # fmt: skip
        out.append(CostCase(
            label=str(c.get("label", c["model"])), model=str(c["model"]),
            model_kwargs=dict(c.get("model_kwargs") or {}),
            dataset=str(c.get("dataset", settings[pre + "dataset"])),
            dataset_kwargs=dict(c.get("dataset_kwargs", settings[pre + "dataset_kwargs"]) or {}),
            batch_size=int(c.get("batch_size", settings[pre + "batch_size"])),
            n_examples=int(c.get("n_examples", settings[pre + "n_examples"])),
        ))  # fmt: skip
    for case in out:
        if case.model not in list_models():
            raise ValueError(f"cost: unknown model {case.model!r}; models: {', '.join(list_models())}")
    return out


def claim2_estimate(section: Section | None) -> dict[str, float | int] | None:
    """Claim 2's estimate from the section's ``cost_claim2`` table (None without it).

    Keys: ``estimate`` (the median case's naive/fc speed-up; for an even count the lower middle case),
    ``low``/``high`` (smallest per-case min and largest per-case max over rounds: the span over
    architectures *and* rounds, not a confidence interval), ``n_cases``; ``exact_estimate``/
    ``exact_low``/``exact_high`` the same for gnsel's exact engine over fc; ``paper_estimate``/
    ``paper_low``/``paper_high`` over the paper cases only (NaN if none), ``paper_cases`` their count.
    """
    table = table_of(section, "cost_claim2")
    return None if table is None else claim2_summary(table)


def _span(rows: pd.DataFrame) -> str:
    """``"0.91x [0.85, 1.0] (mlp w32) to 1.8x [1.6, 2.0] (vgg16)"``: the cheapest and dearest case of summary rows."""
    def one(r: pd.Series) -> str:
        return f"{ratio_text(r.ratio_to_epoch)}x [{ratio_text(r.ratio_low)}, {ratio_text(r.ratio_high)}] ({r.case})"

    lo, hi = rows.loc[rows["ratio_to_epoch"].idxmin()], rows.loc[rows["ratio_to_epoch"].idxmax()]
    return one(lo) if lo.case == hi.case else f"{one(lo)} to {one(hi)}"


def _values(col: pd.Series, sep: str = " or ") -> str:
    return sep.join(str(int(v)) for v in sorted(set(col.dropna())))


def _measure(ctx: StudyContext, part: Mapping[str, Any]) -> tuple[pd.DataFrame, list[str]]:
    """The long frame of both case lists (the paper cases with their own settings), and the paper cases' labels."""
    frames, paper = [], []
    for which, pre in (("cases", ""), ("paper_cases", "paper_")):
        cases = cost_cases(part, which)
        if not cases:
            continue
        ctx.progress.log(f"  timing {len(cases)} {which.replace('_', ' ')} on {ctx.device} "
                         f"({part[pre + 'repeats']} rounds each)")  # fmt: skip
        frames.append(measure_costs(cases, device=ctx.device, repeats=int(part[pre + "repeats"]),
                                    naive_examples=int(part[pre + "naive_examples"]), progress=ctx.progress))
        if pre:
            paper = [c.label for c in cases]
    return pd.concat(frames, ignore_index=True), paper


def run_cost(ctx: StudyContext) -> Section:
    """Time every case, then word the ratios (median, [min, max] over rounds) and claim 2."""
    part = ctx.spec.parts["cost"]
    folder = ctx.folder("cost")
    frame, paper = _measure(ctx, part)
    frame.to_csv(folder / "cost_raw.csv", index=False)
    summary = cost_summary(frame)
    claim2 = claim2_table(frame, paper)
    estimate = pd.DataFrame([claim2_summary(claim2)])
    fig = plot_costs(summary, folder / "cost_ratios.png")
    wide = summary.pivot_table(index="case", columns="method", values="ratio_to_epoch", sort=False)
    findings = []
    full = summary[summary["method"] == "gn_full"]
    fc = summary[summary["method"] == "gn_fc"]
    naive = summary[summary["method"] == "naive"]
    if len(full):
        findings.append(Finding(
            f"Exact GN costs {_span(full)} one training epoch over the same {_values(full['n_examples'])} examples "
            "(median and [min, max] over rounds, each round's GN over the epoch timed in it); the per-example "
            f"norms match the naive loop to {summary['max_rel_diff'].max():.1e} relative.", "info"))  # fmt: skip
    claim_words = claim2_findings(claim2, float(part["spread_warning"]))
    findings += [f for f in claim_words if not f.text.startswith("Warning:")]
    if len(fc) and len(naive):
        findings.append(Finding(
            f"Relative to one training epoch, the fc approximation costs {_span(fc)} and the naive per-example loop "
            f"{_span(naive)} (timed on {_values(naive['naive_examples'])} examples and scaled).", "info"))  # fmt: skip
    findings += [f for f in claim_words if f.text.startswith("Warning:")]  # after every median they qualify
    return Section(
        key="cost",
        title="What does exact GN cost?",
        intro=(f"Each architecture is timed on {ctx.device}: one ordinary training epoch (SGD, batch "
               f"{_values(summary['batch_size'], '/')}), exact GN over all parameters, GN of the last fully "
               "connected layer (fc) and the naive per-example loop, on the same examples and weights, in "
               "interleaved rounds after an untimed warm-up. Every ratio pairs two methods timed in the same round. "
               "The seed paper's claim 2, that the fc approximation is 200-20,000x faster than exact GN, took the "
               "naive loop as exact GN: naive/fc is that comparison, exact/fc the same against gnsel's exact engine. "
               "Timings use PyTorch's default precision (on CUDA, cuDNN may use TF32); the exactness check runs in "
               "full float32."),  # fmt: skip
        findings=findings,
        tables=[
            Table("cost_summary", summary, "Seconds and cost relative to one training epoch, median and "
                  "[min, max] over rounds, per architecture and method."),
            Table("cost_ratios", wide, "Cost / one training epoch (median), per architecture.", index=True, digits=2),
            Table("cost_claim2", claim2, "Claim 2: how much faster the fc approximation is than the naive "
                  "per-example exact GN (naive_over_fc, the paper's comparison) and than gnsel's exact engine "
                  "(exact_over_fc), per architecture: median and [low, high] = [min, max] over rounds of ratios "
                  "paired by round; spread = the larger max/min; paper_case = one of the paper's architectures.",
                  digits=2),
            Table("cost_claim2_estimate", estimate, "Claim 2 over the cases: the median case and the range "
                  "[min of lows, max of highs] the cases span over architectures and rounds (not a confidence "
                  "interval); paper_* over the paper's architectures only.", digits=2),
        ],  # fmt: skip
        figures=[Figure(fig, "Cost of each method relative to one training epoch (log scale; whiskers: "
                        "min and max over rounds)")],  # fmt: skip
    )
