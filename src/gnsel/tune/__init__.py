"""Model selection by hyper-parameter search with validation-loss and gradient-norm objectives."""

from .objectives import METRICS, Objective, parse_objective, pareto_front, pick_from_front

__all__ = ["METRICS", "Objective", "parse_objective", "pareto_front", "pick_from_front"]
