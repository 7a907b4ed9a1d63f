"""What an objective does to the model each search algorithm selects, with intervals that cover what varies.

The replay's t interval over search seeds is Monte Carlo error given one zoo: more seeds shrink it
without adding evidence. Here the zoo itself is resampled: a bootstrap over its *configurations* with
the seeds nested (draw configurations with replacement; within each drawn configuration draw its
replicates with replacement). A configuration drawn twice is two distinct points of the resampled
space. That space is flat: one categorical parameter (``config``) whose values are the drawn
configurations' labels with a copy number, so it has no holes and every search spends its full budget
on real evaluations (a product space with a copy parameter would be mostly holes, which cost nothing,
and bandits would then see a fraction of the evaluations). Grid, random and HyperBand do not use the
parameters' structure; TPE and BOHB lose it on the resamples, so their intervals are, if anything, wide.

Per algorithm (never pooled) and objective other than the baseline ``val_loss``, the *effect* is the
expected test accuracy of the model selected with the objective minus that with ``val_loss``:

- ``grid`` and ``random`` with a single objective (method ``exact``): the order-statistics expectation of
  :mod:`gnsel.tune.exact` for ``k = budget // epochs`` evaluations (grid without, random with
  replacement), on the full zoo (the estimate) and on every resample;
- the others, and multi-objectives (method ``replay``): the estimate from the full zoo's replay (all
  seeds, paired by seed); each of the first resamples is replayed with a few seeds.

The 95% interval is the 2.5-97.5 percentile range of the resampled effects, widened to include the
estimate where it falls outside (never narrower than the percentile interval). Bandit gaps
(``hyperband - random``, ``bohb - random``) are paired within each resample.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..analysis import percentile_interval
from ..progress import SILENT, Progress
from ..report import Finding
from ..tune.algorithms import ReplayContext, replay_algorithm
from ..tune.exact import exact_expectations, expected_selected, selection_table
from ..tune.lookup import Lookup
from ..tune.objectives import Objective, parse_objective
from ..tune.replay_search import Search
from .common import ACC_MARGIN, ci_text, verdict_of

__all__ = ["BOOT_PARAM", "EXACT_ALGORITHMS", "Effects", "bootstrap_draws", "effect_findings", "effect_samples", "point_effects",
           "replay_k", "resample_lookup", "run_effects", "selection_exact", "summarise_effects", "widened_interval"]  # fmt: skip

BOOT_PARAM = "config"  # the one parameter of a resampled (flat) space
EXACT_ALGORITHMS = {"grid": False, "random": True}  # algorithm -> draws with replacement
BANDITS = ("hyperband", "bohb")
Draw = tuple[np.ndarray, list[np.ndarray]]  # (configurations, replicates of each)


# ------------------------------------------------------------------------------------------ resampling
def bootstrap_draws(lookup: Lookup, resamples: int, seed: int = 0) -> list[Draw]:
    """``resamples`` nested draws: configurations with replacement, then each one's replicates with replacement."""
    rng = np.random.default_rng([int(seed), 0xB007])
    n = len(lookup.configs)
    out = []
    for _ in range(int(resamples)):
        cfg = rng.integers(n, size=n)
        out.append((cfg, [rng.integers(int(lookup.n_replicates[c]), size=int(lookup.n_replicates[c])) for c in cfg]))
    return out


