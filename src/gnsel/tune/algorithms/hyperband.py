"""``hyperband``: HyperBand (Li et al.), successive halving over epochs in brackets of several sizes.

One name, one algorithm, two back ends: a live search runs Ray Tune's ``HyperBandScheduler`` over
randomly drawn trials; a replay runs hpbandster's ``HyperBand`` against the zoo's lookup (see
:mod:`gnsel.tune.algorithms.hpbandster_host`). Both stop the worse configurations of a bracket early
and train the better ones on for ``eta`` (3) times the epochs; how they size the brackets is their own.
"""

from __future__ import annotations

from ..objectives import Objective
from ..replay_search import Search
from ..space import SearchSpace
from .base import LivePlan, LiveSettings, ReplayContext, SearchAlgorithm, register_algorithm, single_target
from .hpbandster_host import replay_with


@register_algorithm
class HyperBand(SearchAlgorithm):
    name = "hyperband"
    summary = "HyperBand: successive halving over epochs"
    live_backend = "random search + Ray's HyperBandScheduler over epochs (reduction factor 3)"
    replay_backend = "hpbandster HyperBand (successive halving over epochs)"
    multi_objective = False
    bandit = True
    replay_cost = 6.0
    optimizer = "HyperBand"  # the hpbandster optimizer class a replay runs

    def live(self, space: SearchSpace, objective: Objective, settings: LiveSettings) -> LivePlan:
        from .ray_schedulers import HyperBandScheduler  # heavy: ray
        from ray.tune.search.basic_variant import BasicVariantGenerator  # heavy: ray

        kw = {
            "num_samples": settings.trials, **single_target(objective),
            "search_alg": BasicVariantGenerator(random_state=settings.seed),
            "scheduler": HyperBandScheduler(time_attr="training_iteration", max_t=settings.epochs, reduction_factor=3),
        }  # fmt: skip
        return LivePlan(kw, space.tune_space())

    def replay(self, search: Search, context: ReplayContext) -> None:
        replay_with(self.optimizer, search, context)
