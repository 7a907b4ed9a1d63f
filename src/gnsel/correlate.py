"""Moved to :mod:`gnsel.zoo.correlate` (building, measuring and correlating a zoo live together)."""

from .zoo.correlate import (  # noqa: F401  # shim: removed after the merge
    EPOCH_MEASURES,
    TARGETS,
    CorrelateReport,
    correlate,
    hparam_columns,
    markdown,
    score_measure,
    target_values,
    write_report,
)
