"""``gnsel correlate``: how well each generalization measure ranks a zoo's models.

For every finished run of a store, the registered measures are computed at its stopping point, the last
epoch it trained (the training criterion met, or the maximum; ``values`` says which: ``converged``) (and
cached in the store's ``measures`` table, so a second call is fast); measures that the zoo records at
every epoch (GN full and fc, the mean-gradient norm, the gradient variance, trajectory GN and the
losses: those the measure registry declares ``recorded_as``, :func:`gnsel.measures.per_epoch_measures`)
are read from the stored epoch rows and also scored at every epoch, to show how their predictive power
changes over training.
Each measure is scored against the target with every evaluator of :mod:`gnsel.analysis`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from ..analysis import (
    conditional_mutual_information,
    granulated_kendall,
    kendall,
    sign_error,
    spearman,
)
from ..measures import get_measure, list_measures, per_epoch_measures
from ..progress import SILENT, Progress
from ..store import CheckpointError, Store
from ..training import TrainConfig, build
from .measure import measure_run

__all__ = [
    "TARGETS", "CorrelateReport", "correlate", "hparam_columns", "markdown", "score_measure",
    "target_values", "write_report",
]  # fmt: skip

TARGETS = ("gap_acc", "gap_loss", "test_error")

_NOT_HPARAMS = ("cfg.seed", "cfg.device", "cfg.data_seed", "cfg.stop_loss")  # seeds, place and protocol


@dataclass
class CorrelateReport:
    """What ``correlate`` produced: the score table, granulated Kendall per hyper-parameter,
    scores over epochs, per-run measure values, why some measures failed, the runs whose checkpoints could not
    be read (run id -> one line; their checkpoint-based measures are NaN), and the files written."""

    scores: pd.DataFrame
    granulated: pd.DataFrame
    per_epoch: pd.DataFrame
    values: pd.DataFrame
    failures: dict[str, str]
    hparams: list[str]
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    unreadable: dict[str, str] = field(default_factory=dict)


def hparam_columns(runs: pd.DataFrame) -> list[str]:
    """Flattened config columns that vary across runs (architecture included, seeds excluded)."""
    cols = []
    for c in runs.columns:
        if not c.startswith("cfg.") or c in _NOT_HPARAMS:
            continue
        values = runs[c].map(lambda v: repr(v) if isinstance(v, (list, dict)) else v)
        if values.nunique(dropna=False) > 1:
            cols.append(c)
    return cols


def target_values(frame: pd.DataFrame, target: str) -> pd.Series:
    """The generalization target of each row: accuracy gap, loss gap or test error."""
    if target == "test_error":
        return 1.0 - frame["test_acc"]
    if target in ("gap_acc", "gap_loss"):
        return frame[target]
    raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")


def score_measure(df: pd.DataFrame, measure: str, target: str, hparams: list[str], n_test: int) -> dict[str, float]:
    """Every evaluator for one measure on a frame with one row per run."""
    sub = df[[measure, target, *hparams]].dropna(subset=[measure, target])
    out: dict[str, float] = {"n": float(len(sub))}
    if len(sub) < 3 or sub[measure].nunique() < 2:
        return out | {k: math.nan for k in ("kendall", "spearman", "granulated", "cmi", "sign_error", "sign_error_max")}
    out["kendall"] = kendall(sub[measure], sub[target]).value
    out["spearman"] = spearman(sub[measure], sub[target]).value
    g = granulated_kendall(sub, measure, target, hparams)
    out["granulated"] = g.value
    for h, v in g.psi.items():
        out[f"psi[{h}]"] = v
    try:
        out["cmi"] = conditional_mutual_information(sub, measure, target, hparams).value
    except ValueError:
        out["cmi"] = math.nan
    try:
        se = sign_error(sub, measure, target, hparams, n_test=n_test)
        out["sign_error"], out["sign_error_max"] = se.mean, se.max
    except ValueError:
        out["sign_error"] = out["sign_error_max"] = math.nan
    return out


def _test_size(store: Store, runs: pd.DataFrame) -> int:
    cfg = TrainConfig.from_dict(store.get_config(runs["run_id"].iloc[0]))
    return len(build(cfg)[1].test)


def correlate(
    store_path: str | Path,
    *,
    measures: Iterable[str] | None = None,
    target: str = "gap_acc",
    out_dir: str | Path | None = None,
    device: str = "cpu",
    per_epoch: bool = True,
    progress: Progress = SILENT,
) -> CorrelateReport:
    """Score every measure against ``target`` over the finished runs of a store; write CSV and PNG files.

    ``progress`` gets one bar, ``measures``, over the runs as their measures are computed (or read from the
    store's cache). A run whose checkpoint is missing or unreadable (random bytes, empty, wrong keys) gets NaN
    for the measures computed from checkpoints, and a line in ``report.unreadable``; the others are scored.
    """
    t0 = time.perf_counter()
    store = Store(store_path)
    runs = store.runs_frame(status="done")
    if runs.empty:
        raise ValueError(f"no finished runs in {store_path}: build a zoo first (gnsel zoo build)")
    names = list(list_measures() if measures is None else measures)
    for name in names:
        get_measure(name)  # an unknown name fails here, listing the choices
    recorded = per_epoch_measures()
    target_values(pd.DataFrame({"gap_acc": [0.0], "gap_loss": [0.0], "test_acc": [0.0]}), target)
    epochs = store.epochs_frame(list(runs["run_id"]))
    last = epochs.loc[epochs.groupby("run_id")["epoch"].idxmax()].set_index("run_id")
    hparams = hparam_columns(runs)
    table = runs.set_index("run_id")[hparams].copy()
    for t in TARGETS:  # the scored target, and the others beside it for a second look
        table[t] = target_values(last, t)
    table["converged"] = runs.set_index("run_id")["converged"]
    table["stop_epoch"] = last["epoch"]
    failures: dict[str, str] = {}
    for n in names:
        if n in recorded:
            table[n] = recorded[n](last)
    todo = [n for n in names if n not in recorded]
    unreadable: dict[str, str] = {}
    for n in todo:
        table[n] = math.nan
    with progress.task("measures", total=len(table)) as bar:
        for rid in table.index:
            if todo:
                try:
                    results = measure_run(store, rid, todo, device=device)
                except (CheckpointError, FileNotFoundError) as err:  # this run's measures stay NaN
                    unreadable[rid] = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                    results = {}
                for n, res in results.items():
                    table.loc[rid, n] = res.value
                    if res.error and n not in failures:
                        failures[n] = res.error.strip().splitlines()[-1]
            bar.advance(1)
    n_test = _test_size(store, runs)
    rows = []
    for n in names:
        s = score_measure(table.reset_index(), n, target, hparams, n_test)
        rows.append({"measure": n, "family": get_measure(n).family, **s, "error": failures.get(n, "")})
    scores = pd.DataFrame(rows).set_index("measure")
    psi_cols = [c for c in scores.columns if c.startswith("psi[")]
    granulated = scores[psi_cols].rename(columns=lambda c: c[4:-1].removeprefix("cfg."))
    granulated["overall"] = scores["granulated"]
    over_epochs = _per_epoch_scores(epochs, runs, hparams, target, n_test, recorded) if per_epoch else pd.DataFrame()
    report = CorrelateReport(scores, granulated, over_epochs, table, failures, hparams, seconds=time.perf_counter() - t0,
                             unreadable=unreadable)
    if out_dir is not None:
        report.files = write_report(report, Path(out_dir), target)
    return report


def _per_epoch_scores(
    epochs: pd.DataFrame, runs: pd.DataFrame, hparams: list[str], target: str, n_test: int,
    recorded: dict[str, Callable[[pd.DataFrame], pd.Series]],
) -> pd.DataFrame:  # fmt: skip
    """Kendall, granulated Kendall and CMI of the per-epoch (``recorded``) measures at every epoch."""
    cfg = runs.set_index("run_id")[hparams]
    out = []
    for epoch, frame in epochs.groupby("epoch"):
        if epoch == 0:
            continue  # at initialisation nothing has been learned: no gap to rank
        f = frame.set_index("run_id")
        df = cfg.join(pd.DataFrame({target: target_values(f, target)}), how="inner")
        for m, fn in recorded.items():
            df[m] = fn(f)
        for m in recorded:
            s = score_measure(df.reset_index(), m, target, hparams, n_test)
            out.append({"epoch": int(epoch), "measure": m, **{k: s.get(k, math.nan) for k in ("kendall", "granulated", "cmi")}})
    return pd.DataFrame(out)


def write_report(report: CorrelateReport, out: Path, target: str) -> list[Path]:
    """CSV tables and PNG plots of a correlation report."""
    from ..analysis.plots import scatter_measure_vs_gap, score_over_epochs  # heavy: matplotlib

    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, frame in (("correlation", report.scores), ("granulated", report.granulated),
                        ("per_epoch", report.per_epoch), ("measure_values", report.values)):  # fmt: skip
        path = out / f"{name}.csv"
        frame.to_csv(path)
        files.append(path)
    values = report.values.reset_index()
    hue = "cfg.model" if "cfg.model" in values.columns else None
    for m in [m for m in ("gn_full", "gn_fc", "traj_gn", "val_loss") if m in values.columns]:
        path = out / f"scatter_{m}.png"
        scatter_measure_vs_gap(values, m, target, path, hue=hue)
        files.append(path)
    path = out / "correlation.md"
    path.write_text(markdown(report, target))
    files.append(path)
    if not report.per_epoch.empty:
        for ev in ("kendall", "granulated", "cmi"):
            frame = report.per_epoch.pivot(index="epoch", columns="measure", values=ev)
            path = out / f"epochs_{ev}.png"
            score_over_epochs(frame, path, f"{ev} of each measure against {target}, by epoch")
            files.append(path)
    return files


def markdown(report: CorrelateReport, target: str) -> str:
    """The score table and granulated Kendall per hyper-parameter as Markdown, measured values only."""
    cols = ["kendall", "spearman", "granulated", "cmi", "sign_error", "sign_error_max"]
    n_models = int(report.scores["n"].max())

    def fmt(v: float) -> str:
        return "-" if v != v else f"{v:+.3f}"

    lines = [f"How each measure ranks {n_models} models by `{target}` at their stopping point (the last epoch) "
             "(Kendall/Spearman: rank correlation; granulated: Jiang et al. 2020 Psi; CMI: conditional "
             "mutual information as a fraction, PGDL; sign err: mean and worst robust sign error, "
             "Dziugaite et al. 2020).", "",
             "| measure | family | models | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 3)]  # fmt: skip
    for name, row in report.scores.sort_values("kendall", ascending=False, na_position="last").iterrows():
        lines.append(f"| {name} | {row['family']} | {int(row['n'])} | " + " | ".join(fmt(row[c]) for c in cols) + " |")
    failed = report.scores[report.scores["error"] != ""]
    if len(failed):
        lines += ["", "Measures that could not be computed for every model, and why:", ""]
        lines += [f"- {name}: {row['error']}" for name, row in failed.iterrows()]
    g = report.granulated
    lines += ["", "Granulated Kendall per hyper-parameter:", "",
              "| measure | " + " | ".join(c for c in g.columns) + " |", "|" + "---|" * (len(g.columns) + 1)]
    for name, row in g.iterrows():
        lines.append(f"| {name} | " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines) + "\n"