def resample_lookup(lookup: Lookup, draw: Draw) -> Lookup:
    """The lookup of one draw: same shapes, a flat space whose points are the drawn configurations (copies numbered)."""
    cfg, reps = draw
    seen: dict[int, int] = {}
    copies = []
    for c in cfg:
        copies.append(seen.get(int(c), 0))
        seen[int(c)] = copies[-1] + 1
    labels = [f"{lookup.label(int(c))} #{j}" for c, j in zip(cfg, copies)]
    params = {BOOT_PARAM: labels}
    configs = [{BOOT_PARAM: lab} for lab in labels]
    R = next(iter(lookup.metrics.values())).shape[1]
    idx = np.zeros((len(cfg), R), dtype=int)
    mask = np.zeros((len(cfg), R), dtype=bool)
    for i, r in enumerate(reps):
        idx[i, : len(r)], mask[i, : len(r)] = r, True
    metrics = {}
    for name, arr in lookup.metrics.items():
        new = arr[np.asarray(cfg)[:, None], idx]
        new[~mask] = np.nan
        metrics[name] = new
    return Lookup(
        params=params, configs=configs, index={(lab,): i for i, lab in enumerate(labels)},
        epochs=lookup.epochs, metrics=metrics, n_replicates=np.array([len(r) for r in reps]),
        run_ids=[[lookup.run_ids[c][r] for r in rr] for c, rr in zip(cfg, reps)],
        seed_mode=lookup.seed_mode, measure_every_epoch=lookup.measure_every_epoch,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------ estimates
def replay_k(budget: int, lookup: Lookup) -> int:
    """Evaluations a grid/random replay makes: ``budget // epochs`` (every evaluation at the full budget)."""
    return max(1, int(budget) // int(lookup.epochs))


def _methods(algorithms: Sequence[str], objectives: Sequence[Objective]) -> dict[tuple[str, str], str]:
    return {(a, o.text): "exact" if a in EXACT_ALGORITHMS and not o.multi else "replay"
            for a in algorithms for o in objectives}  # fmt: skip


def _exact_accs(lookup: Lookup, algorithms: Sequence[str], singles: Sequence[Objective], k: int) -> dict:
    table = selection_table(lookup, singles)
    out = {}
    for a in algorithms:
        if a in EXACT_ALGORITHMS:
            rep = EXACT_ALGORITHMS[a]
            for o in singles:
                v = table[o.text].to_numpy(float)
                kk = k if rep else min(k, int(np.isfinite(v).sum()))
                out[(a, o.text)] = expected_selected(v, table["test_acc"], kk, rep) if kk >= 1 else math.nan
    return out


def point_effects(lookup: Lookup, runs: pd.DataFrame, algorithms: Sequence[str], objectives: Sequence[Objective],
                  budget: int, baseline: str = "val_loss") -> dict[tuple[str, str], float]:  # fmt: skip
    """The full zoo's effect per (algorithm, objective != baseline): exact or from the replay's seeds (paired)."""
    methods = _methods(algorithms, objectives)
    exact = _exact_accs(lookup, algorithms, [o for o in objectives if not o.multi], replay_k(budget, lookup))
    out = {}
    for (a, o), method in methods.items():
        if o == baseline:
            continue
        if method == "exact":
            out[(a, o)] = exact[(a, o)] - exact[(a, baseline)]
            continue
        g = runs[runs["algorithm"] == a].set_index(["objective", "seed"])["test_acc"]
        d = (g.loc[o] - g.loc[baseline]).to_numpy(float) if o in g.index.levels[0] else np.array([])
        d = d[np.isfinite(d)]
        out[(a, o)] = float(d.mean()) if d.size else math.nan
    return out


# ------------------------------------------------------------------------------------------ replays
_WORKER: dict[str, Any] = {}


def _init_worker(lookup: Lookup, draws: list[Draw], plan: tuple) -> None:
    _WORKER.update(lookup=lookup, draws=draws, plan=plan, context=ReplayContext())  # lives as long as the process


def _replay_one(b: int, lookup: Lookup, draws: list[Draw], plan: tuple, context: ReplayContext) -> dict:
    """Mean test accuracy of the replayed selections per (algorithm, objective) on resample ``b``."""
    pairs, objectives, budget, seeds = plan
    lk = resample_lookup(lookup, draws[b])
    test = lk.mean("test_acc")
    by_text = {o.text: o for o in objectives}
    out = {}
    for a, o in pairs:
        alg, accs = replay_algorithm(a), []
        for s in range(b * seeds, (b + 1) * seeds):
            search = Search(lk, by_text[o], budget, s, bandit=alg.bandit)
            alg.replay(search, context)
            sel = search.selected
            accs.append(float(test[sel.config, sel.epoch]) if sel is not None and sel.config is not None else math.nan)
        out[(a, o)] = float(np.nanmean(accs)) if np.isfinite(accs).any() else math.nan
    return out


def _replay_task(b: int) -> tuple[int, dict]:
    w = _WORKER
    return b, _replay_one(b, w["lookup"], w["draws"], w["plan"], w["context"])


def effect_samples(lookup: Lookup, algorithms: Sequence[str], objectives: Sequence[Objective], budget: int, *,
                   exact_resamples: int = 1000, replay_resamples: int = 30, replay_seeds: int = 2, seed: int = 0,
                   baseline: str = "val_loss", workers: int = 1, progress: Progress = SILENT) -> pd.DataFrame:  # fmt: skip
    """Bootstrap effects in long format ``resample, algorithm, objective, effect`` (resample ``b`` is the same
    resampled zoo for every algorithm; replay pairs use the first ``replay_resamples``)."""
    methods = _methods(algorithms, objectives)
    singles = [o for o in objectives if not o.multi]
    k = replay_k(budget, lookup)
    replay_pairs = [p for p, m in methods.items() if m == "replay"]
    replay_pairs = list(dict.fromkeys(replay_pairs + [(a, baseline) for a, _ in replay_pairs]))  # paired with its baseline
    n_exact = exact_resamples if any(m == "exact" for m in methods.values()) else 0
    n_replay = replay_resamples if replay_pairs else 0
    draws = bootstrap_draws(lookup, max(n_exact, n_replay), seed)
    accs: dict[str, dict[int, dict]] = {"exact": {}, "replay": {}}
    if n_exact:
        with progress.task("hpo bootstrap, exact (grid, random)", total=n_exact) as bar:
            for b in range(n_exact):
                accs["exact"][b] = _exact_accs(resample_lookup(lookup, draws[b]), algorithms, singles, k)
                bar.advance(1)
    if n_replay:
        plan = (replay_pairs, list(objectives), int(budget), int(replay_seeds))
        n_searches = n_replay * len(replay_pairs) * replay_seeds
        procs = max(1, min(int(workers), n_searches // 200, n_replay))  # a spawned process costs seconds to start
        with progress.task(f"hpo bootstrap, replay ({n_searches} searches)", total=n_replay) as bar:
            if procs == 1:
                with ReplayContext() as context:
                    for b in range(n_replay):
                        accs["replay"][b] = _replay_one(b, lookup, draws, plan, context)
                        bar.advance(1)
            else:
                with mp.get_context("spawn").Pool(procs, _init_worker, (lookup, draws[:n_replay], plan)) as pool:
                    for b, got in pool.imap_unordered(_replay_task, range(n_replay)):
                        accs["replay"][b] = got
                        bar.advance(1)
    rows = []
    for (a, o), m in methods.items():
        if o == baseline:
            continue
        for b in range(n_exact if m == "exact" else n_replay):
            got = accs[m][b]
            rows.append({"resample": b, "algorithm": a, "objective": o,
                         "effect": got.get((a, o), math.nan) - got.get((a, baseline), math.nan)})  # fmt: skip
    return pd.DataFrame(rows, columns=["resample", "algorithm", "objective", "effect"])


# ------------------------------------------------------------------------------------------ summaries
def widened_interval(point: float, samples: np.ndarray) -> tuple[float, float, int]:
    """The 95% percentile interval of ``samples``, widened to include ``point``; and how many samples were finite."""
    s = samples[np.isfinite(samples)]
    if s.size < 2:
        return math.nan, math.nan, int(s.size)
    lo, hi = percentile_interval(s, min_samples=2)
    if math.isfinite(point):
        lo, hi = min(lo, point), max(hi, point)
    return lo, hi, int(s.size)


@dataclass
class Effects:
    """Per-(algorithm, objective) effects, bandit gaps, and every bootstrap sample (long format)."""

    effects: pd.DataFrame  # algorithm, objective, effect, low, high, resamples, method
    gaps: pd.DataFrame  # algorithm, objective, gap, low, high, resamples
    samples: pd.DataFrame  # resample, algorithm, objective, effect (gaps as "bohb-random")
    seconds: float = 0.0


def summarise_effects(points: dict[tuple[str, str], float], samples: pd.DataFrame, algorithms: Sequence[str],
                      objectives: Sequence[Objective], baseline: str = "val_loss") -> Effects:  # fmt: skip
    """Effects with 95% bootstrap intervals, and the paired bandit-minus-random gaps of the GN objectives."""
    methods = _methods(algorithms, objectives)
    by = {key: g.set_index("resample")["effect"] for key, g in samples.groupby(["algorithm", "objective"], sort=False)}
    rows = []
    for (a, o), m in methods.items():
        if o == baseline:
            continue
        s = by.get((a, o), pd.Series(dtype=float))
        lo, hi, n = widened_interval(points.get((a, o), math.nan), s.to_numpy(float))
        rows.append({"algorithm": a, "objective": o, "effect": points.get((a, o), math.nan), "low": lo, "high": hi,
                     "resamples": n, "method": m})  # fmt: skip
    gap_rows, gap_samples = [], []
    if "random" in algorithms:
        for o in objectives:
            if o.text == baseline or not o.uses_gn:
                continue
            for bandit in (b for b in BANDITS if b in algorithms):
                name = f"{bandit}-random"
                d = by.get((bandit, o.text), pd.Series(dtype=float)) - by.get(("random", o.text), pd.Series(dtype=float))
                d = d.dropna()
                point = points.get((bandit, o.text), math.nan) - points.get(("random", o.text), math.nan)
                lo, hi, n = widened_interval(point, d.to_numpy(float))
                gap_rows.append({"algorithm": name, "objective": o.text, "gap": point, "low": lo, "high": hi,
                                 "resamples": n})  # fmt: skip
                gap_samples.append(pd.DataFrame({"resample": d.index.astype(int), "algorithm": name,
                                                 "objective": o.text, "effect": d.to_numpy(float)}))  # fmt: skip
    all_samples = pd.concat([samples, *gap_samples], ignore_index=True) if gap_samples else samples
    return Effects(
        effects=pd.DataFrame(rows, columns=["algorithm", "objective", "effect", "low", "high", "resamples", "method"]),
        gaps=pd.DataFrame(gap_rows, columns=["algorithm", "objective", "gap", "low", "high", "resamples"]),
        samples=all_samples.reset_index(drop=True),
    )


def selection_exact(lookup: Lookup, runs: pd.DataFrame, objectives: Sequence[Objective], budget: int,
                    ks: Sequence[int] = (1, 4, 8, 16, 32)) -> pd.DataFrame:  # fmt: skip
    """Exact expected test accuracy of grid/random per single objective and ``k`` (the replay's ``k`` and ``ks``,
    capped at N), with the check where the replay ran that algorithm at that k: ``replay_mean`` of its seeds,
    ``replay_se`` (their standard error, the Monte Carlo error) and ``replay_z`` = (mean - exact) / se."""
    table = selection_table(lookup, objectives)
    n = len(table)
    k_replay = replay_k(budget, lookup)
    ks_all = sorted({min(int(k), n) for k in ks} | {k_replay})
    frame = exact_expectations(table, objectives, ks_all)
    g = runs.groupby(["algorithm", "objective"])["test_acc"] if len(runs) else None
    stats = pd.DataFrame({"mean": g.mean(), "se": g.std(ddof=1) / np.sqrt(g.count())}) if g is not None else None
    replayed = {"grid": (min(k_replay, n), False), "random": (k_replay, True)}

    def replay(r: pd.Series, what: str) -> float:
        key = (r["algorithm"], r["objective"])
        if replayed.get(r["algorithm"]) != (r["k"], r["replacement"]) or stats is None or key not in stats.index:
            return math.nan
        return float(stats.loc[key, what])

    for col, what in (("replay_mean", "mean"), ("replay_se", "se")):
        frame[col] = frame.apply(replay, axis=1, what=what) if len(frame) else pd.Series(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["replay_z"] = (frame["replay_mean"] - frame["expected_test_acc"]) / frame["replay_se"]
    return frame


def run_effects(lookup: Lookup, runs: pd.DataFrame, algorithms: Sequence[str], objectives: Sequence[str | Objective],
                budget: int, samples: pd.DataFrame | None = None, baseline: str = "val_loss",
                **bootstrap: Any) -> Effects:  # fmt: skip
    """Point effects, bootstrap samples (computed unless ``samples`` is given) and their summary; timed."""
    t0 = time.perf_counter()
    objs = list({o.text: o for o in (x if isinstance(x, Objective) else parse_objective(x) for x in objectives)}.values())
    if baseline not in {o.text for o in objs}:
        return summarise_effects({}, pd.DataFrame(columns=["resample", "algorithm", "objective", "effect"]), [], [])
    points = point_effects(lookup, runs, algorithms, objs, budget, baseline)
    if samples is None:
        samples = effect_samples(lookup, algorithms, objs, budget, baseline=baseline, **bootstrap)
    else:
        samples = samples[samples["algorithm"].isin(algorithms)]
    out = summarise_effects(points, samples, algorithms, objs, baseline)
    out.seconds = time.perf_counter() - t0
    return out


# ------------------------------------------------------------------------------------------ findings
def effect_findings(effects: pd.DataFrame, gaps: pd.DataFrame, n_configs: int, exact_resamples: int,
                    replay_resamples: int, replay_seeds: int, baseline: str = "val_loss") -> list[Finding]:  # fmt: skip
    """One finding per objective (its effect per algorithm, with the bootstrap intervals) and one on the bandit gaps."""
    what = (f"95% intervals from a bootstrap over the zoo's {n_configs} configurations with their seeds nested, so "
            f"they cover another draw of such a zoo, not only search seeds; grid/random exact on {exact_resamples} resamples, "
            f"the others replayed on {replay_resamples} resamples x {replay_seeds} seeds")  # fmt: skip
    out = []
    for obj, g in effects.groupby("objective", sort=False):
        parts = ", ".join(f"{r.algorithm} {ci_text(r.effect, r.low, r.high, 3)}" for r in g.itertuples())
        gn = parse_objective(obj).uses_gn
        verdicts = {verdict_of(r.low, r.high, ACC_MARGIN) for r in g.itertuples()}
        verdict = (verdicts.pop() if len(verdicts) == 1 else "mixed") if gn else "info"
        alone = len(parse_objective(obj).metrics) == 1 and gn
        who = f"GN alone (`{obj}`)" if alone else f"`{obj}`"
        out.append(Finding(f"Selecting by {who} instead of `{baseline}` changes the selected model's test accuracy "
                           f"by, per algorithm: {parts} ({what}; a benefit below {ACC_MARGIN} is none in "
                           "practice).", verdict))  # fmt: skip
    if len(gaps):
        parts = "; ".join(f"{r.algorithm} with `{r.objective}` {ci_text(r.gap, r.low, r.high, 3)}" for r in gaps.itertuples())
        out.append(Finding("Bandits against random search with GN objectives (effect of the objective under the bandit "
                           f"minus under random search, paired within each resample): {parts}.", "info"))  # fmt: skip
    return out
