"""The *correlation* part: does GN rank a zoo's models by their generalization gap, and when in training?

Builds (or reuses) the part's zoo, scores every measure with :func:`gnsel.zoo.correlate.correlate`, adds
bootstrap intervals to the Kendall taus and follows the epoch-wise measures through training.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..zoo.correlate import correlate, target_values
from ..measures import per_epoch_measures
from ..report import Figure, Finding, Section, Table
from ..store import Store
from .common import build_zoo_store, check_measures, check_target, ci_text, kendall_ci, sign_of, verdict_of
from .part import StudyContext, StudyPart, check_positive, study_part, table_of

PHASE_MEASURES = ("gn_full", "gn_fc", "traj_gn", "val_loss")


@study_part
class CorrelationPart(StudyPart):
    """Does GN rank one zoo's models by their gap, and when in training."""

    name = "correlation"
    defaults = {"zoo": "quick", "target": "gap_acc", "bootstrap": 1000, "measures": None}
    uses_zoo = True
    verdict_rank, answer_rank = 0, 1

    def validate(self, settings: dict[str, Any]) -> None:
        check_target(settings["target"], "correlation.target")
        check_measures(settings["measures"], "correlation")
        check_positive(settings["bootstrap"], "correlation.bootstrap")

    def run(self, ctx: StudyContext) -> Section:
        return run_correlation(ctx)

    def answer(self, section: Section) -> list[tuple[str, int | None]]:
        scores = table_of(section, "correlation_scores")
        if scores is None or "gn_full" not in scores.index:
            return []
        r = scores.loc["gn_full"]
        tau = ci_text(r.kendall, r.kendall_low, r.kendall_high)
        text = f"exact GN ranks the trained models by gap with Kendall tau {tau}"
        if "traj_gn" in scores.index:
            t = scores.loc["traj_gn"]
            text += f" (trajectory GN, the bound's quantity: {ci_text(t.kendall, t.kendall_low, t.kendall_high)})"
        return [(text, None)]


def phase_epochs(epochs: int) -> list[int]:
    """Early, middle and final epochs of a run of ``epochs`` epochs (distinct, >= 1)."""
    return sorted({max(1, round(epochs * f)) for f in (0.1, 0.5, 1.0)})


def phase_table(store_path, target: str, n_boot: int) -> pd.DataFrame:
    """Kendall tau (95% bootstrap interval) of the per-epoch GN measures and val_loss, at three phases."""
    store = Store(store_path)
    runs = store.runs_frame(status="done")
    epochs = store.epochs_frame(list(runs["run_id"]))
    last = int(epochs["epoch"].max())
    rows = []
    chosen = phase_epochs(last)
    recorded = per_epoch_measures()
    for e in chosen:
        f = epochs[epochs["epoch"] == e].copy()
        f[target] = target_values(f, target)
        for m in PHASE_MEASURES:
            f[m] = recorded[m](f)
            est, lo, hi = kendall_ci(f, m, target, n_boot)
            rows.append({"epoch": e, "phase": "final" if e == chosen[-1] else "early" if e == chosen[0] else "middle",
                         "measure": m, "models": int(f[m].notna().sum()), "kendall": est,
                         "kendall_low": lo, "kendall_high": hi})  # fmt: skip
    return pd.DataFrame(rows)


def run_correlation(ctx: StudyContext) -> Section:
    """Build the zoo, score all measures against the gap, and word what the numbers say about GN."""
    part = ctx.spec.parts["correlation"]
    folder = ctx.folder("correlation")
    grid = ctx.spec.zoo_grids("correlation")[0]
    store_path, zoo = build_zoo_store(ctx, grid)
    ctx.step("correlation:zoo")
    target, n_boot = part["target"], int(part["bootstrap"])
    ctx.progress.log(f"  scoring measures against {target} (measures are cached in the store)")
    rep = correlate(store_path, measures=part["measures"], target=target, out_dir=folder, device=ctx.device,
                    progress=ctx.progress)  # fmt: skip
    values = rep.values.reset_index()
    scores = rep.scores.copy()
    ci = {m: kendall_ci(values, m, target, n_boot) for m in scores.index}
    scores["kendall_low"] = [ci[m][1] for m in scores.index]
    scores["kendall_high"] = [ci[m][2] for m in scores.index]
    scores = scores.sort_values("kendall", ascending=False)
    cols = ["family", "n", "kendall", "kendall_low", "kendall_high", "spearman", "granulated", "cmi", "sign_error"]
    table = scores[cols].rename(columns={"n": "models"})
    table["models"] = table["models"].astype(int)
    phases = phase_table(store_path, target, n_boot)
    ctx.step("correlation:scores")

    n_models = len(values)
    epochs = int(phases["epoch"].max())
    findings = _findings(table, phases, rep.granulated, target, n_models)
    figures = [Figure(folder / f"scatter_{m}.png", f"{m} against {target} at the final epoch, one point per model")
               for m in ("gn_full", "gn_fc", "traj_gn", "val_loss") if (folder / f"scatter_{m}.png").exists()]
    figures.append(Figure(folder / "epochs_kendall.png",
                          f"Kendall tau of each per-epoch measure against {target}, epoch by epoch"))
    figures.append(Figure(folder / "epochs_granulated.png", "Granulated Kendall (Jiang et al. 2020) by epoch"))
    failures = [f"`{m}` could not be computed for {n_models - int(table.loc[m, 'models'])} of {n_models} models "
                f"(scored on the rest); the first reason: {why}" for m, why in sorted(rep.failures.items())
                if m in table.index]  # fmt: skip
    hps = ", ".join(h.removeprefix("cfg.") for h in rep.hparams)
    return Section(
        key="correlation",
        title="Does GN rank models by their generalization gap?",
        intro=(
            f"{n_models} models of the `{zoo.name}` zoo, trained for "
            f"{epochs} epochs, varying {hps}. Target: `{target}` at the final epoch. Each measure is scored by "
            f"Kendall tau (with a 95% bootstrap interval over models, {n_boot} resamples), granulated Kendall "
            "(the mean of the taus within groups that differ in one hyper-parameter; Jiang et al. 2020), "
            "conditional mutual information (CMI, as in the PGDL competition) and the robust sign error "
            "(Dziugaite et al. 2020). A positive tau means the measure grows with the gap."
        ),
        findings=findings,
        tables=[
            Table("correlation_scores", table, f"Every measure against `{target}` at the final epoch, best Kendall first.",
                  index=True),
            Table("correlation_phases", phases, "Kendall tau (95% bootstrap interval) of GN and the validation loss "
                  "against the gap early in training, in the middle and at the end."),
            Table("correlation_granulated", rep.granulated, "Granulated Kendall per hyper-parameter: how well each "
                  "measure ranks models that differ in that hyper-parameter only.", index=True),
            Table("correlation_per_epoch", rep.per_epoch, "Kendall, granulated Kendall and CMI of the per-epoch "
                  "measures at every epoch.", max_rows=12),
        ],  # fmt: skip
        figures=figures,
        notes=failures,
    )


