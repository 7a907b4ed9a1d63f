"""The *hpo* part: which models does each search algorithm select with each objective, and what does GN cost?

Two views of the same question. Live: every (algorithm, objective) searches on Ray Tune for a small
budget (one seed each; a finished search is reused, an interrupted one resumed). Replay: the search
algorithms query the zoo's recorded (configuration, epoch) metrics instead of training, so every pair
runs for many seeds. Seeds only measure Monte Carlo error given this one zoo: the effect of an objective
(vs ``val_loss``, per algorithm) gets its interval from a bootstrap over the zoo's configurations with
seeds nested (:mod:`gnsel.study.hpo_effects`; grid and random exactly, :mod:`gnsel.tune.exact`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..report import Figure, Finding, Section, Table
from ..tune.algorithms import check_search, live_algorithm
from ..tune.checkpoints import DEFAULT_SELECTORS, parse_selectors
from ..tune.exact import WEIGHT_GRID, selection_table
from ..tune.lookup import Lookup, check_one_setting
from ..tune.objectives import GN_SCOPES, TRAJECTORY_GN
from ..tune.objectives import parse_objective
from ..tune.replay import ReplayResult, parse_algorithms, parse_objectives, run_replay, t_interval
from ..tune.space import SearchSpace, load_space
from ..zoo.grid import load_grid
from .common import ACC_MARGIN, build_zoo_store, ci_text, quiet_logs, sign_of, slug, verdict_of
from .checkpoints import checkpoint_report
from .hpo_effects import Effects, effect_findings, run_effects, selection_exact
from .hpo_tuned import Tuned, tuned_effects, tuned_findings
from .part import StudyContext, StudyPart, check_positive, study_part, table_of

BASELINE = "val_loss"
_REPLAY_DEFAULTS = {"algorithms": ["grid", "random", "tpe", "hyperband", "bohb"], "objectives": ["val_loss"],
                    "seeds": 50, "budget": None,
                    "boot_exact_resamples": 1000, "boot_resamples": 30, "boot_seeds": 2, "boot_seed": 0,
                    "tune_gn": ["gn_full", "gn_fc"], "tune_weights": list(WEIGHT_GRID)}  # fmt: skip
_CHECKPOINT_DEFAULTS = {"selectors": list(DEFAULT_SELECTORS), "tail": None, "resamples": 1000}
_LIVE_DEFAULTS = {"algorithms": [], "objectives": ["val_loss"], "trials": 6, "epochs": 8,
                  "space": None, "cpus_per_trial": 1.0, "gpus_per_trial": 0.0}  # fmt: skip


@study_part
class HpoPart(StudyPart):
    """Which models each search algorithm selects with each objective (replay and live), and GN's cost."""

    name = "hpo"
    defaults = {"zoo": "quick", "replay": _REPLAY_DEFAULTS, "live": _LIVE_DEFAULTS, "checkpoints": _CHECKPOINT_DEFAULTS}
    nested = ("replay", "live", "checkpoints")
    uses_zoo = True
    verdict_rank, verdict_limit, answer_rank = 1, 4, 0

    def validate(self, settings: dict[str, Any]) -> None:
        replay, live = settings["replay"], settings["live"]
        parse_algorithms(replay["algorithms"])
        parse_objectives(replay["objectives"])
        for key in ("seeds", "boot_exact_resamples", "boot_resamples", "boot_seeds"):
            check_positive(replay[key], f"hpo.replay.{key}")
        if isinstance(replay["boot_seed"], bool) or not isinstance(replay["boot_seed"], int) or replay["boot_seed"] < 0:
            raise ValueError(f"hpo.replay.boot_seed must be a non-negative integer, got {replay['boot_seed']!r}")
        _check_tuning(replay)
        _check_checkpoints(settings["checkpoints"])
        for grid in self.zoo_grids(settings):  # the replay's zoo: one setting, the same data for every run
            try:
                check_one_setting([c.to_dict() for c in load_grid(grid).configs])
            except ValueError as err:
                raise ValueError(f"hpo.zoo: {err}") from None
        if not live["algorithms"]:
            return
        if live["space"] is None:
            raise ValueError("hpo.live.space is missing: give the search space of the live searches")
        space = load_space(live["space"])
        for key in ("trials", "epochs"):
            check_positive(live[key], f"hpo.live.{key}")
        for alg in live["algorithms"]:
            try:
                live_algorithm(alg)
            except ValueError as err:
                raise ValueError(f"hpo.live.algorithms: {err}") from None
        for text in live["objectives"]:
            parse_objective(text)
        if not any(_live_pair_ok(space, a, o) for a in live["algorithms"] for o in live["objectives"]):
            raise ValueError("hpo.live: no (algorithm, objective) pair is valid for the live space")

    def needs_ray(self, settings: Mapping[str, Any], workers: int, address: str | None) -> bool:
        return super().needs_ray(settings, workers, address) or bool(settings["live"]["algorithms"])

    def run(self, ctx: StudyContext) -> Section:
        return run_hpo(ctx)

    def answer(self, section: Section) -> list[tuple[str, int | None]]:
        """GN's best objective alone and as a complement, from random search's exact expectations with intervals
        over the zoo's configurations (``hpo_effects``); the seed-error table only when that is missing."""
        effects = table_of(section, "hpo_effects")
        how = "random search, exact; interval over the zoo's configurations"
        if effects is not None and len(effects) and (effects["algorithm"] == "random").any():
            diffs = effects[effects["algorithm"] == "random"].rename(
                columns={"effect": "diff_test_acc", "low": "diff_low", "high": "diff_high"})
        else:
            diffs, how = table_of(section, "hpo_vs_val_loss"), "paired over replay seeds"
            if diffs is not None and "algorithm" in diffs and (diffs["algorithm"] == "random").any():
                diffs, how = diffs[diffs["algorithm"] == "random"], "random search, paired over replay seeds"
        if diffs is None or not len(diffs):
            return []
        gn = diffs[diffs["objective"].map(uses_gn)]
        alone = gn[gn["objective"].map(lambda o: parse_objective(o).gn_only)]
        mixed = gn[~gn["objective"].map(lambda o: parse_objective(o).gn_only)]
        tuned = table_of(section, "hpo_weight_tuned")
        if tuned is not None and len(tuned) and how.startswith("random"):
            t = tuned[tuned["algorithm"] == "random"].rename(
                columns={"effect": "diff_test_acc", "low": "diff_low", "high": "diff_high"})
            t = t.assign(shown=[f"`{o}` (w = {w:g}, tuned on validation)" for o, w in zip(t["objective"], t["weight"])])
            mixed = pd.concat([mixed, t[["objective", "shown", "diff_test_acc", "diff_low", "diff_high"]]],
                              ignore_index=True)
        word = {"helps": "better than", "inconclusive": "neither clearly better nor, within the margin, ruled out "
                "better than", "does not help": f"no better (the interval excludes a benefit above {ACC_MARGIN}) than"}
        out: list[tuple[str, int | None]] = []
        for label, rows in (("as a stand-in for the validation loss (GN alone)", alone),
                            ("as a complement to it", mixed)):  # fmt: skip
            if len(rows):
                r = rows.loc[rows["diff_test_acc"].idxmax()]  # GN's best showing
                s = sign_of(r.diff_low, r.diff_high)
                v = verdict_of(r.diff_low, r.diff_high, ACC_MARGIN)
                best = f"best of {len(rows)} objectives, uncorrected for that choice" if len(rows) > 1 else "one objective"
                shown = r.shown if isinstance(getattr(r, "shown", None), str) else f"`{r.objective}`"
                out.append((f"{label}, GN's best objective {shown} selects models {word[v]} those of the "
                            f"validation loss (test accuracy {ci_text(r.diff_test_acc, r.diff_low, r.diff_high, 3)}; "
                            f"{how}; {best})", s))  # fmt: skip
        return out


