"""``bohb``: BOHB (Falkner et al.), HyperBand whose configurations come from a KDE model.

Live: Ray Tune's ``TuneBOHB`` searcher (a ConfigSpace with a condition on the model for each model
hyper-parameter) with the ``HyperBandForBOHB`` scheduler. Replay: hpbandster's ``BOHB`` against the
zoo's lookup (see :mod:`gnsel.tune.algorithms.hpbandster_host`), which draws from NumPy's global
generator, seeded per search and restored afterwards.
"""

from __future__ import annotations

from ..objectives import Objective
from ..space import SearchSpace
from .base import LivePlan, LiveSettings, register_algorithm, single_target
from .hyperband import HyperBand


@register_algorithm
class BOHB(HyperBand):
    """HyperBand's brackets and budgets (single objective, a bandit), its configurations from a model."""

    name = "bohb"
    summary = "BOHB: HyperBand with a KDE model"
    live_backend = "TuneBOHB (ConfigSpace with conditions) + HyperBandForBOHB"
    replay_backend = "hpbandster BOHB (HyperBand with a KDE model)"
    grid_kind = False
    optimizer = "BOHB"

    def live(self, space: SearchSpace, objective: Objective, settings: LiveSettings) -> LivePlan:
        from .ray_schedulers import HyperBandForBOHB  # heavy: ray
        from ray.tune.search.bohb import TuneBOHB  # heavy: ray (and ConfigSpace)

        kw = {
            "num_samples": settings.trials, **single_target(objective),
            "search_alg": TuneBOHB(space=space.configspace(settings.seed), metric="objective", mode="min",
                                   seed=settings.seed),
            "scheduler": HyperBandForBOHB(time_attr="training_iteration", max_t=settings.epochs, reduction_factor=3),
        }  # fmt: skip
        return LivePlan(kw, {})  # the searcher holds the space (with the architecture conditions)
