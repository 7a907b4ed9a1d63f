"""Objectives of a hyper-parameter search, from the metrics a training epoch records.

An objective is written as text: a metric (``val_loss``, ``val_error``, ``gn_full``, ``gn_fc``,
``traj_gn``, ``train_loss``, ``train_error``), a weighted sum such as ``val_loss+0.1*gn_fc``, or a list
of them, ``[val_loss, gn_fc]``, for a multi-objective search. Every objective is minimised.

A sum may carry fit constraints after ``|``, joined by ``&``: ``gn_full | train_loss<=0.01`` is GN
among the models whose training loss is at most 0.01 -- with the zoo's ``stop_loss`` (default 0.01),
among the runs that met the training criterion -- and ``gn_fc | train_error<=0.05 & val_error<=0.2``
has two constraints (``<=`` and ``>=`` are allowed). A point that violates a constraint scores
:data:`INFEASIBLE` plus its total violation, so every search algorithm (they all rank values) puts it
after every feasible point, and among infeasible points prefers the one closest to feasible; when a
search saw no feasible point it thus still selects one, the least infeasible. A constraint on a metric
that was not measured (NaN) makes the value NaN: the point is never selected.

Multi-objective searches report their Pareto front; one model is picked from it by the rule of
``pick_from_front``: the front point with the smallest sum of min-max normalised objectives (the
"knee"), ties broken by the first objective.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

METRICS: dict[str, str] = {
    "val_loss": "validation loss",
    "val_error": "validation error (1 - validation accuracy)",
    "gn_full": "exact gradient norm on the probe set",
    "gn_fc": "gradient norm of the classifier head on the probe set",
    "traj_gn": "trajectory gradient norm so far",
    "train_loss": "training loss",
    "train_error": "training error (1 - training accuracy)",
}
# Infeasible points score this plus their violation; an objective's own values must stay below it.
INFEASIBLE = 1e9
# The metrics that need gradient norms measured: probe-set GN by scope, and the trajectory GN.
GN_SCOPES: dict[str, str] = {"gn_full": "full", "gn_fc": "fc"}
TRAJECTORY_GN = "traj_gn"
_NUMBER = r"[0-9.]+(?:[eE][-+]?[0-9]+)?"
_TERM = re.compile(rf"^\s*(?:({_NUMBER})\s*\*\s*)?([a-z_]+)\s*$")
_CONSTRAINT = re.compile(rf"^\s*([a-z_]+)\s*(<=|>=)\s*(-?{_NUMBER})\s*$")
_DERIVED = {"val_error": "val_acc", "train_error": "train_acc"}  # error = 1 - accuracy


def metric_value(name: str, metrics: Mapping[str, float]) -> float:
    """One metric from an epoch's row (``val_error``/``train_error`` are derived from the accuracies)."""
    if name in _DERIVED:
        return 1.0 - float(metrics[_DERIVED[name]])
    return float(metrics[name])


@dataclass(frozen=True)
class Constraint:
    """``metric <= bound`` (or ``>=``), a fit constraint on a sum."""

    metric: str
    op: str
    bound: float

    def violation(self, metrics: Mapping[str, float]) -> float:
        """How far the point is from meeting it (0 when met; NaN when the metric is NaN)."""
        v = metric_value(self.metric, metrics)
        gap = v - self.bound if self.op == "<=" else self.bound - v
        return gap  # NaN when the metric is NaN


@dataclass(frozen=True)
class Sum:
    """A weighted sum of metrics, e.g. ``val_loss + 0.1 * gn_fc``, optionally under fit constraints."""

    terms: tuple[tuple[float, str], ...]
    text: str
    constraints: tuple[Constraint, ...] = ()

    def __call__(self, metrics: Mapping[str, float]) -> float:
        value = sum(w * metric_value(m, metrics) for w, m in self.terms)
        if not self.constraints:
            return value
        over = [c.violation(metrics) for c in self.constraints]
        if any(math.isnan(v) for v in over):
            return math.nan
        excess = sum(max(0.0, v) for v in over)
        return value if excess == 0 else INFEASIBLE + excess

    @property
    def metrics(self) -> list[str]:
        """The metrics it reads: the minimised ones, then the constraints'."""
        return [m for _, m in self.terms] + [c.metric for c in self.constraints]

    @property
    def minimised(self) -> list[str]:
        """The metrics of the sum itself (not of its constraints)."""
        return [m for _, m in self.terms]


