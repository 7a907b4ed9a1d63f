"""What a search algorithm is to gnsel, and the one registry of them (in the spirit of Optuna's samplers).

A :class:`SearchAlgorithm` has one name and one meaning, whichever back end runs it: a live search
on Ray Tune (:meth:`SearchAlgorithm.live` returns the Tune configuration) and a replay over a
finished zoo (:meth:`SearchAlgorithm.replay` drives a :class:`~gnsel.tune.replay_search.Search`
against the zoo's lookup). An algorithm may have either path or both; ``live_backend`` and
``replay_backend`` say how each runs ("" for no such path). Adding an algorithm is one module::

    @register_algorithm
    class FirstN(SearchAlgorithm):
        name = "firstn"
        summary = "the first configurations of the space"
        replay_backend = "the zoo's first configurations, full budget"

        def replay(self, search, context):
            for c in range(3):
                search.evaluate(c, search.lookup.epochs)

The registry :data:`ALGORITHMS` lists them in registration order (the built-ins: grid, random, tpe,
hyperband, asha, bohb, pbt); :func:`live_names` and :func:`replay_names` those with each path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from ...registry import Registry, UnknownNameError
from ..objectives import Objective
from ..replay_search import Search
from ..space import SearchSpace

__all__ = [
    "ALGORITHMS", "LivePlan", "LiveSettings", "ReplayContext", "SearchAlgorithm", "check_search",
    "get_algorithm", "live_algorithm", "live_names", "register_algorithm", "replay_algorithm", "replay_names",
    "single_target",
]  # fmt: skip

A = TypeVar("A", bound=type)


@dataclass(frozen=True)
class LiveSettings:
    """What a live search asks of its algorithm: trials, epochs per trial, the seed, its own options."""

    trials: int
    epochs: int
    seed: int
    options: Mapping[str, Any] = field(default_factory=dict)  # this algorithm's options (e.g. PBT's interval)


@dataclass
class LivePlan:
    """How a live search runs on Ray Tune: ``TuneConfig`` keyword arguments, the ``param_space`` and how
    many checkpoints to keep per trial (one makes Tune save and wait for the experiment state after every
    checkpoint, so the state on storage never lags the trials)."""

    tune_config: dict[str, Any]
    param_space: dict[str, Any]
    keep_checkpoints: int = 1


class ReplayContext:
    """What the replayed searches of one process share: HyperBand/BOHB's ``min_budget`` and ``eta``, and
    long-lived helpers (e.g. hpbandster's name server) started on first use and closed with the context."""

    def __init__(self, min_budget: float = 1.0, eta: float = 3.0) -> None:
        self.min_budget, self.eta = min_budget, eta
        self._stack = contextlib.ExitStack()
        self._shared: dict[str, Any] = {}

    def shared(self, key: str, factory: Callable[[], contextlib.AbstractContextManager[Any]]) -> Any:
        """The helper under ``key``: ``factory()`` entered the first time, exited when the context closes."""
        if key not in self._shared:
            self._shared[key] = self._stack.enter_context(factory())
        return self._shared[key]

    def share(self, key: str, value: Any) -> None:
        """Use an already running helper under ``key`` (its owner closes it)."""
        self._shared[key] = value

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            self._shared.clear()

    def __enter__(self) -> ReplayContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SearchAlgorithm:
    """One search algorithm: override :meth:`live` and/or :meth:`replay` (and :meth:`check` for its own
    constraints on a space), describe the paths in ``live_backend``/``replay_backend``."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # what the algorithm is, whatever runs it
    live_backend: ClassVar[str] = ""  # how it runs on Ray Tune; "" when it has no live path
    replay_backend: ClassVar[str] = ""  # how it is replayed over a zoo; "" when it has no replay path
    # Whether it searches several objectives itself. If not, a live search refuses a multi-objective and
    # a replay scalarises it by the knee score (its results say so).
    multi_objective: ClassVar[bool] = True
    grid_kind: ClassVar[bool] = True  # whether its live path takes parameters of kind 'grid' (grid_search)
    # Bandits train configurations for fewer epochs than the budget: a replay selects among their
    # full-budget evaluations as soon as there is one.
    bandit: ClassVar[bool] = False
    replay_cost: ClassVar[float] = 1.0  # relative cost of one replayed search (to balance worker processes)

    @property
    def has_live(self) -> bool:
        return bool(self.live_backend)

    @property
    def has_replay(self) -> bool:
        return bool(self.replay_backend)

    def check(self, space: SearchSpace, objective: Objective | None = None) -> None:
        """ValueError when ``space`` (or ``objective``) cannot be searched live by this algorithm."""
        grid = [p.name for p in space.params.values() if p.kind == "grid"]
        if not self.grid_kind and grid:
            raise ValueError(
                f"algorithm {self.name!r} cannot take a grid: {', '.join(grid)} "
                f"{'is' if len(grid) == 1 else 'are'} of kind 'grid' (Ray's grid_search); "
                f"write them as 'choice' for {self.name}, or use {_either(a.name for a in _live() if a.grid_kind)}"
            )
        if objective is not None and objective.multi and not self.multi_objective:
            raise ValueError(
                f"algorithm {self.name!r} needs a single objective (a metric or a weighted sum); "
                f"{objective.text!r} is multi-objective: use {_either(a.name for a in _live() if a.multi_objective)}"
            )

    def live(self, space: SearchSpace, objective: Objective, settings: LiveSettings) -> LivePlan | None:
        """The Ray Tune plan of a live search (None: no live path). Called after :meth:`check`."""
        return None

    def replay(self, search: Search, context: ReplayContext) -> None:
        """Drive ``search`` (``search.evaluate(config, epochs)`` until it raises ``BudgetExhausted`` or the
        algorithm is done). Every replayed search is seeded by ``search.seed`` alone."""
        return None

    def __repr__(self) -> str:
        return f"<search algorithm {self.name!r}>"


def single_target(objective: Objective) -> dict[str, Any]:
    """``TuneConfig``'s ``metric`` and ``mode`` for a single objective (nothing for a multi-objective)."""
    return {} if objective.multi else {"metric": "objective", "mode": "min"}


def _either(names: Sequence[str] | Any) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


# ------------------------------------------------------------------------------------ the registry
ALGORITHMS: Registry[SearchAlgorithm] = Registry("search algorithm")


def register_algorithm(cls: A | None = None, *, replace: bool = False) -> Any:
    """Class decorator: register one instance of a :class:`SearchAlgorithm` subclass under its ``name``."""

    def add(c: A) -> A:
        if not (isinstance(c, type) and issubclass(c, SearchAlgorithm)) or not c.name:
            raise TypeError(f"{c!r}: register a SearchAlgorithm subclass with a name")
        for path, method in (("live_backend", "live"), ("replay_backend", "replay")):
            if bool(getattr(c, path)) != (getattr(c, method) is not getattr(SearchAlgorithm, method)):
                raise TypeError(f"search algorithm {c.name!r}: give {path} exactly when it overrides {method}()")
        ALGORITHMS.register(c.name, c(), replace=replace)
        return c

    return add if cls is None else add(cls)


def get_algorithm(name: str) -> SearchAlgorithm:
    """The algorithm registered as ``name``; :class:`~gnsel.registry.UnknownNameError` lists the choices."""
    return ALGORITHMS.get(name)


def _live() -> list[SearchAlgorithm]:
    return [a for a in ALGORITHMS.values() if a.has_live]


def live_names() -> list[str]:
    """The algorithms that search live on Ray Tune, in registration order."""
    return [a.name for a in _live()]


def replay_names() -> list[str]:
    """The algorithms that replay over a zoo, in registration order."""
    return [a.name for a in ALGORITHMS.values() if a.has_replay]


def live_algorithm(name: str) -> SearchAlgorithm:
    """A live algorithm by name; the error lists the live ones."""
    if name in ALGORITHMS and ALGORITHMS.get(name).has_live:
        return ALGORITHMS.get(name)
    raise UnknownNameError(f"unknown algorithm {name!r}; choices: {', '.join(live_names())}")


def replay_algorithm(name: str) -> SearchAlgorithm:
    """A replayable algorithm by name; the error lists the replayable ones."""
    if name in ALGORITHMS and ALGORITHMS.get(name).has_replay:
        return ALGORITHMS.get(name)
    raise UnknownNameError(f"unknown search algorithm {name!r}; choices: {', '.join(replay_names())}")


def check_search(space: SearchSpace, algorithm: str, objective: Objective | None = None) -> SearchAlgorithm:
    """The live algorithm ``algorithm`` once ``space`` and ``objective`` pass its checks (ValueError else)."""
    alg = live_algorithm(algorithm)
    alg.check(space, objective)
    return alg
