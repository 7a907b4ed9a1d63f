"""Replay hyper-parameter search algorithms over a finished zoo, used as a tabular benchmark.

The zoo defines a discrete search space: every configuration field that varies across its finished
runs is a categorical hyper-parameter, except the seeds (``seed``, ``data_seed``), which make
replicates of one configuration; the architecture -- ``model`` together with ``model_kwargs`` -- is
one parameter, ``arch``, with values such as ``mlp(depth=2,width=32)``. The zoo must hold a single
dataset and a single number of training epochs ``E``.

A lookup ``(configuration, b)`` replaces training for ``b`` epochs: it returns the metrics recorded
at epoch ``b`` (:meth:`Lookup.row`) at the recorded cost (:meth:`Lookup.cost`): ``train_seconds`` +
``eval_seconds`` of epochs ``1..b``, plus their ``measure_seconds`` when the objective uses GN, since
GN must then be measured (set ``measure_every_epoch=False`` to count the evaluation and the GN
measurement of epoch ``b`` only). With several seeds per configuration, ``seed_mode="mean"`` (the
default) answers every query with the mean over the seeds of every metric and cost, and
``seed_mode="sample"`` answers each query with one seed drawn by the search's own generator (so the
search sees the seed noise); in both modes the reported test accuracy of the selected model is the
seed mean.

Every (algorithm, objective, seed) search spends a budget of epochs (default: a quarter of the
zoo's, ``configurations x E / 4``) -- see :mod:`gnsel.tune.replay_algorithms` for how each algorithm is
driven -- and selects one model: the evaluation with the least objective value, at the epoch where it
was seen (the first one on ties); for multi-objectives ``[a, b]`` the Pareto front of the evaluations
and its knee by :func:`~gnsel.tune.objectives.pick_from_front`. HyperBand and BOHB select among their
full-budget (``E`` epochs) evaluations if there are any, else among all; they are single-objective,
so for a multi-objective their worker returns the knee score (the pick rule's sum of min-max
normalised objectives, ranges from the current front at the same budget) as the loss, and the final
pick is made on the front as for the others.

Reported per search: the selected model's test accuracy and generalisation gap (``gap_acc``), the
regret -- the zoo's best seed-mean test accuracy after ``E`` epochs minus the selected model's (it can
be negative only when a bandit, which saw no full-budget evaluation, selects a partially trained model
better than every fully trained one) -- the cost (epochs, seconds, seconds of GN measurement) and the
anytime regret: the regret of the model selected so far after each evaluation against the epochs
spent. The summary gives, per (algorithm, objective), the mean over seeds with a 95% Student-t
interval.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .objectives import Objective, parse_objective
from .replay_algorithms import ALGORITHMS, BANDITS, HpbandsterHost, Search, run_algorithm

__all__ = [
    "ALGORITHMS", "Lookup", "ReplayResult", "parse_algorithms", "parse_objectives", "run_replay",
]

SEED_KEYS = ("seed", "data_seed")
_IGNORED_KEYS = ("device",)
SEED_MODES = ("mean", "sample")


# ----------------------------------------------------------------------------- names


def parse_algorithms(text: str | Sequence[str]) -> list[str]:
    """Algorithm names from ``"grid,tpe"`` or a list; a ValueError lists the choices."""
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    bad = [n for n in names if n not in ALGORITHMS]
    if bad or not names:
        raise ValueError(
            f"unknown search algorithm(s) {', '.join(map(repr, bad)) or '(none given)'}; "
            f"choices: {', '.join(ALGORITHMS)}"
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


# ----------------------------------------------------------------------------- lookup


def _fmt(value: Any) -> str:
    """A configuration value as a label: ``0.1``, ``32``, ``sgd``, JSON for lists and mappings."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None or isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, _fmt(value))


