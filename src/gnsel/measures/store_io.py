"""Moved to :mod:`gnsel.zoo.measure` (measuring stored runs is the zoo's, not the measure registry's)."""

from ..zoo.measure import load_context, measure_run  # noqa: F401  # shim: removed after the merge
