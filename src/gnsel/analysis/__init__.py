"""How well a measure ranks models: rank correlations, granulated Kendall, CMI, robust sign error.

Inputs are a frame with one row per model (run): the measure, the target (generalization
gap or test error) and the hyper-parameter columns. Every scorer returns a small result
with a ``.value`` so that :func:`bootstrap_ci` and :func:`per_epoch` accept any of them.
Hyper-parameter values are compared exactly (round floats first; NaN is a value of its own).

Non-finite measures and targets, one rule for every scorer (Kendall, Spearman, partial and
stratified Kendall with :func:`quantile_strata`, granulated Kendall, CMI, sign error):

* NaN is missing: rows (pairs) with a NaN measure or target are dropped, and the result's
  ``n_nan`` counts them;
* ``+inf`` and ``-inf`` are values, ordered above and below every finite value; two equal
  infinities tie. Every scorer here depends on the data only through that order (signs of
  differences, ranks, quantile strata), so a score with infinities equals the score with each
  ``+inf`` replaced by a finite value above every other (``-inf`` below), equal infinities by
  equal values. A measure that overflows (``log det = -inf``) thus ranks last, not at random.
  The sign error's Hoeffding weight uses the size of a target difference too: two equal
  infinite targets differ by 0 (a tie, weight 0), an infinite and a finite one by ``inf``.

The resampling helpers (:func:`bootstrap_ci`, :func:`cluster_bootstrap`,
:func:`percentile_interval`, :func:`bootstrap_pvalue`) see the scorers' *results*, which the rule
keeps finite or NaN (every score is bounded); a resample whose statistic is still not finite
(NaN, or ``+-inf`` from a caller's own statistic) has no place in an interpolated percentile and
is a failed resample: dropped, and counted (``n_failed``, or a warning).
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