def _check_checkpoints(ck: Mapping[str, Any]) -> None:
    try:
        parse_selectors(ck["selectors"])
    except ValueError as err:
        raise ValueError(f"hpo.checkpoints.selectors: {err}") from None
    tail = ck["tail"]
    if tail is not None and (isinstance(tail, bool) or not isinstance(tail, int) or tail < 1):
        raise ValueError(f"hpo.checkpoints.tail must be a positive integer or null, got {tail!r}")
    check_positive(ck["resamples"], "hpo.checkpoints.resamples")


def _check_tuning(replay: Mapping[str, Any]) -> None:
    gn, weights = replay["tune_gn"], replay["tune_weights"]
    known = [*GN_SCOPES, TRAJECTORY_GN]
    if not isinstance(gn, list) or any(g not in known for g in gn):
        raise ValueError(f"hpo.replay.tune_gn must be a list of GN metrics from {', '.join(known)}, got {gn!r}")
    ok = isinstance(weights, list) and len(weights) >= 2 and all(
        isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0 for w in weights)
    if not ok:
        raise ValueError(f"hpo.replay.tune_weights must be a list of at least two finite weights >= 0, got {weights!r}")


def _live_pair_ok(space: SearchSpace, algorithm: str, objective: str) -> bool:
    try:
        check_search(space, algorithm, parse_objective(objective))
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------------------------------ replay
def _replay(ctx: StudyContext, store_path: Path, folder: Path):
    """Run (or reload) the replay of every (algorithm, objective, seed)."""
    settings = ctx.spec.parts["hpo"]["replay"]
    key = ctx.spec.part_hash("hpo", step="replay", store=str(store_path))
    meta_path = folder / "replay_meta.json"
    if meta_path.exists() and (folder / "replay_runs.csv").exists() and (folder / "replay_curves.csv").exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key:
            ctx.progress.log("  replay: reusing the finished replay")
            runs = pd.read_csv(folder / "replay_runs.csv")
            if "note" in runs:
                runs["note"] = runs["note"].astype(object).fillna("")
            return ReplayResult(
                runs=runs,
                curves=pd.read_csv(folder / "replay_curves.csv"), budget=meta["budget"],
                zoo_epochs=meta["zoo_epochs"], n_configs=meta["n_configs"], best_test_acc=meta["best_test_acc"],
                space=meta["space"], seconds=meta["seconds"],
            )  # fmt: skip
    n = len(settings["algorithms"]) * len(settings["objectives"]) * int(settings["seeds"])
    ctx.progress.log(f"  replay: {n} searches ({len(settings['algorithms'])} algorithms x "
                     f"{len(settings['objectives'])} objectives x {settings['seeds']} seeds) over the zoo")  # fmt: skip
    res = run_replay(store_path, settings["algorithms"], settings["objectives"], int(settings["seeds"]),
                     settings["budget"], workers=ctx.workers)  # fmt: skip
    res.write(folder)
    meta_path.write_text(json.dumps({"key": key, "budget": res.budget, "zoo_epochs": res.zoo_epochs,
                                     "n_configs": res.n_configs, "best_test_acc": res.best_test_acc,
                                     "space": res.space, "seconds": res.seconds}, indent=2))  # fmt: skip
    ctx.progress.log(f"  replay: done in {res.seconds:.0f} s")
    return res


