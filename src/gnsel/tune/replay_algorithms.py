"""Shim: removed after the merge. The replayed algorithms are :mod:`gnsel.tune.algorithms` (one module
per family), one search's state is :mod:`gnsel.tune.replay_search`, the dispatch ``run_algorithm`` is in
:mod:`gnsel.tune.replay`."""

from .algorithms import get_algorithm, replay_names
from .algorithms.hpbandster_host import HpbandsterHost
from .replay import ALGORITHMS, run_algorithm
from .replay_search import BudgetExhausted, Evaluation, Search

BANDITS = tuple(n for n in replay_names() if get_algorithm(n).bandit)

__all__ = ["ALGORITHMS", "BANDITS", "BudgetExhausted", "Evaluation", "HpbandsterHost", "Search", "run_algorithm"]
