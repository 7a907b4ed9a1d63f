"""The *architectures* part: how GN and the published measures rank models of different architectures.

A zoo of architectures trained with the same settings (one per grid of the study; e.g. MLPs and 1-D
CNNs of several depths and widths) is ranked by every measure against the gap and against the test
error: Kendall tau with a bootstrap interval, and CMI conditioned on the architecture's own
hyper-parameters. The zero-cost NAS proxies are scored twice: after training (as every other measure)
and at initialisation, where NAS uses them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis import conditional_mutual_information, rank_text, separated_ranks
from ..zoo.correlate import correlate
from ..measures import get_measure
from ..zoo.measure import measure_run
from ..report import Figure, Finding, Section, Table
from ..store import Store
from ..zoo.grid import load_grid
from .common import build_zoo_store, check_measures, check_target, TAU_MARGIN, ci_text, kendall_ci, oriented, slug, verdict_of
from .part import StudyContext, StudyPart, check_positive, study_part
from .scoring import MIN_CONVERGED, converged, scored_runs

ZERO_COST = ("grad_norm", "snip", "synflow", "jacob_cov", "nwot")
#: The comparison groups the issue names, by measure family (the PGDL winner is ``db_mixup``).
GROUPS = {"gradient": "GN and gradient", "zero_cost": "zero-cost proxy", "norm": "norm", "flatness": "flatness",
          "spectral": "WeightWatcher", "representation": "PGDL winner (DB index on mixup)", "baseline": "baseline"}
_SIGN = {"larger gap": 1, "higher test error": 1, "smaller gap": -1, "lower test error": -1, "nothing": 0}


@study_part
class ArchitecturesPart(StudyPart):
    """How GN and the published measures rank the models of architecture zoos, against gap and test error."""

    name = "architectures"
    defaults = {"zoo": [], "targets": ["gap_loss", "test_error"], "bootstrap": 1000, "measures": None}
    uses_zoo = True
    verdict_rank = 2

    def validate(self, settings: dict[str, Any]) -> None:
        for t in settings["targets"]:
            check_target(t, "architectures.targets")
        check_measures(settings["measures"], "architectures")
        check_positive(settings["bootstrap"], "architectures.bootstrap")

    def run(self, ctx: StudyContext) -> Section:
        return run_architectures(ctx)


def expected_sign(measure: str) -> int:
    """+1 if a larger value is meant to go with a larger gap / test error, -1 if with a smaller one, 0 unknown."""
    name = measure.removesuffix("@init")
    try:
        return _SIGN.get(get_measure(name).higher_means, 0)
    except (KeyError, ValueError):
        return 1 if name.startswith(("gn_", "traj_gn", "val_", "train_loss", "mean_grad", "grad_var")) else 0


def _init_values(store_path: Path, device: str) -> pd.DataFrame:
    """Zero-cost proxies at initialisation (epoch 0), one row per finished run (cached in the store)."""
    store = Store(store_path)
    rows = {}
    for rid in store.runs_frame(status="done")["run_id"]:
        if 0 not in store.checkpoint_epochs(rid):
            continue
        res = measure_run(store, rid, list(ZERO_COST), epoch=0, device=device)
        rows[rid] = {f"{m}@init": r.value for m, r in res.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def score_architectures(ctx: StudyContext, store_path: Path, folder: Path, targets: list[str], n_boot: int,
                        measures: list[str] | None) -> tuple[pd.DataFrame, dict[str, str], int]:  # fmt: skip
    """Kendall (95% interval) and CMI of every measure against every target; the failures; the model count."""
    rows, failures, n_models = [], {}, 0
    init = _init_values(store_path, ctx.device)
    for target in targets:
        rep = correlate(store_path, measures=measures, target=target, out_dir=folder / target,
                        device=ctx.device, per_epoch=False, progress=ctx.progress)  # fmt: skip
        failures.update(rep.failures)
        values = rep.values.join(init, how="left")
        values, _ = scored_runs(values)  # at the stopping point of the runs that met the criterion
        n_models = max(n_models, len(values))
        for m in [*rep.scores.index, *init.columns]:
            est, lo, hi = kendall_ci(values.reset_index(), m, target, n_boot)
            if m in rep.scores.index:
                cmi, fam = float(rep.scores.loc[m, "cmi"]), str(rep.scores.loc[m, "family"])
            else:
                sub = values.reset_index()
                try:
                    cmi = conditional_mutual_information(sub.dropna(subset=[m, target]), m, target, rep.hparams).value
                except ValueError:
                    cmi = math.nan
                fam = "zero_cost"
            sign = expected_sign(m)
            rows.append({"target": target, "measure": m, "group": GROUPS.get(fam, fam),
                         "models": int(values[m].notna().sum()), "kendall": est, "kendall_low": lo,
                         "kendall_high": hi, "expected_sign": sign,
                         "agreement": sign * est if sign else math.nan, "cmi": cmi})  # fmt: skip
    return pd.DataFrame(rows), failures, n_models


def plot_agreement(table: pd.DataFrame, target: str, path: Path) -> Path:
    """Kendall tau (95% interval) of each measure against one target, signed so that right = as its source predicts."""
    import matplotlib  # heavy: matplotlib, only when a figure is drawn

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # heavy: matplotlib

    t = table[(table["target"] == target) & table["agreement"].notna()].sort_values("agreement")
    fig, ax = plt.subplots(figsize=(8, max(3.5, 0.26 * len(t) + 1)))
    colors = {g: c for g, c in zip(dict.fromkeys(GROUPS.values()), plt.get_cmap("tab10").colors)}
    y = np.arange(len(t))
    s = t["expected_sign"].to_numpy(float)
    lo, hi = s * t["kendall_low"].to_numpy(float), s * t["kendall_high"].to_numpy(float)
    est = t["agreement"].to_numpy(float)
    err = np.vstack([est - np.minimum(lo, hi), np.maximum(lo, hi) - est])
    ax.barh(y, est, xerr=np.nan_to_num(err), color=[colors.get(g, "grey") for g in t["group"]], capsize=2)
    ax.set_yticks(y, [f"{m}" for m in t["measure"]], fontsize=8)
    for lbl, m in zip(ax.get_yticklabels(), t["measure"]):
        if m.startswith(("gn_", "traj_gn")):
            lbl.set_fontweight("bold")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel(f"Kendall tau with {target}, signed by the measure's expected direction")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for g, c in colors.items() if g in set(t["group"])]
    ax.legend(handles, [g for g in colors if g in set(t["group"])], fontsize=7, loc="lower right")
    ax.set_title(f"Ranking architectures by {target}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_architectures(ctx: StudyContext) -> Section:
    """Train the architecture zoo(s) and rank their models with every measure."""
    part = ctx.spec.parts["architectures"]
    folder = ctx.folder("architectures")
    targets, n_boot = list(part["targets"]), int(part["bootstrap"])
    tables, figures, findings, notes, intro = [], [], [], [], []
    for source in ctx.spec.zoo_grids("architectures"):
        grid = load_grid(source)
        sub = folder / slug(grid.name)
        sub.mkdir(exist_ok=True)
        store_path, _ = build_zoo_store(ctx, source)
        ctx.step(f"architectures:{grid.name}:zoo")
        ctx.progress.log(f"  scoring measures on {grid.name} against {', '.join(targets)} (cached in the store)")
        table, failures, n = score_architectures(ctx, store_path, sub, targets, n_boot, part["measures"])
        ctx.step(f"architectures:{grid.name}:scores")
        models = sorted(grid.axes.get("model", [])) or sorted({c.model for c in grid.configs})
        runs = Store(store_path).runs_frame(status="done")
        met = int(converged(runs).sum())
        scored = ("the converged ones are scored" if met >= MIN_CONVERGED
                  else f"fewer than {MIN_CONVERGED} converged, so all are scored")  # fmt: skip
        intro.append(f"`{grid.name}`: {len(runs)} models ({', '.join(models)}) on {grid.configs[0].dataset}, every one "
                     f"trained with the same settings to the training criterion (stop_loss "
                     f"{grid.configs[0].stop_loss}) or {grid.configs[0].epochs} epochs; {met} met it and "
                     f"{scored} ({n} models), at their stopping point.")  # fmt: skip
        tables.append(Table(f"architectures_{slug(grid.name)}", table.sort_values(["target", "agreement"],
                            ascending=[True, False]), f"`{grid.name}`: every measure against each target. "
                            "`agreement` is Kendall tau times the direction the measure's source predicts "
                            "(+1: larger value, larger gap or test error): positive = ranks as intended."))  # fmt: skip
        for target in targets:
            figures.append(Figure(plot_agreement(table, target, sub / f"agreement_{slug(grid.name)}_{target}.png"),
                                  f"`{grid.name}`: how each measure ranks the architectures by `{target}` "
                                  "(bars: agreement; whiskers: 95% bootstrap interval)"))  # fmt: skip
            findings += _findings(table, target, grid.name)
        counts = table[table["target"] == targets[0]].set_index("measure")["models"]
        notes += [f"`{grid.name}`: `{m}` could not be computed for {n - int(counts.get(m, 0))} of {n} models "
                  f"(scored on the rest); the first reason: {why}" for m, why in sorted(failures.items())]  # fmt: skip
    return Section(
        key="architectures",
        title="Across architectures: GN against the published measures",
        intro=" ".join(intro) + (" Measures: GN (exact and fc, trajectory GN), the zero-cost NAS proxies (after "
                                 "training and at initialisation, `@init`), norm and margin measures, PAC-Bayes "
                                 "flatness, WeightWatcher alpha and the PGDL winner (Davies-Bouldin index on "
                                 "mixup representations); CMI conditions on the architecture's hyper-parameters."),
        findings=findings, tables=tables, figures=figures, notes=notes,
    )  # fmt: skip


def _findings(table: pd.DataFrame, target: str, zoo: str) -> list[Finding]:
    t = table[(table["target"] == target) & table["agreement"].notna()].sort_values("agreement", ascending=False)
    if t.empty:
        return []
    order = list(t["measure"])
    sgn = t["expected_sign"].astype(float)
    lo = pd.concat([sgn * t["kendall_low"], sgn * t["kendall_high"]], axis=1).min(axis=1)
    hi = pd.concat([sgn * t["kendall_low"], sgn * t["kendall_high"]], axis=1).max(axis=1)
    ranks = separated_ranks(t["agreement"].set_axis(order), lo.set_axis(order), hi.set_axis(order))
    out = []
    if "gn_full" in order:
        r = t.set_index("measure").loc["gn_full"]
        verdict = verdict_of(*oriented(r.kendall_low, r.kendall_high, int(r.expected_sign)), TAU_MARGIN)
        best = t.iloc[0]

        def agree(row: pd.Series) -> str:
            sgn = int(row.expected_sign)
            lo, hi = sorted((sgn * row.kendall_low, sgn * row.kendall_high))
            return ci_text(row.agreement, lo, hi)

        groups = []
        for g in ("zero-cost proxy", "norm", "flatness", "WeightWatcher", "PGDL winner (DB index on mixup)"):
            gg = t[t["group"] == g]
            if len(gg):
                groups.append(f"best {g} `{gg.iloc[0].measure}` {agree(gg.iloc[0])}")
        out.append(Finding(
            f"`{zoo}`, ranking by `{target}`: exact GN's agreement (Kendall tau times the direction its source "
            f"predicts; positive = ranks as intended) is {agree(r)}, ranked {rank_text('gn_full', ranks)} (a measure "
            "ranks above another only if their intervals do not overlap)"
            + (f" (trajectory GN: {agree(t.set_index('measure').loc['traj_gn'])}, {rank_text('traj_gn', ranks)})"
               if "traj_gn" in order else "")
            + f"; the highest point estimate is `{best.measure}` ({best.group}) with {agree(best)}; " + "; ".join(groups) + ".",
            verdict))  # fmt: skip
    return out

