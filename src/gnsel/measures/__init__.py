"""Generalization measures: a registry of functions ``fn(ctx) -> float``, each with its source.

>>> from gnsel.measures import MeasureContext, compute_measure, get_measure, list_measures
>>> ctx = MeasureContext(model=model.eval(), init_model=init, train_data=(x, y), row=row, seed=0)
>>> compute_measure("log_prod_spectral", ctx)            # MeasureValue(value, seconds, error)
>>> get_measure("gn_full").citation, get_measure("gn_full").needs

Families (``list_measures(family)``): ``gradient`` (gn_full, gn_fc, mean_grad_sq, grad_variance,
traj_gn), ``baseline`` (val_loss, val_error, train_loss, num_params, random), ``norm``
(log_prod_spectral, log_sum_spectral, log_prod_frobenius, log_sum_frobenius, param_norm,
dist_from_init, path_norm, inverse_margin, path_norm_over_margin), ``flatness`` (pacbayes_flatness,
pacbayes_mag_flatness), ``zero_cost`` (grad_norm, snip, synflow, jacob_cov, nwot), ``spectral``
(ww_alpha, ww_alpha_weighted) and ``representation`` (db_mixup). Each module's docstring gives the
exact definitions and the deviations from the cited reference implementations.

:func:`per_epoch_measures` lists the measures training records at every epoch (their
``recorded_as``). Measuring stored runs (``load_context``, ``measure_run``) is :mod:`gnsel.zoo.measure`.
"""

# Registration order is the order of per_epoch_measures(): the gradient family, then the baselines.
from . import gradient  # noqa: F401, I001  (registration, first)
from . import baselines, flatness, norms, representation, spectral, zero_cost  # noqa: F401  (registration)
from .flatness import pacbayes_sigma
from .norms import as_matrix, frobenius_norm, path_norm_value, spectral_norm
from .registry import (
    HIGHER_MEANS,
    NEEDS,
    MeasureContext,
    MeasureError,
    MeasureSpec,
    MeasureValue,
    MissingNeedError,
    compute_measure,
    compute_measures,
    get_measure,
    list_measures,
    per_epoch_measures,
    register_measure,
    specs,
)
from .representation import davies_bouldin, early_features, labelwise_mixup_accuracy
from .spectral import PowerLawFit, analyze_layers, fit_powerlaw, layer_eigenvalues
from ._util import fold_batchnorm, margin_quantile, output_margins

__all__ = [
    "HIGHER_MEANS", "NEEDS", "MeasureContext", "MeasureError", "MeasureSpec", "MeasureValue",
    "MissingNeedError", "PowerLawFit", "analyze_layers", "as_matrix", "compute_measure", "compute_measures",
    "davies_bouldin", "early_features", "fit_powerlaw", "fold_batchnorm", "frobenius_norm", "get_measure",
    "labelwise_mixup_accuracy", "layer_eigenvalues", "list_measures", "margin_quantile", "output_margins",
    "pacbayes_sigma", "per_epoch_measures", "path_norm_value", "register_measure", "spectral_norm", "specs",
]  # fmt: skip