def _effects(ctx: StudyContext, lookup: Lookup, res: ReplayResult, store_path: Path, folder: Path) -> Effects:
    """Per-algorithm effects vs ``val_loss`` with bootstrap intervals; the samples are reused when the settings match."""
    settings = ctx.spec.parts["hpo"]["replay"]
    key = ctx.spec.part_hash("hpo", step="effects", store=str(store_path))
    meta_path, samples_path = folder / "effects_meta.json", folder / "effect_samples.csv"
    samples = None
    if meta_path.exists() and samples_path.exists() and json.loads(meta_path.read_text()).get("key") == key:
        ctx.progress.log("  bootstrap: reusing the finished resamples")
        samples = pd.read_csv(samples_path)
    else:
        ctx.progress.log(f"  bootstrap over the zoo's {res.n_configs} configurations (seeds nested): "
                         f"{settings['boot_exact_resamples']} exact resamples for grid/random, "
                         f"{settings['boot_resamples']} replayed x {settings['boot_seeds']} seeds for the others")  # fmt: skip
    eff = run_effects(lookup, res.runs, parse_algorithms(settings["algorithms"]), settings["objectives"], res.budget,
                      samples=samples, baseline=BASELINE, exact_resamples=int(settings["boot_exact_resamples"]),
                      replay_resamples=int(settings["boot_resamples"]), replay_seeds=int(settings["boot_seeds"]),
                      seed=int(settings["boot_seed"]), workers=ctx.workers, progress=ctx.progress)  # fmt: skip
    if samples is None:
        eff.samples.to_csv(samples_path, index=False)
        meta_path.write_text(json.dumps({"key": key, "seconds": eff.seconds}, indent=2))
        ctx.progress.log(f"  bootstrap: done in {eff.seconds:.0f} s")
    return eff


