"""One replayed search: its budget, its evaluations over a zoo's lookup and what it selects.

A search spends a budget of epochs. Evaluations run in the order the algorithm asks for them; the
first evaluation that does not fit in what is left ends the search (later, cheaper ones are not
counted either). A configuration the algorithm proposes that the zoo lacks (a hole in the product of
the hyper-parameter values, e.g. a failed run) is a failed evaluation that costs nothing.

The selection is the evaluation with the least objective value, at the epoch where it was seen (the
first one on ties); for a multi-objective, the knee (:func:`~gnsel.tune.objectives.pick_from_front`)
of the Pareto front of the evaluations, kept incrementally. A ``bandit`` search (HyperBand, BOHB)
selects among its full-budget evaluations as soon as there is one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .lookup import Lookup
from .objectives import Objective, dominates, pareto_front, pick_from_front

__all__ = ["BudgetExhausted", "Evaluation", "Search"]


class BudgetExhausted(Exception):
    """The next evaluation does not fit in the search's budget."""


@dataclass
class Evaluation:
    """One evaluation of a configuration at a number of epochs, with the search's running totals."""

    config: int | None  # index into the lookup's configurations; None: not in the zoo
    epoch: int
    values: tuple[float, ...] | None  # objective values; None when the evaluation failed
    seconds: float
    gn_seconds: float
    replicate: int | None
    total_epochs: int
    total_seconds: float


@dataclass
class Search:
    """One search's state: the lookup, the objective, the budget, what it evaluated and selected."""

    lookup: Lookup
    objective: Objective
    budget: int
    seed: int
    bandit: bool = False
    records: list[Evaluation] = field(default_factory=list)
    spent_epochs: int = 0
    spent_seconds: float = 0.0
    spent_gn_seconds: float = 0.0
    exhausted: bool = False

    def __post_init__(self) -> None:
        self.table, self.mean_table = self.lookup.objective_table(self.objective)
        self.rng = np.random.default_rng([int(self.seed), 0x5EED])  # replicate draws (seed_mode "sample")
        self._selected: int | None = None  # index into records
        self._best: float = math.inf
        self._front: list[int] = []
        self._full_only = False
        self.curve: list[int | None] = []  # the selection after each evaluation

    # -- evaluating -------------------------------------------------------------------

    def fits(self, epochs: int) -> bool:
        """Whether an evaluation of ``epochs`` epochs can still run."""
        return not self.exhausted and self.spent_epochs + epochs <= self.budget

    def evaluate(self, config: int | None, epoch: int) -> tuple[float, ...] | None:
        """The objective of ``config`` after ``epoch`` epochs (None: failed); raises BudgetExhausted."""
        lk = self.lookup
        epoch = int(min(max(epoch, 1), lk.epochs))
        if self.exhausted:
            raise BudgetExhausted
        if config is None:
            self._record(Evaluation(None, epoch, None, 0.0, 0.0, None, self.spent_epochs, self.spent_seconds))
            return None
        if self.spent_epochs + epoch > self.budget:
            self.exhausted = True
            raise BudgetExhausted
        rep = None
        if lk.seed_mode == "sample":
            rep = int(self.rng.integers(int(lk.n_replicates[config])))
            raw = self.table[config, rep, epoch]
        else:
            raw = self.mean_table[config, epoch]
        seconds, gn_seconds = lk.cost(config, epoch, self.objective.uses_gn, rep)
        self.spent_epochs += epoch
        self.spent_seconds += seconds
        self.spent_gn_seconds += gn_seconds
        values = tuple(float(v) for v in raw) if np.all(np.isfinite(raw)) else None
        self._record(Evaluation(config, epoch, values, seconds, gn_seconds, rep,
                                self.spent_epochs, self.spent_seconds))
        return values

    # -- selecting --------------------------------------------------------------------

    def _record(self, ev: Evaluation) -> None:
        self.records.append(ev)
        i = len(self.records) - 1
        if ev.values is not None:
            full = ev.epoch == self.lookup.epochs
            if self.bandit and full and not self._full_only:
                # bandits select among full-budget evaluations as soon as there is one
                self._full_only = True
                self._selected, self._best, self._front = None, math.inf, []
            if full or not self._full_only:
                self._update_selection(i)
        self.curve.append(self._selected)

    def _update_selection(self, i: int) -> None:
        values = self.records[i].values
        assert values is not None
        if not self.objective.multi:
            if values[0] < self._best:
                self._best, self._selected = values[0], i
            return
        # multi-objective: keep the Pareto front incrementally; the pick only changes with it
        pts = {j: self.records[j].values for j in self._front}
        if any(dominates(p, values) for p in pts.values()):
            return
        self._front = [j for j in self._front if not dominates(values, pts[j])] + [i]
        front_pts = [self.records[j].values for j in self._front]
        self._selected = self._front[pick_from_front(front_pts)]

    @property
    def selected(self) -> Evaluation | None:
        """The selected evaluation: least objective (knee of the front for multi-objectives)."""
        return None if self._selected is None else self.records[self._selected]

    def candidates(self) -> list[int]:
        """Indices of the records the selection is made from."""
        ok = [i for i, r in enumerate(self.records) if r.values is not None]
        if self.bandit:
            full = [i for i in ok if self.records[i].epoch == self.lookup.epochs]
            return full or ok
        return ok

    def front_size(self) -> int:
        """Size of the Pareto front of the candidate evaluations (multi-objectives)."""
        pts = [self.records[i].values for i in self.candidates()]
        return len(pareto_front(pts)) if pts else 0

    # -- bandit scalarisation ---------------------------------------------------------

    def knee_score(self, values: tuple[float, ...], epoch: int) -> float:
        """A multi-objective as one loss: the pick rule's score against the front at this budget.

        The sum over objectives of ``(v - lo) / (hi - lo)``, ``lo``/``hi`` the per-objective range of
        the Pareto front of every successful evaluation at ``epoch`` epochs so far (this one included).
        """
        pts = [r.values for r in self.records if r.values is not None and r.epoch == epoch]
        front = [pts[i] for i in pareto_front(pts)]
        score = 0.0
        for d, v in enumerate(values):
            lo, hi = min(p[d] for p in front), max(p[d] for p in front)
            score += (v - lo) / (hi - lo) if hi > lo else 0.0
        return score
