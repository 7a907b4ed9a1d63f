"""``asha``: asynchronous successive halving over epochs (live only)."""

from __future__ import annotations

from ..objectives import Objective
from ..space import SearchSpace
from .base import LivePlan, LiveSettings, SearchAlgorithm, register_algorithm, single_target


@register_algorithm
class ASHA(SearchAlgorithm):
    name = "asha"
    summary = "asynchronous successive halving over epochs"
    live_backend = "random search + Ray's ASHAScheduler over epochs (grace period 1, reduction factor 3)"
    multi_objective = False

    def live(self, space: SearchSpace, objective: Objective, settings: LiveSettings) -> LivePlan:
        from ray.tune.schedulers import ASHAScheduler  # heavy: ray
        from ray.tune.search.basic_variant import BasicVariantGenerator  # heavy: ray

        kw = {
            "num_samples": settings.trials, **single_target(objective),
            "search_alg": BasicVariantGenerator(random_state=settings.seed),
            "scheduler": ASHAScheduler(time_attr="training_iteration", max_t=settings.epochs, grace_period=1,
                                       reduction_factor=3),
        }  # fmt: skip
        return LivePlan(kw, space.tune_space())