def paired_differences(runs: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """Per (algorithm, objective), never pooled over algorithms: test accuracy minus the baseline objective's, paired
    by seed, with a 95% t interval over the seeds (Monte Carlo error given the zoo)."""
    base = runs[runs["objective"] == baseline].set_index(["algorithm", "seed"])["test_acc"]
    rows = []
    for (alg, obj), g in runs.groupby(["algorithm", "objective"], sort=False):
        if obj == baseline or alg not in base.index.get_level_values(0):
            continue
        d = g.set_index("seed")["test_acc"] - base.loc[alg]
        m, lo, hi = t_interval(d.to_numpy(float))
        rows.append({"algorithm": alg, "objective": obj, "pairs": int(d.notna().sum()), "diff_test_acc": m,
                     "diff_low": lo, "diff_high": hi,
                     "worse_share": float((d < 0).mean()), "better_share": float((d > 0).mean())})  # fmt: skip
    return pd.DataFrame(rows)


# -------------------------------------------------------------------------------------------- live
def _live(ctx: StudyContext, folder: Path) -> pd.DataFrame:
    """Every valid (algorithm, objective) live search; finished ones are read back, interrupted ones resumed."""
    from ..tune.live import run_search, search_name  # heavy: ray, only when live searches run

    live = ctx.spec.parts["hpo"]["live"]
    if not live["algorithms"]:
        return pd.DataFrame()
    space = load_space(live["space"])
    done_dir = folder / "live"
    done_dir.mkdir(exist_ok=True)
    rows, skipped = [], []
    pairs = [(a, o) for o in live["objectives"] for a in live["algorithms"]]
    for i, (alg, text) in enumerate(pairs):
        obj = parse_objective(text)
        try:
            check_search(space, alg, obj)
        except ValueError as err:
            skipped.append({"algorithm": alg, "objective": obj.text, "status": f"skipped: {err}"})
            continue
        name = slug(search_name(alg, obj.text))
        # "selection": rows saved under the earlier rule (each trial at its last epoch) are selected again
        key = ctx.spec.part_hash("hpo", step="live", search=name, selection="at-budget")
        saved = done_dir / f"{name}.json"
        done = json.loads(saved.read_text()) if saved.exists() else {}
        if done.get("key") == key:
            rows.append(done["row"])
            ctx.progress.log(f"  live {i + 1}/{len(pairs)} {alg}, {obj.text}: reused")
            continue
        ctx.progress.log(f"  live {i + 1}/{len(pairs)} {alg}, {obj.text}: {live['trials']} trials x "
                         f"{live['epochs']} epochs")
        with quiet_logs("ray"):  # Tune's per-step INFO lines (state saved, PBT perturbations) would drown the study's
            res = run_search(
                space, algorithm=alg, objective=obj.text, trials=int(live["trials"]), epochs=int(live["epochs"]),
                storage=folder / "tune", store=folder / "tune.sqlite", name=name, address=ctx.address, resume=True,
                seed=0, cpus_per_trial=float(live["cpus_per_trial"]), gpus_per_trial=float(live["gpus_per_trial"]),
            )  # fmt: skip
        if res.interrupted:
            raise KeyboardInterrupt(f"live search {name} was interrupted")
        row = res.selection.flat() | {"status": "done"}
        saved.write_text(json.dumps({"key": key, "row": row}, indent=2, default=str))
        rows.append(row)
        ctx.step(f"hpo:live:{name}")
    frame = pd.DataFrame(rows + skipped)
    return frame


# ------------------------------------------------------------------------------------------- plots
def plot_selected(summary: pd.DataFrame, live: pd.DataFrame, path: Path) -> Path:
    """Test accuracy of the selected models per algorithm (groups) and objective (bars; 95% interval over
    replay seeds), with the live searches' selections as black diamonds."""
    import matplotlib  # heavy: matplotlib, only when a figure is drawn

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # heavy: matplotlib

    algs = list(dict.fromkeys(summary["algorithm"]))
    objs = list(dict.fromkeys(summary["objective"]))
    width = 0.8 / max(1, len(objs))
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(algs) + 3), 5.0))
    for j, obj in enumerate(objs):
        s = summary[summary["objective"] == obj].set_index("algorithm").reindex(algs)
        x = np.arange(len(algs)) + (j - (len(objs) - 1) / 2) * width
        err = np.vstack([s["test_acc"] - s["test_acc_low"], s["test_acc_high"] - s["test_acc"]])
        ax.bar(x, s["test_acc"], width, yerr=np.nan_to_num(err), capsize=2, label=obj)
    if not live.empty and "test_acc" in live:
        lv = live[live["status"] == "done"]  # every live row has a status; skipped pairs have no selection
        algs += [a for a in dict.fromkeys(lv["algorithm"]) if a not in algs]
        for _, r in lv.iterrows():
            if r["objective"] not in objs:
                continue
            x = algs.index(r["algorithm"]) + (objs.index(r["objective"]) - (len(objs) - 1) / 2) * width
            ax.plot(x, r["test_acc"], "kD", ms=4, label="_live")
        ax.plot([], [], "kD", ms=4, label="live search (1 seed)")
    ax.set_xticks(np.arange(len(algs)), algs)
    ax.set_ylabel("test accuracy of the selected model")
    ax.set_ylim(0, 1.02)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.09), frameon=False)
    ax.set_title("Selected models: replay (bars, 95% CI over seeds) and live searches")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -------------------------------------------------------------------------------------------- part
