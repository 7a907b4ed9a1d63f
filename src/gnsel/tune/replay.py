"""Replay hyper-parameter search algorithms over a finished zoo, used as a tabular benchmark.

The zoo is a :class:`~gnsel.tune.lookup.Lookup`: a discrete search space (every configuration field
that varies, the architecture as one parameter, the seeds as replicates) and a table
``(configuration, epochs) -> metrics, cost`` that replaces training. With several seeds per
configuration, ``seed_mode="mean"`` answers with seed means and ``seed_mode="sample"`` with one seed
drawn by the search's own generator; in both modes the reported test accuracy of the selected model
is the seed mean.

Every (algorithm, objective, seed) search spends a budget of epochs (default: a quarter of the
zoo's, ``configurations x E / 4``) -- see :mod:`gnsel.tune.algorithms` for how each algorithm is
driven and :mod:`gnsel.tune.replay_search` for the budget -- and selects one model: the evaluation
with the least objective value, at the epoch where it was seen (the first one on ties); for
multi-objectives ``[a, b]`` the Pareto front of the evaluations and its knee by
:func:`~gnsel.tune.objectives.pick_from_front`. HyperBand and BOHB select among their full-budget
(``E`` epochs) evaluations if there are any, else among all; they are single-objective, so for a
multi-objective their worker returns the knee score (the pick rule's sum of min-max normalised
objectives, ranges from the current front at the same budget) as the loss, and the final pick is made
on the front as for the others.

Reported per search: the selected model's test accuracy and generalisation gap (``gap_acc``), the
regret -- the zoo's best seed-mean test accuracy after ``E`` epochs minus the selected model's (it can
be negative only when a bandit, which saw no full-budget evaluation, selects a partially trained model
better than every fully trained one) -- the cost (epochs, seconds, seconds of GN measurement) and the
anytime regret: the regret of the model selected so far after each evaluation against the epochs
spent. The summary gives, per (algorithm, objective), the mean over seeds with a 95% Student-t
interval.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .algorithms import ReplayContext, get_algorithm, replay_algorithm, replay_names
from .lookup import SEED_KEYS, SEED_MODES, Lookup
from .objectives import Objective, parse_objective
from .replay_search import Search

__all__ = [
    "Lookup", "ReplayResult", "SEED_KEYS", "SEED_MODES", "parse_algorithms", "parse_objectives",
    "run_algorithm", "run_replay", "split_objectives", "t_interval",
]  # fmt: skip

# ----------------------------------------------------------------------------- names


def parse_algorithms(text: str | Sequence[str]) -> list[str]:
    """Algorithm names from ``"grid,tpe"`` or a list; a ValueError lists the choices."""
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    choices = replay_names()
    bad = [n for n in names if n not in choices]
    if bad or not names:
        raise ValueError(
            f"unknown search algorithm(s) {', '.join(map(repr, bad)) or '(none given)'}; "
            f"choices: {', '.join(choices)}"
        )
    return list(dict.fromkeys(names))


def split_objectives(text: str) -> list[str]:
    """``"a;b"``, or ``"a,b,[c,d]"`` (commas outside brackets) as a list of objective texts."""
    if ";" in text:
        return [p.strip() for p in text.split(";") if p.strip()]
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def parse_objectives(text: str | Sequence[str | Objective]) -> list[Objective]:
    """Objectives from text (see :func:`split_objectives`) or a list of texts/objectives."""
    items = split_objectives(text) if isinstance(text, str) else list(text)
    if not items:
        raise ValueError("give at least one objective, e.g. 'val_loss,gn_fc,[val_loss, gn_fc]'")
    out = [o if isinstance(o, Objective) else parse_objective(o) for o in items]
    return list({o.text: o for o in out}.values())


# ----------------------------------------------------------------------------- one search


def run_algorithm(
    algorithm: str, search: Search, host: Any = None, min_budget: float = 1.0, eta: float = 3.0
) -> Search:
    """Drive ``algorithm`` over ``search`` (``host``: a running hpbandster host to reuse); returns it."""
    alg = replay_algorithm(algorithm)
    with ReplayContext(min_budget, eta) as context:
        if host is not None:
            context.share("hpbandster", host)
        alg.replay(search, context)
    return search


def _one_search(
    lookup: Lookup, algorithm: str, objective: Objective, seed: int, budget: int, context: ReplayContext,
) -> tuple[dict[str, Any], pd.DataFrame]:
    alg = replay_algorithm(algorithm)
    search = Search(lookup, objective, budget, seed, bandit=alg.bandit)
    alg.replay(search, context)
    test = lookup.mean("test_acc")
    gap = lookup.mean("gap_acc") if "gap_acc" in lookup.metrics else np.full_like(test, np.nan)
    best = float(np.nanmax(test[:, lookup.epochs]))
    sel = search.selected
    ok = [r for r in search.records if r.config is not None]
    row: dict[str, Any] = {
        "algorithm": algorithm, "objective": objective.text, "seed": seed,
        "evaluations": len(ok), "failed": sum(r.values is None for r in search.records),
        "epochs": search.spent_epochs, "seconds": search.spent_seconds, "gn_seconds": search.spent_gn_seconds,
        "selected": None, "selected_epoch": np.nan, "selected_value": None,
        "test_acc": np.nan, "gap_acc": np.nan, "regret": np.nan, "best_test_acc": best,
        "front_size": search.front_size() if objective.multi else np.nan,
        "note": "multi-objective scalarised by the knee score" if objective.multi and not alg.multi_objective else "",
    }
    if sel is not None and sel.config is not None:
        row.update(
            selected=lookup.label(sel.config), selected_epoch=sel.epoch,
            selected_value=", ".join(f"{v:.6g}" for v in sel.values or ()),
            test_acc=float(test[sel.config, sel.epoch]), gap_acc=float(gap[sel.config, sel.epoch]),
            regret=best - float(test[sel.config, sel.epoch]),
        )
    else:
        row["note"] = (row["note"] + "; " if row["note"] else "") + "nothing selected (no successful evaluation in the budget)"
    curve = pd.DataFrame({
        "algorithm": algorithm, "objective": objective.text, "seed": seed,
        "evaluation": np.arange(1, len(search.records) + 1),
        "epochs": [r.total_epochs for r in search.records],
        "seconds": [r.total_seconds for r in search.records],
        "regret": [np.nan if j is None or search.records[j].config is None
                   else best - float(test[search.records[j].config, search.records[j].epoch]) for j in search.curve],
    })
    return row, curve


def _run_jobs(
    lookup: Lookup, objectives: list[Objective], jobs: list[tuple[str, int, int]], budget: int,
    min_budget: float, eta: float,
) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    out = []
    with ReplayContext(min_budget, eta) as context:  # one hpbandster host (if any) for all the searches
        for algorithm, oi, seed in jobs:
            out.append(_one_search(lookup, algorithm, objectives[oi], seed, budget, context))
    return out


# ----------------------------------------------------------------------------- result


def t_interval(x: Any) -> tuple[float, float, float]:
    """Mean of the finite values with a 95% t interval (bounds NaN for fewer than two values)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan, math.nan
    m = float(x.mean())
    if x.size < 2:
        return m, math.nan, math.nan
    from scipy.stats import t  # heavy: scipy.stats is slow to import

    h = float(t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return m, m - h, m + h


@dataclass
class ReplayResult:
    """Per-seed rows, anytime curves and their summary per (algorithm, objective)."""

    runs: pd.DataFrame  # one row per (algorithm, objective, seed)
    curves: pd.DataFrame  # one row per evaluation of every search
    budget: int
    zoo_epochs: int
    n_configs: int
    best_test_acc: float
    space: dict[str, list[str]]
    seconds: float = 0.0

    @property
    def summary(self) -> pd.DataFrame:
        """Per (algorithm, objective): mean test accuracy with a 95% t interval over seeds, regret, cost."""
        rows = []
        for (alg, obj), g in self.runs.groupby(["algorithm", "objective"], sort=False):
            m, lo, hi = t_interval(g["test_acc"].to_numpy(float))
            r, rlo, rhi = t_interval(g["regret"].to_numpy(float))
            sec, gn = g["seconds"].mean(), g["gn_seconds"].mean()
            rows.append({
                "algorithm": alg, "objective": obj, "seeds": len(g),
                "test_acc": m, "test_acc_low": lo, "test_acc_high": hi,
                "regret": r, "regret_low": rlo, "regret_high": rhi,
                "gap_acc": g["gap_acc"].mean(), "evaluations": g["evaluations"].mean(),
                "epochs": g["epochs"].mean(), "seconds": sec, "gn_seconds": gn,
                "gn_share": gn / sec if sec > 0 else math.nan,
                "selected_nothing": int(g["test_acc"].isna().sum()),
                "note": next((n for n in g["note"] if n), ""),
            })
        return pd.DataFrame(rows)

    def anytime(self, points: int = 101) -> pd.DataFrame:
        """Mean (95% t interval) over seeds of the regret of the model selected so far, on an epoch grid."""
        grid = np.unique(np.round(np.linspace(0, self.budget, points)).astype(int))
        rows = []
        for (alg, obj), g in self.curves.groupby(["algorithm", "objective"], sort=False):
            per_seed = []
            for _, s in g.groupby("seed", sort=False):
                ep, reg = s["epochs"].to_numpy(), s["regret"].to_numpy(float)
                k = np.searchsorted(ep, grid, side="right") - 1
                per_seed.append(np.where(k >= 0, reg[np.clip(k, 0, None)], np.nan))
            mat = np.array(per_seed)
            for j, e in enumerate(grid):
                m, lo, hi = t_interval(mat[:, j])
                rows.append({"algorithm": alg, "objective": obj, "epochs": int(e), "regret": m,
                             "regret_low": lo, "regret_high": hi, "seeds": int(np.isfinite(mat[:, j]).sum())})
        return pd.DataFrame(rows)

    def markdown(self) -> str:
        """The summary as a markdown table."""
        s = self.summary
        lines = [
            f"Replay over a zoo of {self.n_configs} configurations x {self.zoo_epochs} epochs; budget "
            f"{self.budget} epochs per search; best test accuracy after {self.zoo_epochs} epochs: "
            f"{self.best_test_acc:.4f}.",
            "",
            "| algorithm | objective | seeds | test acc (95% CI) | regret | gap | evaluations | epochs | seconds | GN share |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for _, r in s.iterrows():
            ci = f"{r.test_acc:.4f} [{r.test_acc_low:.4f}, {r.test_acc_high:.4f}]"
            obj = r.objective.replace("|", "\\|")
            lines.append(f"| {r.algorithm} | `{obj}` | {r.seeds} | {ci} | {r.regret:.4f} | {r.gap_acc:.4f} | "
                         f"{r.evaluations:.1f} | {r.epochs:.0f} | {r.seconds:.2f} | {r.gn_share:.1%} |")
        notes = sorted({n for n in s["note"] if n})
        if notes:
            lines += [""] + [f"- {n}" for n in notes]
        return "\n".join(lines) + "\n"

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Anytime regret curves: one panel per algorithm, one line per objective, mean and 95% band."""
        import matplotlib  # heavy: matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt  # heavy: matplotlib

        at = self.anytime()
        algs = list(dict.fromkeys(at["algorithm"]))
        ncol = min(3, max(1, len(algs)))
        nrow = math.ceil(len(algs) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(5 * ncol, 3.6 * nrow), squeeze=False, sharey=True)
        for ax, alg in zip(axes.flat, algs):
            for obj, g in at[at["algorithm"] == alg].groupby("objective", sort=False):
                line, = ax.step(g["epochs"], g["regret"], where="post", label=obj)
                ax.fill_between(g["epochs"], g["regret_low"], g["regret_high"], step="post",
                                alpha=0.2, color=line.get_color())
            ax.set_title(alg)
            ax.set_xlabel("epochs spent")
            ax.grid(alpha=0.3)
        for ax in axes[:, 0]:
            ax.set_ylabel("regret (test accuracy)")
        for ax in list(axes.flat)[len(algs):]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=7)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path

    def write(self, out_dir: str | os.PathLike[str]) -> list[Path]:
        """``replay_summary.csv``, ``replay_runs.csv``, ``replay_curves.csv``, ``replay_anytime.csv``,
        ``replay_anytime.png`` and ``replay_summary.md`` in ``out_dir``; returns the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, df in (("replay_summary", self.summary), ("replay_runs", self.runs),
                         ("replay_curves", self.curves), ("replay_anytime", self.anytime())):
            p = out / f"{name}.csv"
            df.to_csv(p, index=False)
            paths.append(p)
        paths.append(self.plot(out / "replay_anytime.png"))
        md = out / "replay_summary.md"
        md.write_text(self.markdown())
        paths.append(md)
        return paths


# ----------------------------------------------------------------------------- entry point


def run_replay(
    store_path: str | os.PathLike[str] | Lookup,
    algorithms: str | Sequence[str] | None = None,
    objectives: str | Sequence[str | Objective] = ("val_loss",),
    seeds: int | Iterable[int] = 50,
    budget: int | None = None,
    *,
    seed_mode: str = "mean",
    measure_every_epoch: bool = True,
    min_budget: float = 1.0,
    eta: float = 3.0,
    workers: int = 1,
) -> ReplayResult:
    """Replay every (algorithm, objective, seed) search over the zoo in ``store_path``.

    ``algorithms``: names (default: every replayable algorithm) as a list or ``"grid,tpe"``.
    ``seeds`` is a count (seeds ``0..n-1``) or the seeds themselves; ``budget`` is in epochs summed
    over a search's evaluations (default: a quarter of the zoo's configurations x epochs);
    ``min_budget``/``eta`` configure HyperBand/BOHB; ``workers`` > 1 runs searches in that many
    processes (results do not depend on it: every search is seeded on its own; at most one process per
    50 searches; the processes are spawned, so a calling script needs the usual
    ``if __name__ == "__main__":`` guard). Names are checked before anything runs.
    """
    t0 = time.perf_counter()
    algs = parse_algorithms(replay_names() if algorithms is None else algorithms)
    objs = parse_objectives(objectives)
    seed_list = list(range(int(seeds))) if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("give at least one seed")
    if seed_mode not in SEED_MODES:
        raise ValueError(f"unknown seed mode {seed_mode!r}; choices: {', '.join(SEED_MODES)}")
    if eta < 2:
        raise ValueError(f"eta must be at least 2, got {eta}")
    lookup = store_path if isinstance(store_path, Lookup) else Lookup.from_store(store_path, seed_mode, measure_every_epoch)
    for o in objs:
        lookup.objective_table(o)  # a metric the zoo lacks fails here, before any search
    for m in ("test_acc", "train_seconds"):
        if m not in lookup.metrics:
            raise ValueError(f"the zoo records no {m!r}; replay needs it")
    E, C = lookup.epochs, len(lookup.configs)
    budget = int(budget) if budget is not None else max(E, C * E // 4)
    if budget < 1:
        raise ValueError(f"budget must be a positive number of epochs, got {budget}")
    jobs = [(a, oi, s) for a in algs for oi in range(len(objs)) for s in seed_list]
    workers = max(1, min(int(workers), len(jobs) // 50))  # a process pays for its start with >= 50 searches
    if workers == 1:
        results = _run_jobs(lookup, objs, jobs, budget, min_budget, eta)
    else:
        # balance by expected cost: deal the jobs, most expensive first, to the least loaded chunk
        chunks: list[list[int]] = [[] for _ in range(workers)]
        load = [0.0] * workers
        cost = {a: get_algorithm(a).replay_cost for a in algs}
        for j in sorted(range(len(jobs)), key=lambda j: -cost[jobs[j][0]]):
            w = int(np.argmin(load))
            chunks[w].append(j)
            load[w] += cost[jobs[j][0]]
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers) as pool:
            parts = pool.starmap(_run_jobs, [(lookup, objs, [jobs[j] for j in ch], budget, min_budget, eta)
                                             for ch in chunks])
        by_job = {j: r for ch, part in zip(chunks, parts) for j, r in zip(ch, part)}
        results = [by_job[j] for j in range(len(jobs))]
    runs = pd.DataFrame([r for r, _ in results])
    curves = pd.concat([c for _, c in results], ignore_index=True)
    return ReplayResult(
        runs=runs, curves=curves, budget=budget, zoo_epochs=E, n_configs=C,
        best_test_acc=float(np.nanmax(lookup.mean("test_acc")[:, E])), space=dict(lookup.params),
        seconds=time.perf_counter() - t0,
    )
