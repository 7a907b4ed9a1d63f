"""The *correlation* part: does GN rank a zoo's models by their generalization gap, and when in training?

Builds (or reuses) the part's zoo (every run trained to the training criterion or the maximum epochs),
computes every measure at each run's stopping point (:func:`gnsel.zoo.correlate.correlate`) and scores them
(:func:`gnsel.study.scoring.score_measures`) on the runs that met the criterion -- the others are
reported apart -- against the loss gap (the seed paper's definition) and the accuracy gap, with
intervals that resample configurations, the controls for how far training got and the baselines that
need no model. The per-epoch measures are followed through training at fractions of each run's own
stopping epoch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis import kendall
from ..zoo.correlate import correlate, target_values
from ..measures import per_epoch_measures
from ..report import Figure, Finding, Section, Table
from ..store import Store
from .common import build_zoo_store, check_measures, check_target, TAU_MARGIN, ci_text, kendall_ci, sign_of, verdict_of
from .scoring import BASELINES, MIN_CONVERGED, config_labels, converged, score_measures, scored_runs
from .part import StudyContext, StudyPart, check_positive, study_part, table_of

PHASE_MEASURES = ("gn_full", "gn_fc", "traj_gn", "val_loss", "budget", "train_loss")
PHASES = {"early": 0.1, "middle": 0.5, "final": 1.0}
SECONDARY = {"gap_loss": "gap_acc", "gap_acc": "gap_loss", "test_error": "gap_loss"}
TARGET_TEXT = {
    "gap_loss": "the loss gap, test cross-entropy minus training cross-entropy at the stopping point (the seed "
                "paper's G: expected loss minus training loss, the expectation estimated on the test split)",
    "gap_acc": "the accuracy gap, training accuracy minus test accuracy at the stopping point",
    "test_error": "the test error, 1 - test accuracy at the stopping point",
}
SCORE_COLUMNS = ["family", "models", "rank", "kendall", "kendall_low", "kendall_high", "p_holm", "granulated",
                 "granulated_low", "granulated_high", "partial", "stratified", "vs_baselines", "vs_baselines_low",
                 "vs_baselines_high", "beats_baselines", "cmi", "sign_error"]


@study_part
class CorrelationPart(StudyPart):
    """Does GN rank one zoo's models by their gap, and when in training."""

    name = "correlation"
    defaults = {"zoo": "quick", "target": "gap_loss", "bootstrap": 1000, "measures": None}
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
        text = f"exact GN ranks the converged models by the loss gap with Kendall tau {tau}"
        if "traj_gn" in scores.index:
            t = scores.loc["traj_gn"]
            text += f" (trajectory GN, the bound's quantity: {ci_text(t.kendall, t.kendall_low, t.kendall_high)})"
        beats = r.get("beats_baselines")
        text += "; it beats the baselines that need no model" if is_true(beats) else (
            "; it does not beat the baselines that need no model (training budget, training loss and error)")
        return [(text, None)]


def is_true(value: Any) -> bool:
    """Whether a table cell is true (a bool, a numpy bool or a nullable boolean; NA and NaN are not)."""
    return value is not None and not pd.isna(value) and bool(value)


def phase_epochs(epochs: int) -> list[int]:
    """Early, middle and final epochs of a run of ``epochs`` epochs (distinct, >= 1)."""
    return sorted({max(1, round(epochs * f)) for f in PHASES.values()})


