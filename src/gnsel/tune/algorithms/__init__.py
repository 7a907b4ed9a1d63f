"""Search algorithms, one module per family, in one registry for the live and the replay paths.

============  ==================================================  =====================================
name          live on Ray Tune                                    replayed over a zoo
============  ==================================================  =====================================
grid          one ``grid_search`` over the deduplicated points    every configuration once (seeded order)
random        ``BasicVariantGenerator`` (seeded)                  Optuna ``RandomSampler``
tpe           ``OptunaSearch`` (TPE, define-by-run space)         Optuna ``TPESampler``
hyperband     random search + ``HyperBandScheduler``              hpbandster ``HyperBand``
asha          random search + ``ASHAScheduler``                   --
bohb          ``TuneBOHB`` + ``HyperBandForBOHB``                 hpbandster ``BOHB``
pbt           random population + ``PopulationBasedTraining``     --
============  ==================================================  =====================================

A new algorithm is one module with a :class:`SearchAlgorithm` subclass under ``@register_algorithm``
(see :mod:`gnsel.tune.algorithms.base`), imported below (or from the user's code, before use).
"""

from __future__ import annotations

# isort: off
# The built-ins register on import, in the order every listing shows them (names and messages).
from . import grid, random_search, tpe, hyperband, asha, bohb, pbt  # noqa: F401
# isort: on
from .base import (
    ALGORITHMS, LivePlan, LiveSettings, ReplayContext, SearchAlgorithm, check_search, get_algorithm,
    live_algorithm, live_names, register_algorithm, replay_algorithm, replay_names, single_target,
)  # fmt: skip

__all__ = [
    "ALGORITHMS", "LivePlan", "LiveSettings", "ReplayContext", "SearchAlgorithm", "check_search",
    "get_algorithm", "live_algorithm", "live_names", "register_algorithm", "replay_algorithm", "replay_names",
    "single_target",
]  # fmt: skip
