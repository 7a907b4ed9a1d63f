"""Objectives of a hyper-parameter search, from the metrics a training epoch records.

An objective is written as text: a metric (``val_loss``, ``val_error``, ``gn_full``, ``gn_fc``,
``traj_gn``, ``train_loss``), a weighted sum such as ``val_loss+0.1*gn_fc``, or a list of them,
``[val_loss, gn_fc]``, for a multi-objective search. Every objective is minimised.

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
}
# The metrics that need gradient norms measured: probe-set GN by scope, and the trajectory GN.
GN_SCOPES: dict[str, str] = {"gn_full": "full", "gn_fc": "fc"}
TRAJECTORY_GN = "traj_gn"
_TERM = re.compile(r"^\s*(?:([0-9.]+(?:[eE]-?[0-9]+)?)\s*\*\s*)?([a-z_]+)\s*$")


def metric_value(name: str, metrics: Mapping[str, float]) -> float:
    """One metric from an epoch's row (``val_error`` is derived from ``val_acc``)."""
    if name == "val_error":
        return 1.0 - float(metrics["val_acc"])
    return float(metrics[name])


@dataclass(frozen=True)
class Sum:
    """A weighted sum of metrics, e.g. ``val_loss + 0.1 * gn_fc``."""

    terms: tuple[tuple[float, str], ...]
    text: str

    def __call__(self, metrics: Mapping[str, float]) -> float:
        return sum(w * metric_value(m, metrics) for w, m in self.terms)

    @property
    def metrics(self) -> list[str]:
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
    def uses_gn(self) -> bool:
        """Whether the objective uses any gradient norm (probe-set or trajectory), alone or weighted."""
        return bool(self.gn_scopes) or self.trajectory_gn

    def __call__(self, metrics: Mapping[str, float]) -> float | tuple[float, ...]:
        values = tuple(p(metrics) for p in self.parts)
        return values if self.multi else values[0]


def _parse_sum(text: str) -> Sum:
    terms = []
    for raw in text.split("+"):
        m = _TERM.match(raw)
        if m is None or m.group(2) not in METRICS:
            raise ValueError(
                f"cannot read objective term {raw.strip()!r} in {text!r}; write metrics from "
                f"{', '.join(METRICS)} with optional non-negative weights, e.g. 'val_loss+0.1*gn_fc'"
            )
        try:
            weight = float(m.group(1)) if m.group(1) else 1.0
        except ValueError:
            raise ValueError(f"bad weight {m.group(1)!r} in objective {text!r}") from None
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"objective weights must be finite and non-negative, got {weight} in {text!r}")
        terms.append((weight, m.group(2)))
    return Sum(tuple(terms), text.strip())


def parse_objective(text: str) -> Objective:
    """``val_loss``, ``val_loss+0.1*gn_fc`` or ``[val_loss, gn_fc]`` as an :class:`Objective`."""
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