@dataclass(frozen=True)
class Objective:
    """One or several weighted sums to minimise; ``text`` is how the user wrote it."""

    parts: tuple[Sum, ...]
    text: str

    @property
    def multi(self) -> bool:
        return len(self.parts) > 1

    @property
    def metrics(self) -> list[str]:
        return sorted({m for p in self.parts for m in p.metrics})

    @property
    def gn_scopes(self) -> tuple[str, ...]:
        """The probe-set GN scopes the objective needs measured (``"full"``, ``"fc"``, in that order)."""
        needed = {GN_SCOPES[m] for m in self.metrics if m in GN_SCOPES}
        return tuple(s for s in GN_SCOPES.values() if s in needed)

    @property
    def trajectory_gn(self) -> bool:
        """Whether the objective needs the trajectory GN accumulated during training."""
        return TRAJECTORY_GN in self.metrics

    @property
    def gn_only(self) -> bool:
        """Whether what is minimised is GN and nothing else (a stand-in for the validation loss), constraints aside."""
        return all(m in GN_SCOPES or m == TRAJECTORY_GN for p in self.parts for m in p.minimised)

    @property
    def uses_gn(self) -> bool:
        """Whether the objective uses any gradient norm (probe-set or trajectory), alone or weighted."""
        return bool(self.gn_scopes) or self.trajectory_gn

    def __call__(self, metrics: Mapping[str, float]) -> float | tuple[float, ...]:
        values = tuple(p(metrics) for p in self.parts)
        return values if self.multi else values[0]


def _parse_terms(text: str, whole: str) -> tuple[tuple[float, str], ...]:
    terms = []
    for raw in text.split("+"):
        m = _TERM.match(raw)
        if m is None or m.group(2) not in METRICS:
            raise ValueError(
                f"cannot read objective term {raw.strip()!r} in {whole!r}; write metrics from "
                f"{', '.join(METRICS)} with optional non-negative weights, e.g. 'val_loss+0.1*gn_fc'"
            )
        try:
            weight = float(m.group(1)) if m.group(1) else 1.0
        except ValueError:
            raise ValueError(f"bad weight {m.group(1)!r} in objective {whole!r}") from None
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"objective weights must be finite and non-negative, got {weight} in {whole!r}")
        terms.append((weight, m.group(2)))
    return tuple(terms)


def _parse_constraint(raw: str, whole: str) -> Constraint:
    m = _CONSTRAINT.match(raw)
    if m is None or m.group(1) not in METRICS:
        raise ValueError(f"cannot read constraint {raw.strip()!r} in {whole!r}; write 'metric<=number' or "
                         f"'metric>=number' with a metric from {', '.join(METRICS)}, e.g. 'gn_full | train_loss<=0.01'")
    try:
        bound = float(m.group(3))
    except ValueError:
        raise ValueError(f"bad bound {m.group(3)!r} in constraint {raw.strip()!r} of {whole!r}") from None
    if not math.isfinite(bound):
        raise ValueError(f"a constraint's bound must be finite, got {bound} in {whole!r}")
    return Constraint(m.group(1), m.group(2), bound)


def _parse_sum(text: str) -> Sum:
    head, bar, tail = text.partition("|")
    if bar and ("|" in tail or not tail.strip()):
        raise ValueError(f"objective {text.strip()!r}: write one '|' followed by constraints joined by '&', "
                         "e.g. 'gn_full | train_loss<=0.01 & val_error<=0.2'")
    terms = _parse_terms(head, text.strip())
    constraints = tuple(_parse_constraint(c, text.strip()) for c in tail.split("&")) if bar else ()
    return Sum(terms, text.strip(), constraints)


def parse_objective(text: str) -> Objective:
    """``val_loss``, ``val_loss+0.1*gn_fc``, ``gn_full | train_loss<=0.01`` or ``[val_loss, gn_fc]`` as an
    :class:`Objective`."""
    t = text.strip()
    if t.startswith("["):
        if not t.endswith("]"):
            raise ValueError(f"multi-objective {text!r} must be a bracketed list, e.g. '[val_loss, gn_fc]'")
        parts = tuple(_parse_sum(p) for p in t[1:-1].split(",") if p.strip())
        if len(parts) < 2:
            raise ValueError(f"a multi-objective needs at least two parts, got {text!r}")
    else:
        parts = (_parse_sum(t),)
    return Objective(parts, t)


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` weakly better than ``b`` in every objective and strictly better in one (all minimised)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points (all objectives minimised); NaN points are never on it."""
    ok = [i for i, p in enumerate(points) if all(math.isfinite(v) for v in p)]
    return [i for i in ok if not any(dominates(points[j], points[i]) for j in ok if j != i)]


def pick_from_front(points: Sequence[Sequence[float]]) -> int | None:
    """The documented pick: the front point with the least sum of min-max normalised objectives."""
    front = pareto_front(points)
    if not front:
        return None
    k = len(points[front[0]])
    lo = [min(points[i][d] for i in front) for d in range(k)]
    hi = [max(points[i][d] for i in front) for d in range(k)]

    def score(i: int) -> tuple[float, float]:
        norm = sum((points[i][d] - lo[d]) / (hi[d] - lo[d]) if hi[d] > lo[d] else 0.0 for d in range(k))
        return norm, points[i][0]

    return min(front, key=score)