def phase_table(store_path: str | Path, target: str, n_boot: int, run_ids: list[str] | None = None) -> pd.DataFrame:
    """Kendall tau (95% bootstrap interval over models) of the per-epoch measures at three phases of training.

    A phase is a fraction of each run's own stopping epoch (10%, 50%, 100%), so that runs that stopped early
    and late are compared at the same point of their training.
    """
    store = Store(store_path)
    runs = store.runs_frame(status="done")
    if run_ids is not None:
        runs = runs[runs["run_id"].isin(run_ids)]
    epochs = store.epochs_frame(list(runs["run_id"]))
    stop = epochs.groupby("run_id")["epoch"].max()
    recorded = per_epoch_measures()
    rows = []
    for phase, frac in PHASES.items():
        want = stop.map(lambda e, f=frac: max(1, round(e * f)))
        f = epochs[epochs["epoch"] == epochs["run_id"].map(want)].copy()
        f[target] = target_values(f, target)
        for m in PHASE_MEASURES:
            if m not in recorded:
                continue
            f[m] = recorded[m](f)
            est, lo, hi = kendall_ci(f, m, target, n_boot)
            rows.append({"phase": phase, "fraction": frac, "median_epoch": float(f["epoch"].median()),
                         "measure": m, "models": int(f[m].notna().sum()), "kendall": est,
                         "kendall_low": lo, "kendall_high": hi})  # fmt: skip
    return pd.DataFrame(rows)


def _scores(values: pd.DataFrame, rep_scores: pd.DataFrame, target: str, hparams: list[str], n_boot: int) -> pd.DataFrame:
    """The score table of one set of runs: :func:`score_measures` beside the correlate's CMI and sign error."""
    sc = score_measures(values, list(rep_scores.index), target, hparams, n_boot=n_boot)
    table = sc.table.join(rep_scores[["family", "cmi", "sign_error"]], how="left")
    table.attrs.update(sc.table.attrs)
    cols = [c for c in SCORE_COLUMNS if c in table.columns]
    return table[cols].sort_values(["rank", "kendall"], ascending=[True, False])


