"""Optuna's ask/tell interface over a zoo's lookup: the replay of ``random`` and ``tpe``."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from ..replay_search import Search

__all__ = ["ask_tell", "quiet_optuna"]


@contextlib.contextmanager
def quiet_optuna() -> Iterator[Any]:
    """Optuna (imported) with its logging at WARNING and its warnings silenced, restored afterwards."""
    import optuna  # heavy: optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield optuna
    finally:
        optuna.logging.set_verbosity(level)


def ask_tell(search: Search, sampler: str) -> None:
    """Optuna ask/tell with ``optuna.samplers.<sampler>(seed=search.seed)``, categorical parameters,
    every trial at the full budget (several objectives are Optuna's own directions)."""
    with quiet_optuna() as optuna:
        from optuna.distributions import CategoricalDistribution  # heavy: optuna
        from optuna.trial import TrialState  # heavy: optuna

        k = len(search.objective.parts)
        study = optuna.create_study(sampler=getattr(optuna.samplers, sampler)(seed=search.seed),
                                    directions=["minimize"] * k)  # fmt: skip
        lk = search.lookup
        dists = {name: CategoricalDistribution(labels) for name, labels in lk.params.items()}
        max_trials = 10 * (search.budget // lk.epochs) + 100  # a guard against a zoo that is mostly holes
        for _ in range(max_trials):
            if not search.fits(lk.epochs):
                return
            trial = study.ask(dists)
            config = lk.index.get(tuple(trial.params[name] for name in lk.params))
            values = search.evaluate(config, lk.epochs)
            if values is None:
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, list(values) if k > 1 else values[0])