def _row(table: pd.DataFrame, m: str) -> tuple[float, float, float]:
    if m not in table.index:
        return math.nan, math.nan, math.nan
    r = table.loc[m]
    return float(r["kendall"]), float(r["kendall_low"]), float(r["kendall_high"])


def _findings(table: pd.DataFrame, phases: pd.DataFrame, gran: pd.DataFrame, target: str, n: int) -> list[Finding]:
    out = []
    full, fc, traj, val = (_row(table, m) for m in ("gn_full", "gn_fc", "traj_gn", "val_loss"))
    s = sign_of(full[1], full[2])
    verdict = verdict_of(s, full[0])
    how = {1: "ranks the models by gap the right way (a larger GN goes with a larger gap)",
           0: "does not rank the models by gap: its interval contains 0",
           -1: "ranks the models by gap the wrong way (a larger GN goes with a smaller gap)"}[s]  # fmt: skip
    out.append(Finding(
        f"At the end of training, exact GN {how}: Kendall tau = {ci_text(*full)} over {n} models. "
        f"GN fc: {ci_text(*fc)}; trajectory GN (the quantity in Li, Luo & Qiao's bound): {ci_text(*traj)}; "
        f"validation loss: {ci_text(*val)}.", verdict))  # fmt: skip
    if math.isfinite(traj[0]):
        st = sign_of(traj[1], traj[2])
        out.append(Finding(
            "Trajectory GN (the learning-rate-squared-weighted sum, over the training steps, of the batch's mean "
            "per-example squared gradient norm, as in Li, Luo & Qiao's bound) "
            f"{'ranks the models by gap' if st > 0 else 'does not rank the models by gap (its interval contains 0)' if st == 0 else 'ranks them the wrong way'}: "
            f"Kendall tau = {ci_text(*traj)}, granulated {table.loc['traj_gn', 'granulated']:+.2f}.",
            verdict_of(st, traj[0])))  # fmt: skip
    ranked = [m for m in table.index if math.isfinite(table.loc[m, "kendall"])]
    if "gn_full" in ranked:
        best = ranked[0]
        out.append(Finding(
            f"Of {len(ranked)} measures, exact GN ranks #{ranked.index('gn_full') + 1} by Kendall tau; the best is "
            f"`{best}` ({table.loc[best, 'family']}) with {ci_text(*_row(table, best))}."
            + (f" Trajectory GN ranks #{ranked.index('traj_gn') + 1}." if "traj_gn" in ranked else ""), "info"))
    if not phases.empty:
        g = phases[phases["measure"] == "gn_full"].sort_values("epoch")
        first, last = g.iloc[0], g.iloc[-1]
        s0, s1 = sign_of(first.kendall_low, first.kendall_high), sign_of(last.kendall_low, last.kendall_high)
        verdict = "mixed" if s0 != s1 else ("helps" if s0 > 0 else "does not help")
        out.append(Finding(
            f"Over training, exact GN's tau against the gap goes from "
            f"{ci_text(first.kendall, first.kendall_low, first.kendall_high)} at epoch {int(first.epoch)} to "
            f"{ci_text(last.kendall, last.kendall_low, last.kendall_high)} at epoch {int(last.epoch)}"
            + (": how GN relates to the gap depends on the phase of training." if s0 != s1 else "."), verdict))
    if "gn_full" in gran.index:
        psi = gran.loc["gn_full"].drop("overall").dropna()
        if not psi.empty:
            out.append(Finding(
                f"Within one hyper-parameter at a time (granulated Kendall), exact GN does best along "
                f"`{psi.idxmax()}` ({psi.max():+.2f}) and worst along `{psi.idxmin()}` ({psi.min():+.2f}); "
                f"overall {gran.loc['gn_full', 'overall']:+.2f}.", "info"))
    return out
