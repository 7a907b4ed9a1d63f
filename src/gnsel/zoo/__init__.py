"""The model zoo: grids of training runs, built in parallel on Ray and kept in the store."""

from .build import BuildSummary, build_zoo, run_one
from .grid import Grid, expand_grid, load_grid, list_presets

__all__ = ["BuildSummary", "Grid", "build_zoo", "expand_grid", "list_presets", "load_grid", "run_one"]
