"""``pbt``: population-based training (live only), perturbing the learning rate and weight decay.

A random initial population of ``trials`` trials; Ray Tune's ``PopulationBasedTraining`` replaces
the worse trials every ``interval`` epochs by perturbed copies of the better ones, exchanging real
checkpoints (weights, optimiser, schedule, trajectory GN). Options (``run_search(pbt=...)``):
``interval`` (default ``epochs // 4``), ``quantile_fraction`` (0.25), ``synch`` (False).
"""

from __future__ import annotations

from ..objectives import Objective
from ..space import PBT_MUTABLE, SearchSpace
from .base import LivePlan, LiveSettings, SearchAlgorithm, register_algorithm, single_target


@register_algorithm
class PBT(SearchAlgorithm):
    name = "pbt"
    summary = "population-based training perturbing lr and weight decay"
    live_backend = "random initial population + PopulationBasedTraining, exchanging real checkpoints"
    multi_objective = False

    def check(self, space: SearchSpace, objective: Objective | None = None) -> None:
        super().check(space, objective)
        if not any(n in space.params for n in PBT_MUTABLE):
            raise ValueError("algorithm 'pbt' perturbs lr and weight_decay: search at least one of them under 'space'")

    def live(self, space: SearchSpace, objective: Objective, settings: LiveSettings) -> LivePlan:
        from ray.tune.schedulers import PopulationBasedTraining  # heavy: ray
        from ray.tune.search.basic_variant import BasicVariantGenerator  # heavy: ray

        opts = settings.options
        kw = {
            "num_samples": settings.trials, **single_target(objective),
            "search_alg": BasicVariantGenerator(random_state=settings.seed),
            "scheduler": PopulationBasedTraining(
                time_attr="training_iteration",
                perturbation_interval=int(opts.get("interval", max(1, settings.epochs // 4))),
                hyperparam_mutations=space.pbt_mutations(),
                quantile_fraction=float(opts.get("quantile_fraction", 0.25)),
                synch=bool(opts.get("synch", False)),
            ),
        }  # fmt: skip
        # a donor's checkpoint must outlive the exploit that copies it: keep a few
        return LivePlan(kw, space.tune_space(), keep_checkpoints=4)
