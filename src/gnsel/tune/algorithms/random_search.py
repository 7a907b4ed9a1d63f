"""``random``: configurations drawn at random from the space, each at the full budget."""

from __future__ import annotations

from ..objectives import Objective
from ..replay_search import Search
from ..space import SearchSpace
from .base import LivePlan, LiveSettings, ReplayContext, SearchAlgorithm, register_algorithm, single_target
from .optuna_replay import ask_tell


@register_algorithm
class RandomSearch(SearchAlgorithm):
    """Live: Ray's ``BasicVariantGenerator`` (seeded) with ``num_samples = trials``. Replay: Optuna's
    ``RandomSampler(seed=seed)`` over the zoo's categorical parameters."""

    name = "random"
    summary = "configurations drawn at random, full budget"
    live_backend = "BasicVariantGenerator (seeded) with num_samples = trials"
    replay_backend = "Optuna RandomSampler, full budget"

    def live(self, space: SearchSpace, objective: Objective, settings: LiveSettings) -> LivePlan:
        from ray.tune.search.basic_variant import BasicVariantGenerator  # heavy: ray

        kw = {"num_samples": settings.trials, **single_target(objective),
              "search_alg": BasicVariantGenerator(random_state=settings.seed)}  # fmt: skip
        return LivePlan(kw, space.tune_space())

    def replay(self, search: Search, context: ReplayContext) -> None:
        ask_tell(search, "RandomSampler")
