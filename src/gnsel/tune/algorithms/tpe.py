"""``tpe``: Optuna's tree-structured Parzen estimator, each configuration at the full budget."""

from __future__ import annotations

from ..objectives import Objective
from ..replay_search import Search
from ..space import SearchSpace
from .base import LivePlan, LiveSettings, ReplayContext, SearchAlgorithm, register_algorithm
from .optuna_replay import ask_tell


@register_algorithm
class TPE(SearchAlgorithm):
    """Optuna's ``TPESampler(seed=seed)`` (its defaults; in Optuna 5 it is also the default
    multi-objective sampler and handles ``[a, b]`` objectives itself). Live: ``OptunaSearch`` with a
    define-by-run space carrying the architecture conditions (metric and mode lists for a
    multi-objective). Replay: ask/tell over the zoo's categorical parameters."""

    name = "tpe"
    summary = "Optuna's TPE sampler, full budget"
    live_backend = "OptunaSearch (TPE, seeded; define-by-run space with the architecture conditions)"
    replay_backend = "Optuna TPESampler, full budget"
    grid_kind = False
    replay_cost = 4.0

    def live(self, space: SearchSpace, objective: Objective, settings: LiveSettings) -> LivePlan:
        import optuna  # heavy: optuna
        from ray.tune.search.optuna import OptunaSearch  # heavy: ray

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        metrics = [f"objective_{i}" for i in range(len(objective.parts))] if objective.multi else ["objective"]
        search_alg = OptunaSearch(
            space=space.optuna_space(), metric=metrics if objective.multi else metrics[0],
            mode=["min"] * len(metrics) if objective.multi else "min",
            sampler=optuna.samplers.TPESampler(seed=settings.seed),
        )  # fmt: skip
        # the define-by-run function samples everything: no param_space
        return LivePlan({"num_samples": settings.trials, "search_alg": search_alg}, {})

    def replay(self, search: Search, context: ReplayContext) -> None:
        ask_tell(search, "TPESampler")
