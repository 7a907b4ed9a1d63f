"""A finished zoo as a tabular benchmark: ``(configuration, epochs) -> metrics, cost``.

The zoo defines a discrete search space: every configuration field that varies across its finished
runs is a categorical hyper-parameter, except the seeds (``seed``, ``data_seed``), which make
replicates of one configuration; the architecture -- ``model`` together with ``model_kwargs`` -- is
one parameter, ``arch``, with values such as ``mlp(depth=2,width=32)``. The zoo must hold a single
dataset, a single (maximum) number of training epochs ``E`` and the same data for every run
(``n_train``, ``n_val``, ``probe_size``, ``dataset_kwargs``: never a search dimension). A run that stopped at its training
criterion before ``E`` answers every later budget with its stopped model, at the cost it took.

A lookup ``(configuration, b)`` replaces training for ``b`` epochs: it returns the metrics recorded
at epoch ``b`` (:meth:`Lookup.row`) at the recorded cost (:meth:`Lookup.cost`): ``train_seconds`` +
``eval_seconds`` of epochs ``1..b``, plus their ``measure_seconds`` when the objective uses GN, since
GN must then be measured (set ``measure_every_epoch=False`` to count the evaluation and the GN
measurement of epoch ``b`` only). With several seeds per configuration, ``seed_mode="mean"`` (the
default) answers every query with the mean over the seeds of every metric and cost, and
``seed_mode="sample"`` answers each query with one seed drawn by the search's own generator (so the
search sees the seed noise).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..store import Store
from ..training import DATA_FIELDS
from .objectives import Objective

__all__ = ["SEED_KEYS", "SEED_MODES", "Lookup", "check_one_setting"]

SEED_KEYS = ("seed", "data_seed")
_IGNORED_KEYS = ("device",)
SEED_MODES = ("mean", "sample")
# per-epoch quantities that are 0 after a run stopped (nothing was trained, evaluated or measured)
_PER_EPOCH_COSTS = ("train_seconds", "eval_seconds", "measure_seconds", "traj_gn_epoch")


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


def _found(configs: Sequence[Mapping[str, Any]], key: str) -> list[str]:
    """The distinct values of ``key`` over the configurations, as JSON text in value order."""
    found = {json.dumps(c.get(key), sort_keys=True) for c in configs}
    return sorted(found, key=lambda t: _sort_key(json.loads(t)))


def check_one_setting(configs: Sequence[Mapping[str, Any]]) -> None:
    """Refuse a zoo a replay cannot search: one dataset, one number of epochs, the same data for every run.

    The data-defining fields (:data:`~gnsel.training.DATA_FIELDS`) must not vary, except ``data_seed``,
    which makes replicates of a configuration, like ``seed`` (never something a search chooses).
    """
    for key, what in (("dataset", "datasets"), ("epochs", "numbers of epochs")):
        found = _found(configs, key)
        if len(found) > 1:
            raise ValueError(f"the zoo mixes {what} ({', '.join(found)}); replay needs one; "
                             "build or filter a store per setting")
    for key in (k for k in DATA_FIELDS if k != "dataset" and k not in SEED_KEYS):
        found = _found(configs, key)
        if len(found) > 1:
            raise ValueError(f"the zoo varies {key} ({', '.join(found)}); a search compares models trained on the "
                             "same data; build or filter a store per setting")


@dataclass
class Lookup:
    """A finished zoo as a table ``(configuration, epoch) -> metrics, cost``.

    ``params`` maps each hyper-parameter to its sorted value labels; ``configs[c]`` is configuration
    ``c`` as ``{param: label}`` and ``index`` maps the tuple of its labels (in ``params`` order) back to
    ``c``; ``metrics[name]`` has shape ``(configs, replicates, epochs + 1)``, NaN-padded where a
    configuration has fewer seeds (``n_replicates``). ``last_epochs`` (``(configs, replicates)``, -1 where
    there is no run) is each run's last recorded epoch, after which its metrics are the forward-filled copies
    (None when the lookup was built by hand: then every epoch counts as recorded).
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
    last_epochs: np.ndarray | None = None
    _cum: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _mean: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _tables: dict[Objective, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_store(
        cls, store_path: str | os.PathLike[str], seed_mode: str = "mean", measure_every_epoch: bool = True
    ) -> Lookup:
        """Read the finished runs of a store (``Store(path).runs_frame(status="done")``)."""
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
        check_one_setting(configs)
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
        shape = (len(keys), int(n_rep.max()), epochs + 1)
        last = np.full(shape[:2], -1)
        np.maximum.at(last, (where[:, 0], where[:, 1]), e_idx)
        after = (np.arange(epochs + 1)[None, None, :] > last[:, :, None]) & (last[:, :, None] >= 0)
        source = np.broadcast_to(np.maximum(last, 0)[:, :, None], shape)
        metrics = {}
        for col in metric_cols:
            arr = np.full(shape, np.nan)
            arr[where[:, 0], where[:, 1], e_idx] = ep[col].to_numpy(dtype=float)
            # a run stopped at its criterion before the zoo's maximum epoch: later budgets find the stopped model,
            # at no further cost
            stopped = np.take_along_axis(arr, source, axis=2)
            arr = np.where(after, 0.0 if col in _PER_EPOCH_COSTS else stopped, arr)
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
            last_epochs=last,
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
        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)
