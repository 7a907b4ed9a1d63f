"""The model zoo: grids of training runs, built in parallel on Ray and kept in the store, then measured
(:mod:`gnsel.zoo.measure`) and correlated with their generalization (:mod:`gnsel.zoo.correlate`, not
re-exported here: its function ``correlate`` would shadow the module)."""

from .build import BuildSummary, build_zoo, run_one
from .grid import Grid, expand_grid, list_presets, load_grid
from .measure import load_context, measure_run

__all__ = [
    "BuildSummary", "Grid", "build_zoo", "expand_grid", "list_presets", "load_context", "load_grid", "measure_run",
    "run_one",
]  # fmt: skip