@dataclass
class Lookup:
    """A finished zoo as a table ``(configuration, epoch) -> metrics, cost``.

    ``params`` maps each hyper-parameter to its sorted value labels; ``configs[c]`` is configuration
    ``c`` as ``{param: label}`` and ``index`` maps the tuple of its labels (in ``params`` order) back to
    ``c``; ``metrics[name]`` has shape ``(configs, replicates, epochs + 1)``, NaN-padded where a
    configuration has fewer seeds (``n_replicates``).
    """

    params: dict[str, list[str]]
    configs: list[dict[str, str]]
    index: dict[tuple[str, ...], int]
    epochs: int
    metrics: dict[str, np.ndarray]
    n_replicates: np.ndarray
    run_ids: list[list[str]]
    seed_mode: str = "mean"
    measure_every_epoch: bool = True
    _cum: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _mean: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _tables: dict[Objective, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_store(
        cls, store_path: str | os.PathLike[str], seed_mode: str = "mean", measure_every_epoch: bool = True
    ) -> Lookup:
        """Read the finished runs of a store (``Store(path).runs_frame(status="done")``)."""
        from ..store import Store

        if seed_mode not in SEED_MODES:
            raise ValueError(f"unknown seed mode {seed_mode!r}; choices: {', '.join(SEED_MODES)}")
        path = Path(store_path)
        if not path.is_file():
            raise FileNotFoundError(f"no zoo store at {path}")
        store = Store(path)
        try:
            runs = store.runs_frame(status="done")
            if runs.empty:
                raise ValueError(f"{path}: the store has no finished runs")
            epochs_df = store.epochs_frame(runs["run_id"].tolist())
        finally:
            store.close()
        return cls.from_frames(runs, epochs_df, seed_mode, measure_every_epoch)

    @classmethod
    def from_frames(
        cls, runs: pd.DataFrame, epochs_df: pd.DataFrame, seed_mode: str = "mean", measure_every_epoch: bool = True
    ) -> Lookup:
        """Build from a runs frame (with ``config_json``) and its epochs frame."""
        configs = [json.loads(s) for s in runs["config_json"]]
        run_ids = runs["run_id"].tolist()
        for key, what in (("dataset", "datasets"), ("epochs", "numbers of epochs")):
            found = {json.dumps(c.get(key)) for c in configs}
            if len(found) > 1:
                raise ValueError(f"the zoo mixes {what} ({', '.join(sorted(found))}); replay needs one; "
                                 "build or filter a store per setting")
        epochs = int(configs[0].get("epochs") or int(epochs_df["epoch"].max()))
        # hyper-parameters: the fields that vary, the architecture as one
        labels: list[dict[str, str]] = []
        values: dict[str, dict[str, Any]] = {}
        for cfg in configs:
            row = {}
            for key, v in cfg.items():
                if key in SEED_KEYS or key in _IGNORED_KEYS or key in ("model", "model_kwargs"):
                    continue
                row[key] = (_fmt(v), v)
            kw = cfg.get("model_kwargs") or {}
            arch = str(cfg.get("model")) + ("(" + ",".join(f"{k}={_fmt(kw[k])}" for k in sorted(kw)) + ")" if kw else "")
            row["arch"] = (arch, arch)
            labels.append({k: lab for k, (lab, _) in row.items()})
            for k, (lab, v) in row.items():
                values.setdefault(k, {})[lab] = v
        for lab in labels:  # a field some configurations lack is a value of its own
            for k in values:
                if k not in lab:
                    lab[k] = "<unset>"
                    values[k]["<unset>"] = "<unset>"
        names = sorted(k for k, labs in values.items() if len(labs) > 1)
        if not names:
            names = ["arch"]  # a zoo of one configuration (and its seeds)
        params = {k: [lab for lab, _ in sorted(values[k].items(), key=lambda kv: _sort_key(kv[1]))] for k in names}
        # group runs (replicates) by configuration
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, lab in enumerate(labels):
            groups.setdefault(tuple(lab[k] for k in names), []).append(i)
        keys = sorted(groups, key=lambda t: tuple(params[k].index(v) for k, v in zip(names, t)))
        seed_of = lambda i: tuple(_sort_key(configs[i].get(k)) for k in SEED_KEYS)  # noqa: E731
        members = [sorted(groups[t], key=seed_of) for t in keys]
        n_rep = np.array([len(m) for m in members])
        # metrics as (config, replicate, epoch) arrays
        metric_cols = [c for c in epochs_df.columns if c not in ("run_id", "epoch")
                       and pd.api.types.is_numeric_dtype(epochs_df[c])]
        pos = {rid: i for i, rid in enumerate(run_ids)}
        slot = np.full((len(run_ids), 2), -1)
        for c, m in enumerate(members):
            for r, i in enumerate(m):
                slot[i] = (c, r)
        ep = epochs_df[epochs_df["run_id"].isin(pos) & (epochs_df["epoch"] >= 0) & (epochs_df["epoch"] <= epochs)]
        where = slot[ep["run_id"].map(pos).to_numpy()]
        e_idx = ep["epoch"].to_numpy(dtype=int)
        metrics = {}
        for col in metric_cols:
            arr = np.full((len(keys), int(n_rep.max()), epochs + 1), np.nan)
            arr[where[:, 0], where[:, 1], e_idx] = ep[col].to_numpy(dtype=float)
            metrics[col] = arr
        return cls(
            params=params,
            configs=[dict(zip(names, t)) for t in keys],
            index={t: c for c, t in enumerate(keys)},
            epochs=epochs,
            metrics=metrics,
            n_replicates=n_rep,
            run_ids=[[run_ids[i] for i in m] for m in members],
            seed_mode=seed_mode,
            measure_every_epoch=measure_every_epoch,
        )

    # -- queries ----------------------------------------------------------------------

    def label(self, c: int) -> str:
        """Configuration ``c`` as ``name=value`` pairs."""
        return " ".join(f"{k}={v}" for k, v in self.configs[c].items())

    def mean(self, name: str) -> np.ndarray:
        """Seed-mean of a metric, shape ``(configs, epochs + 1)``."""
        if name not in self._mean:
            if name not in self.metrics:
                raise KeyError(f"the zoo records no metric {name!r}; it has {', '.join(sorted(self.metrics))}")
            arr = self.metrics[name]
            with np.errstate(invalid="ignore"), _no_warnings():
                self._mean[name] = arr[:, 0, :].copy() if arr.shape[1] == 1 else np.nanmean(arr, axis=1)
        return self._mean[name]

    def row(self, c: int, epoch: int, replicate: int | None = None) -> dict[str, float]:
        """The metrics of configuration ``c`` at ``epoch`` (seed mean, or one replicate)."""
        if replicate is None:
            return {k: float(self.mean(k)[c, epoch]) for k in self.metrics}
        return {k: float(v[c, replicate, epoch]) for k, v in self.metrics.items()}

    def _cumsum(self, name: str) -> np.ndarray:
        if name not in self._cum:
            arr = np.nan_to_num(self.metrics.get(name, np.zeros_like(next(iter(self.metrics.values())))))
            arr = arr.copy()
            arr[:, :, 0] = 0.0  # epoch 0 is the untrained model: no training to pay for
            self._cum[name] = np.cumsum(arr, axis=2)
        return self._cum[name]

    def cost(self, c: int, epoch: int, uses_gn: bool, replicate: int | None = None) -> tuple[float, float]:
        """``(seconds, of which GN measurement)`` of training ``c`` for ``epoch`` epochs."""
        reps = range(int(self.n_replicates[c])) if replicate is None else [replicate]
        total = gn = 0.0
        for r in reps:
            train = self._cumsum("train_seconds")[c, r, epoch]
            if self.measure_every_epoch:
                ev = self._cumsum("eval_seconds")[c, r, epoch]
                me = self._cumsum("measure_seconds")[c, r, epoch] if uses_gn else 0.0
            else:
                ev = _nz(self.metrics.get("eval_seconds"), c, r, epoch)
                me = _nz(self.metrics.get("measure_seconds"), c, r, epoch) if uses_gn else 0.0
            total += train + ev + me
            gn += me
        return total / len(reps), gn / len(reps)

    def objective_table(self, objective: Objective) -> tuple[np.ndarray, np.ndarray]:
        """Objective values per (config, replicate, epoch, part) and per (config, epoch, part) of the means."""
        if objective not in self._tables:
            self._tables[objective] = self._objective_table(objective)
        return self._tables[objective]

    def _objective_table(self, objective: Objective) -> tuple[np.ndarray, np.ndarray]:
        k = len(objective.parts)
        C, R, E1 = next(iter(self.metrics.values())).shape
        names = list(self.metrics)
        per_rep = np.full((C, R, E1, k), np.nan)
        mean = np.full((C, E1, k), np.nan)
        try:
            for c in range(C):
                for e in range(E1):
                    mean[c, e] = _call(objective, {n: self.mean(n)[c, e] for n in names})
                    for r in range(int(self.n_replicates[c])) if R > 1 else ():
                        per_rep[c, r, e] = _call(objective, {n: self.metrics[n][c, r, e] for n in names})
        except KeyError as err:
            raise ValueError(f"objective {objective.text!r} needs metric {err} which the zoo does not record; "
                             f"it has {', '.join(sorted(self.metrics))}") from None
        if R == 1:
            per_rep[:, 0] = mean
        return per_rep, mean


def _nz(arr: np.ndarray | None, c: int, r: int, e: int) -> float:
    if arr is None or e == 0:
        return 0.0
    v = float(arr[c, r, e])
    return v if math.isfinite(v) else 0.0


def _call(objective: Objective, metrics: dict[str, float]) -> tuple[float, ...]:
    v = objective(metrics)
    return tuple(v) if isinstance(v, tuple) else (v,)


class _no_warnings:
    def __enter__(self) -> None:
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)


