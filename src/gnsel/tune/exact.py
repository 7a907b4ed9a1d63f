"""Exact expectations of grid and random search over a zoo, by order statistics (no search seeds needed).

Both searches evaluate every configuration they draw at the zoo's full budget and select the one with
the least objective value, so what they select depends only on the set (or multiset) of drawn
configurations. Over the ``N`` configurations with a finite objective value at the selection epoch,
sorted by value, the selected one is the ``j``-th smallest with probability

- without replacement (``k`` distinct configurations: a grid evaluated in random order and stopped after
  ``k`` points, or random search that never repeats a point): ``C(N-j, k-1) / C(N, k)``;
- with replacement (``k`` independent uniform draws: random search that may repeat points, e.g. Optuna's
  ``RandomSampler`` over a full product space): ``((N-j+1)^k - (N-j)^k) / N^k``.

The expected test accuracy of the selection is the probability-weighted sum of the test accuracies.
Rows tied in value share the probability mass of their ranks equally (a first-seen rule in a uniformly
random order picks each of them alike). Rows whose value is NaN are never selected: they are dropped
(``N`` counts the finite rows; a replayed grid still spends budget on them, this does not).
Multi-objective objectives (``[a, b]``) select by a Pareto rule and are not covered: they are skipped.

The weight of ``val_loss + w * gn`` is a hyper-parameter of the objective: :func:`weight_curve` gives, per
``w`` of a grid, the exact expected *validation* error and test accuracy of what grid/random search select,
and marks the ``w`` a practitioner would choose -- the least expected validation error, so the test set
plays no part in the choice.

Algorithm names in :func:`exact_expectations`: ``grid`` (without replacement) and ``random`` (each
``replacement`` asked for; ``k`` larger than ``N`` only with replacement).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import gammaln

from .lookup import Lookup
from .objectives import Objective, parse_objective

__all__ = ["WEIGHT_GRID", "exact_expectations", "expected_selected", "rank_probabilities", "selection_table",
           "weight_curve", "weight_table", "weighted_text"]

WEIGHT_GRID = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)  # w of val_loss + w * gn, 0 = val_loss


class _MeanRow(Mapping[str, float]):
    """One configuration's seed-mean metrics at one epoch, read lazily from a lookup."""

    def __init__(self, lookup: Lookup, c: int, epoch: int) -> None:
        self.lookup, self.c, self.epoch = lookup, c, epoch

    def __getitem__(self, name: str) -> float:
        if name not in self.lookup.metrics:
            raise KeyError(name)
        return float(self.lookup.mean(name)[self.c, self.epoch])

    def __iter__(self) -> Any:
        return iter(self.lookup.metrics)

    def __len__(self) -> int:
        return len(self.lookup.metrics)


def _objectives(objectives: Iterable[str | Objective]) -> list[Objective]:
    out = [o if isinstance(o, Objective) else parse_objective(o) for o in objectives]
    return list({o.text: o for o in out}.values())


def selection_table(lookup: Lookup, objectives: Iterable[str | Objective], epoch: int | None = None) -> pd.DataFrame:
    """One row per configuration at ``epoch`` (default: the zoo's last): ``config``, each single objective's
    value (seed means, column named by the objective's text; multi-objectives skipped) and ``test_acc``."""
    e = lookup.epochs if epoch is None else int(epoch)
    singles = [o for o in _objectives(objectives) if not o.multi]
    cols: dict[str, Any] = {"config": [lookup.label(c) for c in range(len(lookup.configs))]}
    for o in singles:
        try:
            cols[o.text] = [float(o(_MeanRow(lookup, c, e))) for c in range(len(lookup.configs))]
        except KeyError as err:
            raise ValueError(f"objective {o.text!r} needs metric {err} which the zoo does not record") from None
    cols["test_acc"] = lookup.mean("test_acc")[:, e].astype(float)
    return pd.DataFrame(cols)


def rank_probabilities(n: int, k: int, replacement: bool) -> np.ndarray:
    """P(the minimum of ``k`` uniform draws from ``n`` ranked items is rank ``j``), ``j = 1..n`` (log space)."""
    if n < 1:
        return np.zeros(0)
    if k < 1 or (not replacement and k > n):
        raise ValueError(f"k must be in 1..{n} without replacement (at least 1 with), got {k}")
    j = np.arange(1, n + 1, dtype=float)
    if replacement:  # ((n-j+1)/n)^k - ((n-j)/n)^k
        hi = np.exp(k * (np.log(n - j + 1) - np.log(n)))
        with np.errstate(divide="ignore"):
            lo = np.exp(k * (np.log(n - j) - np.log(n)))
        p = hi - lo
    else:  # C(n-j, k-1) / C(n, k)
        m = n - j
        ok = m >= k - 1
        lc = gammaln(m + 1) - gammaln(k) - gammaln(np.maximum(m - k + 2, 1))
        lt = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
        p = np.where(ok, np.exp(lc - lt), 0.0)
    return p / p.sum()