def run_correlation(ctx: StudyContext) -> Section:
    """Build the zoo, score all measures against the loss gap (converged runs), and word what the numbers say."""
    part = ctx.spec.parts["correlation"]
    folder = ctx.folder("correlation")
    grid = ctx.spec.zoo_grids("correlation")[0]
    store_path, zoo = build_zoo_store(ctx, grid)
    ctx.step("correlation:zoo")
    target, n_boot = part["target"], int(part["bootstrap"])
    second = SECONDARY[target]
    ctx.progress.log(f"  scoring measures against {target} and {second} (measures are cached in the store)")
    rep = correlate(store_path, measures=part["measures"], target=target, out_dir=folder, device=ctx.device,
                    progress=ctx.progress)  # fmt: skip
    values = rep.values  # every target at each run's stopping point, the secondary one included
    store = Store(store_path)
    conv = converged(values)
    met, missed = values[conv], values[~conv]
    scored, only_met = scored_runs(values)
    which = "converged" if only_met else f"all (fewer than {MIN_CONVERGED} converged)"
    table = _scores(scored, rep.scores, target, rep.hparams, n_boot)
    table_all = _scores(values, rep.scores, target, rep.hparams, n_boot) if len(missed) else None
    table_second = _scores(scored, rep.scores, second, rep.hparams, n_boot)
    ctx.progress.log(f"  scored {len(scored)} {which} models ({len(missed)} missed the training criterion)")
    phases = phase_table(store_path, target, n_boot, run_ids=list(scored.index))
    ctx.step("correlation:scores")
    missed_table = _missed(values, missed, target)
    noise = noise_floor(scored, rep.hparams, [target, second, "gn_full", "gn_fc", "traj_gn", "val_loss"])
    cfg0 = store.get_config(values.index[0])
    findings = _findings(table, table_second, phases, target, second, len(scored), len(values), len(missed))
    nf = noise.set_index("quantity")
    if target in nf.index and math.isfinite(nf.loc[target, "seed_vs_seed_kendall"]):
        r = nf.loc[target]
        findings.append(Finding(
            f"Noise floor: over {int(r.configs)} configurations, the seed-to-seed SD of `{target}` is "
            f"{r.within_over_across:.2f} of its SD across configurations, and one seed's `{target}` ranks the other "
            f"seed's with Kendall tau {r.seed_vs_seed_kendall:+.2f}: no measure computed on another run can be "
            "expected to do much better.", "info"))  # fmt: skip
    figures = [Figure(folder / f"scatter_{m}.png", f"{m} against {target} at the stopping point, one point per model")
               for m in ("gn_full", "gn_fc", "traj_gn", "val_loss") if (folder / f"scatter_{m}.png").exists()]
    figures.append(Figure(folder / "epochs_kendall.png",
                          f"Kendall tau of each per-epoch measure against {target}, epoch by epoch"))
    figures.append(Figure(folder / "epochs_granulated.png", "Granulated Kendall (Jiang et al. 2020) by epoch"))
    n_models = len(values)
    failures = [f"`{m}` could not be computed for {n_models - int(rep.scores.loc[m, 'n'])} of {n_models} models "
                f"(scored on the rest); the first reason: {why}" for m, why in sorted(rep.failures.items())
                if m in rep.scores.index]  # fmt: skip
    hps = ", ".join(h.removeprefix("cfg.") for h in rep.hparams)
    n_configs = int(config_labels(values, rep.hparams).nunique())
    stop = cfg0.get("stop_loss")
    tables = [
        Table("correlation_scores", table, f"Every measure against `{target}` over the {len(scored)} {which} models "
              "at their stopping point; rank 1 = no measure's interval lies above this one's (overlapping "
              "intervals share a rank). Intervals: 95%, resampling configurations with their seeds nested.",
              index=True),
        Table("correlation_secondary", table_second, f"The same against `{second}` (secondary target).", index=True),
        Table("correlation_phases", phases, "Kendall tau (95% bootstrap interval over models) of GN, the validation "
              "loss and the baselines against the gap early in training (10% of each run's stopping epoch), in the "
              "middle (50%) and at the stopping point."),
        Table("correlation_noise", noise, "The seed-to-seed noise floor (the scored models): the SD over the seeds of "
              "one configuration beside the SD across configurations, and the Kendall tau of one seed's value with "
              "another's over the configurations."),
        Table("correlation_granulated", rep.granulated, "Granulated Kendall per hyper-parameter (all models): how "
              "well each measure ranks models that differ in that hyper-parameter only.", index=True),
        Table("correlation_per_epoch", rep.per_epoch, "Kendall, granulated Kendall and CMI of the per-epoch "
              "measures at every epoch (the runs still training at that epoch).", max_rows=12),
    ]  # fmt: skip
    if len(missed_table):
        tables.insert(3, Table("correlation_missed", missed_table, "Runs that did not meet the training criterion, "
                               "reported apart (not in the scores above)."))
    if table_all is not None:
        tables.insert(2, Table("correlation_scores_all", table_all, f"All {len(values)} models, the runs that "
                               "missed the criterion included (for comparison only).", index=True))  # fmt: skip
    return Section(
        key="correlation",
        title="Does GN rank models by their generalization gap?",
        intro=(
            f"{n_models} models of the `{zoo.name}` zoo ({n_configs} configurations x seeds) on "
            f"{cfg0.get('dataset')} with {cfg0.get('n_train')} training examples, varying {hps}. Every run trains "
            f"until its training cross-entropy is at most {stop} or for at most {cfg0.get('epochs')} epochs (Jiang "
            f"et al. 2020); {len(met)} met the criterion (`converged`), {len(missed)} did not and are reported "
            "apart. Every measure is read at each run's stopping point (its last epoch). Target: "
            f"{TARGET_TEXT[target]}; secondary: {TARGET_TEXT[second]}. GN is measured on a fixed probe of "
            f"{cfg0.get('probe_size')} training examples, in eval mode, over all trainable parameters (`gn_full`) "
            "or the classifier head (`gn_fc`); `traj_gn` is sqrt(sum_t lr_t^2 mean-batch GN)/n over the training "
            "steps, the data-dependent term of Li, Luo & Qiao's bound (C/n) sqrt(sum_t lr_t^2/sigma_t^2 g(t)) with "
            "the noise sigma_t taken constant (SGD injects none; a constant scales every run alike and leaves a "
            "ranking unchanged); the square root does not change a ranking within one training-set size, and the "
            "1/n makes zoos of different sizes comparable. Scores: Kendall tau (95% interval from a two-stage "
            f"bootstrap, {n_boot} resamples of the configurations with their seeds nested; `p_holm`: the "
            "one-sided p of tau <= 0, Holm-adjusted over all measures), granulated Kendall with its interval "
            "(Jiang et al. 2020), the controls for how far training got (`partial`: Kendall's partial tau given "
            "the training loss; `stratified`: within quartiles of it), the difference to the best baseline "
            f"that needs no model ({', '.join(BASELINES)}; `vs_baselines`, paired by resample), CMI (PGDL) and "
            "the robust sign error (Dziugaite et al. 2020). A positive tau means the measure grows with the gap."
        ),
        findings=findings,
        tables=tables,
        figures=figures,
        notes=failures,
    )