# ----------------------------------------------------------------------------- one search


def _one_search(
    lookup: Lookup, algorithm: str, objective: Objective, seed: int, budget: int,
    host: HpbandsterHost | None, min_budget: float, eta: float,
) -> tuple[dict[str, Any], pd.DataFrame]:
    search = Search(lookup, objective, budget, seed, bandit=algorithm in BANDITS)
    run_algorithm(algorithm, search, host, min_budget, eta)
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
        "note": "multi-objective scalarised by the knee score" if objective.multi and algorithm in BANDITS else "",
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
    need_host = any(a in BANDITS for a, _, _ in jobs)
    host = HpbandsterHost() if need_host else None
    if host is not None:
        host.__enter__()
    try:
        for algorithm, oi, seed in jobs:
            out.append(_one_search(lookup, algorithm, objectives[oi], seed, budget, host, min_budget, eta))
    finally:
        if host is not None:
            host.__exit__(None, None, None)
    return out


def _job_cost(algorithm: str) -> float:
    return {"grid": 0.1, "random": 1.0, "tpe": 4.0}.get(algorithm, 6.0)


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
    from scipy.stats import t

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
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

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
    algorithms: str | Sequence[str] = tuple(ALGORITHMS),
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

    ``seeds`` is a count (seeds ``0..n-1``) or the seeds themselves; ``budget`` is in epochs summed
    over a search's evaluations (default: a quarter of the zoo's configurations x epochs);
    ``min_budget``/``eta`` configure HyperBand/BOHB; ``workers`` > 1 runs searches in that many
    processes (results do not depend on it: every search is seeded on its own; at most one process per
    50 searches; the processes are spawned, so a calling script needs the usual
    ``if __name__ == "__main__":`` guard). Names are checked before anything runs.
    """
    import time

    t0 = time.perf_counter()
    algs = parse_algorithms(algorithms)
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
        for j in sorted(range(len(jobs)), key=lambda j: -_job_cost(jobs[j][0])):
            w = int(np.argmin(load))
            chunks[w].append(j)
            load[w] += _job_cost(jobs[j][0])
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