def expected_selected(values: Sequence[float] | np.ndarray, test_acc: Sequence[float] | np.ndarray, k: int,
                      replacement: bool) -> float:  # fmt: skip
    """Exact expected ``test_acc`` of the row minimising ``values`` among ``k`` rows drawn uniformly (NaN values
    dropped; ties share their mass equally); NaN when no row has a finite value."""
    v = np.asarray(values, dtype=float)
    t = np.asarray(test_acc, dtype=float)
    ok = np.isfinite(v)
    v, t = v[ok], t[ok]
    if not v.size:
        return float("nan")
    order = np.argsort(v, kind="stable")
    v, t = v[order], t[order]
    p = rank_probabilities(v.size, int(k), bool(replacement))
    # ties: each group of equal values gets the mean test accuracy of its members at its summed mass
    starts = np.r_[0, np.flatnonzero(np.diff(v) != 0) + 1]
    mass = np.add.reduceat(p, starts)
    acc = np.add.reduceat(t, starts) / np.diff(np.r_[starts, v.size])
    return float(np.sum(mass * acc))


def exact_expectations(table: pd.DataFrame, objectives: Iterable[str | Objective], ks: Iterable[int],
                       replacement: Sequence[bool] = (False, True)) -> pd.DataFrame:  # fmt: skip
    """Columns ``algorithm, objective, k, replacement, expected_test_acc``: per single objective of ``table``
    (from :func:`selection_table`) and ``k``, a ``grid`` row (without replacement) and ``random`` rows."""
    rows = []
    for o in _objectives(objectives):
        if o.multi or o.text not in table:
            continue
        values, acc = table[o.text].to_numpy(float), table["test_acc"].to_numpy(float)
        n = int(np.isfinite(values).sum())
        for k in dict.fromkeys(int(k) for k in ks):
            plan = [("grid", False)] + [("random", bool(r)) for r in replacement]
            for alg, rep in plan:
                if k < 1 or (not rep and k > n):
                    continue
                rows.append({"algorithm": alg, "objective": o.text, "k": k, "replacement": rep,
                             "expected_test_acc": expected_selected(values, acc, k, rep)})  # fmt: skip
    return pd.DataFrame(rows, columns=["algorithm", "objective", "k", "replacement", "expected_test_acc"])


def weighted_text(base: str, gn: str, weight: float) -> str:
    """The objective ``base+w*gn`` as text (``w`` in its shortest exact form)."""
    return f"{base}+{float(weight):g}*{gn}"


def weight_table(lookup: Lookup, gns: Sequence[str], weights: Sequence[float] = WEIGHT_GRID, base: str = "val_loss",
                 criterion: str = "val_error", epoch: int | None = None) -> pd.DataFrame:  # fmt: skip
    """The :func:`selection_table` of ``base + w * gn`` for every ``gn`` and ``w``, with the ``criterion`` column."""
    texts = [weighted_text(base, gn, w) for gn in gns for w in sorted({float(w) for w in weights})]
    return selection_table(lookup, [*texts, base, criterion], epoch)


def weight_curve(table: pd.DataFrame, gn: str, k: int, replacement: bool, weights: Sequence[float] = WEIGHT_GRID,
                 base: str = "val_loss", criterion: str = "val_error") -> pd.DataFrame:  # fmt: skip
    """Per weight ``w`` of ``base + w * gn`` (columns of ``table``, from :func:`weight_table`): the exact expected
    ``criterion`` (a validation metric, minimised) and ``test_acc`` of the model selected from ``k`` draws;
    ``chosen`` marks the least expected criterion (ties: the smaller ``w``), a choice that never reads the test set."""
    crit, acc = table[criterion].to_numpy(float), table["test_acc"].to_numpy(float)
    rows = []
    for w in sorted({float(w) for w in weights}):
        t = weighted_text(base, gn, w)
        v = table[t].to_numpy(float)
        kk = int(k) if replacement else min(int(k), int(np.isfinite(v).sum()))
        rows.append({"weight": w, "objective": t, f"expected_{criterion}": expected_selected(v, crit, kk, replacement),
                     "expected_test_acc": expected_selected(v, acc, kk, replacement)})  # fmt: skip
    frame = pd.DataFrame(rows)
    c = frame[f"expected_{criterion}"].to_numpy(float)
    best = int(np.nanargmin(np.round(c, 12))) if np.isfinite(c).any() else -1
    frame["chosen"] = [i == best for i in range(len(frame))]
    return frame