def noise_floor(values: pd.DataFrame, hparams: list[str], columns: list[str]) -> pd.DataFrame:
    """Seed-to-seed noise of the targets and of GN: within-configuration SD against the SD across configurations,
    and the Kendall tau of one seed's values with another's over the configurations (the best a measure computed
    from another seed could reach)."""
    labels = config_labels(values, hparams)
    rows = []
    for col in [c for c in columns if c in values.columns]:
        v = pd.to_numeric(values[col], errors="coerce")
        groups = v.groupby(labels.to_numpy())
        within = float(groups.std(ddof=1).mean())
        across = float(groups.mean().std(ddof=1))
        pairs = groups.apply(lambda g: g.dropna().to_numpy()[:2] if g.notna().sum() >= 2 else None).dropna()
        tau = math.nan
        if len(pairs) >= 4:
            a = [p[0] for p in pairs]
            b = [p[1] for p in pairs]
            tau = kendall(a, b).value
        rows.append({"quantity": col, "configs": int(groups.ngroups), "seeds_per_config": float(groups.size().mean()),
                     "sd_within_config": within, "sd_across_configs": across,
                     "within_over_across": within / across if across else math.nan, "seed_vs_seed_kendall": tau})
    return pd.DataFrame(rows)


def _missed(values: pd.DataFrame, missed: pd.DataFrame, target: str) -> pd.DataFrame:
    """One row per run that missed the criterion: its hyper-parameters, stopping epoch and gap."""
    cols = [c for c in values.columns if c.startswith("cfg.")] + ["stop_epoch", target]
    out = missed[[c for c in cols if c in missed.columns]].copy()
    out.columns = [c.removeprefix("cfg.") for c in out.columns]
    return out.reset_index()


def _row(table: pd.DataFrame, m: str) -> tuple[float, float, float]:
    if m not in table.index:
        return math.nan, math.nan, math.nan
    r = table.loc[m]
    return float(r["kendall"]), float(r["kendall_low"]), float(r["kendall_high"])


def _beats(table: pd.DataFrame, m: str) -> str:
    if m not in table.index or not math.isfinite(float(table.loc[m, "vs_baselines"])):
        return ""
    r = table.loc[m]
    best = table.attrs.get("best_baseline", "the best baseline")
    word = "beats" if is_true(r["beats_baselines"]) else "does not beat"
    return (f"; it {word} the best baseline that needs no model (`{best}`): difference "
            f"{ci_text(r.vs_baselines, r.vs_baselines_low, r.vs_baselines_high)}")