def run_hpo(ctx: StudyContext) -> Section:
    """Replay and live searches; the selected models' test accuracy and GN's extra cost, with intervals."""
    folder = ctx.folder("hpo")
    grid = ctx.spec.zoo_grids("hpo")[0]
    store_path, _ = build_zoo_store(ctx, grid)
    ctx.step("hpo:zoo")
    res = _replay(ctx, store_path, folder)
    ctx.step("hpo:replay")
    lookup = Lookup.from_store(store_path)
    objectives = parse_objectives(ctx.spec.parts["hpo"]["replay"]["objectives"])
    eff = _effects(ctx, lookup, res, store_path, folder)
    ctx.step("hpo:effects")
    replay_cfg = ctx.spec.parts["hpo"]["replay"]
    tuned = tuned_effects(lookup, replay_cfg["tune_gn"], parse_algorithms(replay_cfg["algorithms"]), res.budget,
                          weights=replay_cfg["tune_weights"], resamples=int(replay_cfg["boot_exact_resamples"]),
                          seed=int(replay_cfg["boot_seed"]), base=BASELINE, progress=ctx.progress)  # fmt: skip
    ck = ctx.spec.parts["hpo"]["checkpoints"]
    ck_tables, ck_figures, ck_findings = checkpoint_report(
        lookup, folder, ck["selectors"], tail=ck["tail"], baseline=BASELINE, resamples=int(ck["resamples"]),
        seed=int(replay_cfg["boot_seed"]), zoo=f"the zoo ({res.n_configs} configurations)")  # fmt: skip
    ctx.step("hpo:checkpoints")
    live = _live(ctx, folder)
    summary = res.summary
    diffs = paired_differences(res.runs)
    exact = selection_exact(lookup, res.runs, objectives, res.budget)
    cost = _cost_table(summary, live)
    figures = [
        Figure(plot_selected(summary, live, folder / "selected_accuracy.png"),
               "Test accuracy of the model each (algorithm, objective) selects"),
        Figure(folder / "replay_anytime.png", "Regret (best test accuracy in the zoo minus that of the model "
               "selected so far) against epochs spent, mean and 95% band over seeds"),
    ]  # fmt: skip
    tables = [
        Table("hpo_replay", summary.drop(columns=["note"], errors="ignore"), f"Replay over the zoo "
              f"({res.n_configs} configurations x {res.zoo_epochs} epochs, budget {res.budget} epochs per search): "
              "test accuracy of the selected model, mean and 95% t interval over seeds."),
        Table("hpo_vs_val_loss", diffs, "Per algorithm, test accuracy of each objective's selection minus that of "
              "`val_loss`, paired by seed, with a 95% t interval over replay seeds: "
              "seed (Monte Carlo) error given this one zoo, which more seeds shrink without adding evidence; "
              "see `hpo_effects` for intervals over the zoo's configurations."),
        Table("hpo_effects", eff.effects, "Per algorithm: expected test accuracy of the model selected with each "
              "objective minus that with `val_loss` (effect), with a 95% interval from a bootstrap over the zoo's "
              "configurations with their seeds nested (percentile interval, widened to include the estimate where "
              "it falls outside). method exact: grid/random by order statistics on the full zoo and on every "
              "resample; replay: the full replay's seeds, each resample replayed with a few seeds."),
        Table("hpo_gn_cost", cost, "What a GN objective costs: compute per search (replay: the zoo's recorded "
              "seconds; live: measured), and GN's share of it."),
        Table("selection_exact", exact, "Exact expected test accuracy of the model grid search (k points without "
              "replacement) and random search (k draws, with or without replacement) select with each single "
              "objective, by order statistics over the zoo's configurations (no seeds); replay_mean: the replayed "
              "seeds' mean where the replay ran that algorithm with that k (a check).", max_rows=40),
        Table("selection_table", selection_table(lookup, objectives), "Every configuration of the zoo at its last "
              "epoch: each single objective's value and the test accuracy (seed means), what the exact "
              "expectations are computed from.", max_rows=20),
    ]  # fmt: skip
    if len(tuned.effects):
        tables.insert(tables.index(next(t for t in tables if t.name == "hpo_effects")) + 1, Table(
            "hpo_weight_tuned", tuned.effects, "Per exact algorithm and GN metric: the weight w of `val_loss + w * gn` "
            "chosen on validation data (least expected validation error of the selection; never the test set) and "
            "the expected test accuracy of the tuned objective's selection minus that of `val_loss` (effect), with a "
            "95% interval from the zoo bootstrap that re-chooses w on every resample; share_zero: the share of "
            "resamples that chose w = 0."))
        tables.append(Table("hpo_weight_curve", tuned.curves, "Every weight of the grid: the expected validation "
                            "error and test accuracy of the selection (exact, full zoo); chosen marks the pick.",
                            max_rows=40))  # fmt: skip
    if len(eff.gaps):
        tables.insert(tables.index(next(t for t in tables if t.name == "hpo_effects")) + 1, Table(
            "hpo_bandit_gap", eff.gaps, "Per GN objective: its effect under HyperBand/BOHB minus its effect under "
            "random search, paired within each bootstrap resample of the zoo's configurations, with a 95% interval."))
    if not live.empty:
        cols = [c for c in ("algorithm", "objective", "status", "trials", "failed", "selected_config", "selected_epoch",
                            "at_budget", "test_acc", "best_test_acc", "regret", "gap_acc", "epochs", "seconds", "gn_seconds",
                            "wall_seconds") if c in live.columns]  # fmt: skip
        tables.insert(1, Table("hpo_live", live[cols], "Live searches on Ray Tune (one seed each, small budget): "
                               "the selected model and what the search cost."))  # fmt: skip
    tables += ck_tables
    figures += ck_figures
    return Section(
        key="hpo",
        title="Does a GN objective select better models, and at what cost?",
        intro=(
            f"Replay: {', '.join(replay_cfg['algorithms'])} (the real Optuna and hpbandster implementations) "
            f"query the zoo's recorded metrics for {replay_cfg['seeds']} seeds each; the selected model's test "
            "accuracy is read from the zoo. The effect of each objective against `val_loss` is given per "
            "algorithm with a 95% interval from a bootstrap over the zoo's configurations (seeds nested): it "
            "covers another draw of such a zoo, which more replay seeds do not. Live: the searches run on Ray "
            "Tune and train every trial; each selects among its trials at the largest budget any of them reached. "
            "Checkpoint selection asks which epoch of every zoo run each selector keeps, against the oracle epoch. All "
            "objectives are minimised; a multi-objective search picks the point of its Pareto front with the "
            "smallest sum of normalised objectives."
        ),
        findings=_findings(summary, cost, live, res.best_test_acc, eff, res.n_configs, replay_cfg, tuned) + ck_findings,
        tables=tables,
        figures=figures,
        notes=[f"{r.algorithm} with `{r.objective}`: {r.status}" for r in live.itertuples()
               if r.status.startswith("skipped")] if not live.empty else [],
    )  # fmt: skip


