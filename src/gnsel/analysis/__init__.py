"""How well a measure ranks models: rank correlations, granulated Kendall, CMI, robust sign error.

Inputs are a frame with one row per model (run): the measure, the target (generalization
gap or test error) and the hyper-parameter columns. Every scorer returns a small result
with a ``.value`` so that :func:`bootstrap_ci` and :func:`per_epoch` accept any of them.
Rows with a NaN measure or target are dropped; hyper-parameter values are compared
exactly (round floats first; NaN is a value of its own).
Plots live in :mod:`gnsel.analysis.plots` (imported on demand, it loads matplotlib).
"""

from __future__ import annotations

from .bootstrap import CI, bootstrap_ci
from .cmi import CMIResult, conditional_mutual_information
from .epochs import combine_epoch_scores, per_epoch
from .granulated import GranulatedResult, granulated_kendall
from .multiplicity import holm
from .partial import partial_kendall, quantile_strata, stratified_kendall
from .ranking import Score, kendall, spearman
from .resample import BootstrapResult, bootstrap_pvalue, cluster_bootstrap, nested_indices, percentile_interval
from .separation import rank_text, separated_ranks
from .sign_error import SignErrorResult, hoeffding_threshold, hoeffding_weight, sign_error

__all__ = [
    "CI",
    "BootstrapResult",
    "CMIResult",
    "GranulatedResult",
    "Score",
    "SignErrorResult",
    "bootstrap_ci",
    "bootstrap_pvalue",
    "cluster_bootstrap",
    "nested_indices",
    "percentile_interval",
    "combine_epoch_scores",
    "conditional_mutual_information",
    "granulated_kendall",
    "hoeffding_threshold",
    "hoeffding_weight",
    "holm",
    "kendall",
    "partial_kendall",
    "per_epoch",
    "quantile_strata",
    "rank_text",
    "separated_ranks",
    "sign_error",
    "spearman",
    "stratified_kendall",
]