def _findings(table: pd.DataFrame, second: pd.DataFrame, phases: pd.DataFrame, target: str, target2: str,
              n: int, total: int, missed: int) -> list[Finding]:  # fmt: skip
    out = []
    full, fc, traj, val = (_row(table, m) for m in ("gn_full", "gn_fc", "traj_gn", "val_loss"))
    s = sign_of(full[1], full[2])
    verdict = verdict_of(full[1], full[2], TAU_MARGIN)
    if s > 0 and not ("gn_full" in table.index and is_true(table.loc["gn_full", "beats_baselines"])):
        verdict = "mixed"  # it ranks by the gap, but no better than a baseline that needs no model
    how = {1: "ranks the models by the gap the right way (a larger GN goes with a larger gap)",
           0: "is inconclusive: its interval contains 0",
           -1: "ranks the models by the gap the wrong way (a larger GN goes with a smaller gap)"}[s]  # fmt: skip
    out.append(Finding(
        f"At the stopping point, exact GN {how}: Kendall tau with `{target}` = {ci_text(*full)} over {n} converged "
        f"models ({missed} of {total} missed the criterion and are scored apart){_beats(table, 'gn_full')}. "
        f"GN fc: {ci_text(*fc)}; trajectory GN: {ci_text(*traj)}; validation loss: {ci_text(*val)}. Against "
        f"`{target2}`: exact GN {ci_text(*_row(second, 'gn_full'))}.", verdict))  # fmt: skip
    if "gn_full" in table.index and math.isfinite(float(table.loc["gn_full", "partial"])):
        r = table.loc["gn_full"]
        out.append(Finding(
            f"Controlled for how far training got, exact GN's tau is {r.partial:+.2f} (partial Kendall given the "
            f"training loss) and {r.stratified:+.2f} (within quartiles of the training loss), against "
            f"{r.kendall:+.2f} uncontrolled.", "info"))  # fmt: skip
    if math.isfinite(traj[0]):
        st = sign_of(traj[1], traj[2])
        out.append(Finding(
            "Trajectory GN (sqrt of the sum over the training steps of lr_t^2 times the batch's mean per-example "
            "squared gradient norm, over n, as in Li, Luo & Qiao's bound) "
            f"{'ranks the models by the gap' if st > 0 else 'is inconclusive (its interval contains 0)' if st == 0 else 'ranks them the wrong way'}: "
            f"Kendall tau = {ci_text(*traj)}{_beats(table, 'traj_gn')}; the training budget alone "
            f"(`budget`, sum_t lr_t^2 / n) scores {ci_text(*_row(table, 'budget'))}.",
            verdict_of(traj[1], traj[2], TAU_MARGIN) if st <= 0 or is_true(table.loc["traj_gn", "beats_baselines"]) else "mixed"))  # fmt: skip
    ranked = [m for m in table.index if math.isfinite(table.loc[m, "kendall"])]
    if "gn_full" in ranked:
        rank = int(table.loc["gn_full", "rank"])
        tied = int((table["rank"] == rank).sum()) - 1
        top = [m for m in ranked if int(table.loc[m, "rank"]) == 1]
        out.append(Finding(
            f"Of {len(ranked)} measures, exact GN ranks #{rank}"
            + (f", tied with {tied} others whose intervals overlap its own" if tied else "")
            + f"; {len(top)} measure(s) share rank 1 (no interval lies above theirs)"
            + (": " + ", ".join(f"`{m}`" for m in top[:8]) + (" ..." if len(top) > 8 else "") if top else "")
            + ".", "info"))  # fmt: skip
    if not phases.empty:
        g = phases[phases["measure"] == "gn_full"].set_index("phase")
        if {"early", "final"} <= set(g.index):
            first, last = g.loc["early"], g.loc["final"]
            s0, s1 = sign_of(first.kendall_low, first.kendall_high), sign_of(last.kendall_low, last.kendall_high)
            verdict = "mixed" if s0 != s1 else verdict_of(last.kendall_low, last.kendall_high, TAU_MARGIN)
            out.append(Finding(
                f"Over training, exact GN's tau against the gap goes from "
                f"{ci_text(first.kendall, first.kendall_low, first.kendall_high)} early (10% of each run's "
                f"training) to {ci_text(last.kendall, last.kendall_low, last.kendall_high)} at the stopping point"
                + (": how GN relates to the gap depends on the phase of training." if s0 != s1 else "."), verdict))
    return out
