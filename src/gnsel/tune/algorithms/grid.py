"""``grid``: every point of a finite space once, at the full budget."""

from __future__ import annotations

import numpy as np

from ..objectives import Objective
from ..replay_search import BudgetExhausted, Search
from ..space import SearchSpace
from .base import LivePlan, LiveSettings, ReplayContext, SearchAlgorithm, register_algorithm, single_target


@register_algorithm
class Grid(SearchAlgorithm):
    """Live: one Ray ``grid_search`` over the deduplicated points of the space (``--trials`` does not
    repeat it). Replay: every configuration of the zoo once, in an order shuffled by the seed."""

    name = "grid"
    summary = "every point of a finite space once, full budget"
    live_backend = "one Ray grid_search over the deduplicated points of the space (BasicVariantGenerator, seeded)"
    replay_backend = "every configuration once, shuffled by the seed, full budget"
    replay_cost = 0.1

    def check(self, space: SearchSpace, objective: Objective | None = None) -> None:
        super().check(space, objective)
        ranges = [f"{p.name} ({p.kind})" for p in space.params.values() if not p.finite]
        if ranges:
            raise ValueError(
                f"algorithm 'grid' needs finite values (choice or grid) for every parameter; "
                f"continuous ranges: {', '.join(ranges)}"
            )
        if not space.params:
            raise ValueError("algorithm 'grid' needs at least one searched parameter under 'space'")

    def live(self, space: SearchSpace, objective: Objective, settings: LiveSettings) -> LivePlan:
        from ray.tune.search.basic_variant import BasicVariantGenerator  # heavy: ray

        kw = {"num_samples": 1, **single_target(objective),
              "search_alg": BasicVariantGenerator(random_state=settings.seed)}  # fmt: skip
        return LivePlan(kw, space.tune_grid())

    def replay(self, search: Search, context: ReplayContext) -> None:
        order = np.random.default_rng(search.seed).permutation(len(search.lookup.configs))
        for c in order:
            try:
                search.evaluate(int(c), search.lookup.epochs)
            except BudgetExhausted:
                return
