"""The *cost* part of a study: what exact GN costs per architecture, as time ratios to one training epoch.

The measuring is :mod:`gnsel.study.cost` (:func:`~gnsel.study.cost.measure_costs`); this part turns the
study's ``cost`` settings into :class:`~gnsel.study.cost.CostCase` s, times them and words the ratios.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..models.registry import list_models
from ..report import Figure, Finding, Section, Table
from .cost import CostCase, cost_summary, measure_costs, plot_costs
from .part import StudyContext, StudyPart, check_positive, study_part, table_of

CASE_KEYS = ("label", "model", "model_kwargs", "dataset", "dataset_kwargs", "batch_size", "n_examples")


@study_part
class CostPart(StudyPart):
    """Times one training epoch, exact GN, fc GN and the naive loop per architecture."""

    name = "cost"
    defaults = {"cases": [], "dataset": "mnist1d", "dataset_kwargs": {}, "n_examples": 4000, "batch_size": 128,
                "repeats": 5, "naive_examples": 256}  # fmt: skip
    verdict_rank, answer_rank = 3, 2

    def validate(self, settings: dict[str, Any]) -> None:
        if not settings["cases"]:
            raise ValueError("cost.cases is empty: name at least one model to time")
        cost_cases(settings)  # every case well-formed, every model known
        for key in ("n_examples", "batch_size", "repeats", "naive_examples"):
            check_positive(settings[key], f"cost.{key}")

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


def cost_cases(settings: Mapping[str, Any]) -> list[CostCase]:
    """The cost part's :class:`CostCase` list, each case inheriting the part's defaults."""
    out = []
    for i, c in enumerate(settings["cases"]):
        if not isinstance(c, Mapping) or "model" not in c:
            raise ValueError(f"cost.cases[{i}] must be a mapping with at least 'model', got {c!r}")
        unknown = sorted(set(c) - set(CASE_KEYS))
        if unknown:
            raise ValueError(f"cost.cases[{i}]: unknown key(s) {', '.join(map(repr, unknown))}; "
                             f"valid: {', '.join(sorted(CASE_KEYS))}")  # fmt: skip
        out.append(CostCase(
            label=str(c.get("label", c["model"])), model=str(c["model"]),
            model_kwargs=dict(c.get("model_kwargs") or {}),
            dataset=str(c.get("dataset", settings["dataset"])),
            dataset_kwargs=dict(c.get("dataset_kwargs", settings["dataset_kwargs"]) or {}),
            batch_size=int(c.get("batch_size", settings["batch_size"])),
            n_examples=int(c.get("n_examples", settings["n_examples"])),
        ))  # fmt: skip
    for case in out:
        if case.model not in list_models():
            raise ValueError(f"cost: unknown model {case.model!r}; models: {', '.join(list_models())}")
    return out


def run_cost(ctx: StudyContext) -> Section:
    """Time every case, then word the ratios (median, [min, max] over repeats)."""
    part = ctx.spec.parts["cost"]
    folder = ctx.folder("cost")
    cases = cost_cases(part)
    ctx.progress.log(f"  timing {len(cases)} architectures on {ctx.device} ({part['repeats']} repeats each)")
    frame = measure_costs(cases, device=ctx.device, repeats=int(part["repeats"]),
                          naive_examples=int(part["naive_examples"]))  # fmt: skip
    frame.to_csv(folder / "cost_raw.csv", index=False)
    summary = cost_summary(frame)
    fig = plot_costs(summary, folder / "cost_ratios.png")
    wide = summary.pivot_table(index="case", columns="method", values="ratio_to_epoch", sort=False)
    findings = []
    full = summary[summary["method"] == "gn_full"]
    fc = summary[summary["method"] == "gn_fc"]
    naive = summary[summary["method"] == "naive"]
    if len(full):
        worst = full.loc[full["ratio_to_epoch"].idxmax()]
        findings.append(Finding(
            f"Exact GN over {int(full['n_examples'].iloc[0])} examples costs {full['ratio_to_epoch'].min():.2f}x to "
            f"{full['ratio_to_epoch'].max():.2f}x one training epoch over the same examples (median of "
            f"{int(full['repeats'].iloc[0])} repeats; the most expensive, {worst.case}, ranged "
            f"[{worst.ratio_low:.2f}, {worst.ratio_high:.2f}]); the per-example norms match the naive loop to "
            f"{summary['max_rel_diff'].max():.1e} relative.", "info"))  # fmt: skip
    if len(fc) and len(naive):
        findings.append(Finding(
            f"The fc approximation costs {fc['ratio_to_epoch'].min():.2f}x to {fc['ratio_to_epoch'].max():.2f}x an epoch; "
            f"the naive per-example loop {naive['ratio_to_epoch'].min():.0f}x to {naive['ratio_to_epoch'].max():.0f}x "
            f"(timed on {int(naive['naive_examples'].iloc[0])} examples and scaled), so exact GN is "
            f"{(naive['seconds_median'].to_numpy() / full['seconds_median'].to_numpy()).min():.0f}x or more faster "
            "than the loop it replaces.", "info"))  # fmt: skip
    return Section(
        key="cost",
        title="What does exact GN cost?",
        intro=(f"Each architecture is timed on {ctx.device}: one ordinary training epoch (SGD, batch "
               f"{int(summary['batch_size'].iloc[0])}), exact GN over all parameters, GN of the last fully "
               "connected layer (fc) and the naive per-example loop, on the same examples and weights; every "
               "ratio pairs a repeat with the training epoch timed in the same round. Timings use PyTorch's default "
               "precision (on CUDA, cuDNN may use TF32); the exactness check runs in full float32."),  # fmt: skip
        findings=findings,
        tables=[
            Table("cost_summary", summary, "Seconds and cost relative to one training epoch, median and "
                  "[min, max] over repeats, per architecture and method."),
            Table("cost_ratios", wide, "Cost / one training epoch (median), per architecture.", index=True, digits=2),
        ],  # fmt: skip
        figures=[Figure(fig, "Cost of each method relative to one training epoch (log scale; whiskers: "
                        "min and max over repeats)")],  # fmt: skip
    )
