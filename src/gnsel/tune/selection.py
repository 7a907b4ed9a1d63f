"""What a search selected, from its trials: records, the selection rule and the selection report.

:func:`select` turns a search's trials into a :class:`Selection`: the selected trial, its test accuracy
and gap, its regret against the best test accuracy of the search, and the compute used.

A search selects among trials at one budget: the largest epoch that any usable trial (not failed, a
finite objective at its last reported epoch) reached -- the full budget its scheduler granted. Each
trial is compared at that epoch; a trial that a scheduler (ASHA, HyperBand, BOHB) stopped earlier, or
that a time budget cut short, is no candidate, so a model trained for 1 epoch never competes with
models trained for 8. PBT trains every trial to the end, so all its finished trials are candidates,
each as it ended (with the weights it last took from a donor). Among the candidates: the least
objective (the first trial on ties); for a multi-objective, the Pareto front and ``pick_from_front``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .objectives import Objective, parse_objective, pareto_front, pick_from_front
from .space import SearchSpace

__all__ = ["COST_KEYS", "Selection", "SelectionReport", "TrialRecord", "error_text", "load_records", "select"]

COST_KEYS = ("train_seconds", "eval_seconds", "measure_seconds")


# ------------------------------------------------------------------------------------ records
@dataclass
class TrialRecord:
    """One trial of a search: its status, active hyper-parameters and every reported row (in order)."""

    trial_id: str
    status: str
    config: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""

    @property
    def run_ids(self) -> list[str]:
        return list(dict.fromkeys(r["run_id"] for r in self.rows if r.get("run_id")))

    @property
    def last(self) -> dict[str, Any] | None:
        return self.rows[-1] if self.rows else None


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


@dataclass
class Selection:
    """What one search selected and what it cost (one row of the selection report)."""

    search: str  # experiment name
    algorithm: str
    objective: str
    trials: int
    failed: int  # trials that errored (divergence or other errors)
    selected_trial: str | None
    selected_run: str | None  # its gnsel store run id (the configuration of its last reported epoch)
    selected_config: dict[str, Any]  # the searched hyper-parameters that apply to it
    selected_epoch: int | None  # its last reported epoch: the budget epoch
    budget_epoch: int | None  # the epoch the candidates are compared at: the largest any usable trial reached
    at_budget: int  # the candidates: usable trials whose last reported epoch is the budget epoch
    objective_value: float | list[float] | None
    test_acc: float  # of the selected trial at that epoch
    gap_acc: float  # train_acc - test_acc there
    best_test_acc: float  # best test accuracy of the candidates (at the budget epoch)
    regret: float  # best_test_acc - test_acc
    epochs: int  # epochs trained by all trials together (every reported row)
    seconds: float  # their compute: training + evaluation + GN measurement
    gn_seconds: float  # of which GN measurement on the probe sets
    wall_seconds: float = math.nan  # wall time of the search (all its sessions)
    front: list[str] = field(default_factory=list)  # Pareto front (trial ids) of a multi-objective

    def flat(self) -> dict[str, Any]:
        """A CSV row: lists and dicts as JSON text."""
        out = asdict(self)
        for k in ("selected_config", "front", "objective_value"):
            out[k] = json.dumps(out[k], sort_keys=True)
        return out


def _usable(records: Sequence[TrialRecord], obj: Objective) -> list[tuple[TrialRecord, tuple[float, ...]]]:
    """Trials that may be selected, with their objective values: not failed, finite at the last reported epoch."""
    out = []
    for r in records:
        if r.status == "ERROR" or r.last is None:
            continue
        try:
            v = obj(r.last)
        except KeyError:
            continue
        vt = v if isinstance(v, tuple) else (v,)
        if all(_finite(x) for x in vt):
            out.append((r, vt))
    return out


def _epoch(r: TrialRecord) -> int:
    assert r.last is not None
    return int(r.last["epoch"])


def _at_budget(
    usable: Sequence[tuple[TrialRecord, tuple[float, ...]]],
) -> tuple[int | None, list[tuple[TrialRecord, tuple[float, ...]]]]:
    """The budget epoch (the largest last reported epoch of the usable trials) and the trials that reached it."""
    if not usable:
        return None, []
    budget = max(_epoch(r) for r, _ in usable)
    return budget, [(r, v) for r, v in usable if _epoch(r) == budget]


def _choose(candidates: Sequence[tuple[TrialRecord, tuple[float, ...]]], obj: Objective) -> tuple[int | None, list[str]]:
    """Index of the selected candidate (least objective, first on ties; the knee of the front if multi) and the front."""
    if not candidates:
        return None, []
    values = [v for _, v in candidates]
    if obj.multi:
        return pick_from_front(values), [candidates[i][0].trial_id for i in pareto_front(values)]
    return min(range(len(values)), key=lambda i: values[i][0]), []


def select(records: Sequence[TrialRecord], objective: Objective | str, *, algorithm: str = "",
           search: str = "", wall_seconds: float = math.nan) -> Selection:  # fmt: skip
    """The trial a search selects among its trials at the budget epoch (see the module docstring).

    Failed trials and trials without a finite objective are never selected; ``best_test_acc`` (hence
    ``regret``) is over the same candidates, at the same epoch; the compute counts every reported
    epoch of every trial, candidates or not.
    """
    obj = parse_objective(objective) if isinstance(objective, str) else objective
    budget, candidates = _at_budget(_usable(records, obj))
    i, front = _choose(candidates, obj)
    chosen = candidates[i][0] if i is not None else None
    value: Any = None
    if i is not None:
        v = candidates[i][1]
        value = [float(x) for x in v] if obj.multi else float(v[0])
    best = max((float((r.last or {})["test_acc"]) for r, _ in candidates), default=math.nan)
    all_rows = [row for r in records for row in r.rows]
    last = (chosen.last or {}) if chosen is not None else {}
    test = float(last.get("test_acc", math.nan))
    return Selection(
        search=search, algorithm=algorithm, objective=obj.text,
        trials=len(records), failed=sum(r.status == "ERROR" for r in records),
        selected_trial=chosen.trial_id if chosen else None,
        selected_run=last.get("run_id") if chosen else None,
        selected_config=dict(chosen.config) if chosen else {},
        selected_epoch=int(last["epoch"]) if chosen else None,
        budget_epoch=budget, at_budget=len(candidates),
        objective_value=value,
        test_acc=test, gap_acc=float(last.get("gap_acc", math.nan)),
        best_test_acc=best, regret=best - test if chosen else math.nan,
        epochs=len(all_rows),
        seconds=sum(float(row.get(k) or 0.0) for row in all_rows for k in COST_KEYS),
        gn_seconds=sum(float(row.get("measure_seconds") or 0.0) for row in all_rows),
        wall_seconds=wall_seconds, front=front,
    )  # fmt: skip


class SelectionReport:
    """Selections of several searches: table cells (headers and rows of text) and a CSV (rows keyed by search)."""

    COLUMNS = (
        ("search", "search"), ("objective", "objective"), ("selected_config", "selected"),
        ("budget_epoch", "budget"), ("at_budget", "at budget"), ("test_acc", "test acc"), ("gap_acc", "gap"),
        ("regret", "regret"), ("trials", "trials"), ("failed", "failed"), ("epochs", "epochs"),
        ("seconds", "compute s"), ("gn_seconds", "GN s"), ("wall_seconds", "wall s"),
    )  # fmt: skip

    def __init__(self, selections: Sequence[Selection] = ()):
        self.selections = list(selections)

    def add(self, selection: Selection) -> None:
        self.selections.append(selection)

    LEFT = ("search", "objective", "selected")  # headers of the left-aligned columns (the others are numbers)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([s.flat() for s in self.selections], columns=list(Selection.__dataclass_fields__))

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write (merging with an existing file: a search's row is replaced by its new one)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        df = self.frame()
        if path.exists() and path.stat().st_size:
            old = pd.read_csv(path)
            if "search" in old.columns:
                old = old[~old["search"].isin(df["search"])]
                df = pd.concat([old, df], ignore_index=True) if len(old) else df
        df.to_csv(path, index=False)
        return path

    def cells(self) -> tuple[list[str], list[list[str]]]:
        """The headers and, per selection, the row of cell texts (as the selection table shows them)."""
        rows = []
        for s in self.selections:
            cells = []
            for key, _ in self.COLUMNS:
                v = getattr(s, key)
                if key == "selected_config":
                    v = " ".join(f"{k.removeprefix('model_kwargs.')}={_short(x)}" for k, x in v.items()) or "-"
                    if s.front:
                        v += f" ({len(s.front)} on front)"
                elif v is None:
                    v = "-"
                elif isinstance(v, float):
                    v = f"{v:.3f}" if key in ("test_acc", "gap_acc", "regret") else f"{v:.2f}"
                cells.append(str(v))
            rows.append(cells)
        return [head for _, head in self.COLUMNS], rows



def _short(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _row_config(row: Mapping[str, Any]) -> dict[str, Any]:
    cfg = row.get("config")
    return dict(cfg) if isinstance(cfg, Mapping) else {}


def load_records(path: str | os.PathLike, space: SearchSpace) -> list[TrialRecord]:
    """Every trial of the experiment at ``path`` with its reported rows (read from each ``result.json``)."""
    from ray.tune import ExperimentAnalysis  # heavy: ray

    analysis = ExperimentAnalysis(str(path))
    records = []
    for trial in analysis.trials:
        rows = []
        result_file = Path(trial.path) / "result.json"
        if result_file.is_file():
            for line in result_file.read_text().splitlines():
                if line.strip():
                    rows.append(json.loads(line))
        config = _row_config(rows[-1]) if rows else dict(trial.config)
        error = ""
        if trial.status == "ERROR":
            error = error_text(trial)
        records.append(TrialRecord(trial.trial_id, trial.status, space.active(config), rows, error))
    return records


def error_text(trial: Any) -> str:
    """The reason a trial failed: ``diverged: ...`` for a divergence, else the error's traceback."""
    text = ""
    with contextlib.suppress(Exception):
        text = str(trial.get_error() or "")
    if not text and trial.error_file and Path(trial.error_file).is_file():
        text = Path(trial.error_file).read_text()
    m = re.search(r"DivergenceError: (.*)", text)
    if m:
        return f"diverged: {m.group(1).strip()}"
    return text.strip() or "trial failed (no error message)"