def _span(values: pd.Series, fmt: str) -> str:
    """``a to b`` of a series' range, or just ``a`` when all values round alike."""
    lo, hi = fmt.format(values.min()), fmt.format(values.max())
    return lo if lo == hi else f"{lo} to {hi}"


def uses_gn(objective: str) -> bool:
    """Whether an objective measures GN (alone, weighted or as one of several objectives)."""
    return parse_objective(objective).uses_gn


def _cost_table(summary: pd.DataFrame, live: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for obj, g in summary.groupby("objective", sort=False):
        row = {"objective": obj, "uses_gn": uses_gn(obj), "replay_seconds": g["seconds"].mean(),
               "replay_gn_share": g["gn_seconds"].sum() / g["seconds"].sum() if g["seconds"].sum() > 0 else math.nan}
        if not live.empty and "wall_seconds" in live:
            lv = live[(live["objective"] == obj) & live["wall_seconds"].notna()]
            if len(lv):
                row |= {"live_searches": len(lv), "live_wall_seconds": lv["wall_seconds"].astype(float).mean(),
                        "live_compute_seconds": lv["seconds"].astype(float).mean(),
                        "live_gn_share": lv["gn_seconds"].astype(float).sum() / max(lv["seconds"].astype(float).sum(), 1e-12)}
        rows.append(row)
    frame = pd.DataFrame(rows)
    for col in ("replay_seconds", "live_compute_seconds"):
        if col in frame and (frame["objective"] == BASELINE).any():
            base = float(frame.loc[frame["objective"] == BASELINE, col].iloc[0])
            frame[col.replace("seconds", "vs_val_loss")] = frame[col] / base if base > 0 else math.nan
    return frame


def _findings(summary: pd.DataFrame, cost: pd.DataFrame, live: pd.DataFrame, best: float, eff: Effects,
              n_configs: int, replay_cfg: Mapping[str, Any], tuned: Tuned) -> list[Finding]:  # fmt: skip
    out = []
    base = summary[summary["objective"] == BASELINE]
    if len(base):
        b = t_interval(base["test_acc"])
        out.append(Finding(f"With `val_loss`, the searches select models of mean test accuracy {ci_text(*b, signed=False)} "
                           f"(over algorithms and seeds; the zoo's best model has {best:.3f}).", "info"))  # fmt: skip
    out += effect_findings(eff.effects, eff.gaps, n_configs, int(replay_cfg["boot_exact_resamples"]),
                           int(replay_cfg["boot_resamples"]), int(replay_cfg["boot_seeds"]), BASELINE)  # fmt: skip
    out += tuned_findings(tuned, n_configs, int(replay_cfg["boot_exact_resamples"]), BASELINE)
    gn_rows = cost[cost["uses_gn"]]
    if len(gn_rows) and "replay_gn_share" in gn_rows:
        share = gn_rows["replay_gn_share"]
        text = (f"Measuring GN at every epoch takes {_span(share, '{:.0%}')} of a search's compute "
                "(replay, the zoo's recorded times)")
        if "live_compute_vs_val_loss" in gn_rows and gn_rows["live_compute_vs_val_loss"].notna().any():
            v = gn_rows["live_compute_vs_val_loss"].dropna()
            text += f"; live, a GN-objective search used {_span(v, '{:.2f}x')} the compute of a `val_loss` one"
        out.append(Finding(text + ".", "info"))
    if not live.empty and "test_acc" in live:
        lv = live[live["status"] == "done"]
        by = lv.groupby("objective")["test_acc"].mean()
        if BASELINE in by:
            parts = ", ".join(f"`{o}` {v:.3f}" for o, v in by.items())
            out.append(Finding(f"Live (one seed per search, small budget, so less certain): mean selected test accuracy "
                               f"by objective: {parts}.", "info"))  # fmt: skip
    return out
