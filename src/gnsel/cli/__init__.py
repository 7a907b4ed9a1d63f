"""The ``gnsel`` command line (Typer): one command per step of the study.

The only layer that prints: each command group is a module (:mod:`.measure`, :mod:`.zoo`,
:mod:`.correlate`, :mod:`.tune`, :mod:`.hpo_bench`, :mod:`.study`) with a ``register(app)``;
:mod:`.common` holds the console and the one-line error exit, :mod:`.progress` the Rich
implementation of :class:`gnsel.progress.Progress` passed to long work. Commands import what
they run when they run, so ``gnsel --help`` stays fast.

Every command is wrapped, once all are registered, by :func:`.common.interruptible`: Ctrl-C and SIGTERM
end it with one line and exit 130 or 143, after the same cleanup, so that a rerun continues.
"""

from __future__ import annotations

import typer

from . import correlate, hpo_bench, measure, study, tune, zoo
from .common import interruptible
from .progress import RichProgress

__all__ = ["RichProgress", "app", "main"]

app = typer.Typer(
    help="gnsel: can the gradient norm (GN) of a trained model guide model selection, and at what cost?",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """gnsel: can the gradient norm (GN) of a trained model guide model selection, and at what cost?

    Commands: measure (GN of one model), zoo (train grids of models into a store), correlate
    (how well GN and other measures rank the zoo's models by generalization gap), tune (a live
    hyper-parameter search on Ray Tune with GN objectives), hpo-bench (search algorithms replayed
    over a finished zoo, many seeds), study (all of it on a preset, with a report).
    """


# in this order, as the help lists them (Typer puts the zoo group after the plain commands)
measure.register(app)
zoo.register(app)
correlate.register(app)
tune.register(app)
hpo_bench.register(app)
study.register(app)


def _interruptible(group: typer.Typer) -> None:
    """Wrap every command of ``group`` and of its sub-groups in :func:`.common.interruptible`."""
    for info in group.registered_commands:
        info.callback = interruptible(info.callback)
    for sub in group.registered_groups:
        _interruptible(sub.typer_instance)


_interruptible(app)


def main() -> None:  # pragma: no cover
    app()
