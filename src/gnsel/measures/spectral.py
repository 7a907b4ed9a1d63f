"""Data-free heavy-tailed spectral measures (Martin & Mahoney; the WeightWatcher tool), compact version.

For each Linear/Conv layer the empirical spectral density (ESD) is the set of eigenvalues of W^T W, i.e.
the squared singular values of W. A conv kernel (out, in, *k) is split, as WeightWatcher does, into its
prod(k) slices W[:, :, i, j] of shape (out, in), whose eigenvalues are pooled into one ESD. A layer with
fewer than ``ww_min_evals`` (8, WeightWatcher's default) eigenvalues is skipped.

The tail of each ESD is fitted by a continuous power law p(x) ~ x^-alpha for x >= xmin with the
maximum-likelihood estimator of Clauset, Shalizi & Newman (2009), alpha = 1 + n / sum_i log(x_i / xmin),
xmin chosen among the eigenvalues to minimise the Kolmogorov-Smirnov distance between the fitted and
the empirical tail CDF (WeightWatcher's own "fast" fit: every eigenvalue but the largest is a candidate).

* ``ww_alpha`` = mean over layers of alpha (smaller: heavier tails, "better trained");
* ``ww_alpha_weighted`` = mean over layers of alpha * log10(lambda_max), lambda_max the largest eigenvalue.

Deviations from weightwatcher 0.7.7: no dependency on it (it installs from PyPI but pulls in
``powerlaw``, ``safetensors``, ``tqdm``, ``matplotlib-inline``); its default ``conv2d_norm`` scaling
of Conv2d slices by 1/sqrt(2) (which shifts log10 lambda_max by -0.30 for conv layers) is not applied;
Conv1d kernels are sliced like Conv2d ones; Embedding and attention in-projection weights are not layers
here; and the bias-corrected small-sample fit WeightWatcher uses for ESDs of fewer than 20 eigenvalues
is not reproduced (the standard fit is used for all sizes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ._util import model_of, weight_layers
from .registry import MeasureContext, MeasureError, register_measure

MARTIN = (
    "Martin, Peng & Mahoney 2021, Predicting trends in the quality of state-of-the-art neural networks without "
    "access to training or testing data; Clauset, Shalizi & Newman 2009, Power-law distributions in empirical data"
)
MIN_EVALS = 8


@dataclass(frozen=True)
class PowerLawFit:
    """A fitted tail: exponent ``alpha``, lower cutoff ``xmin``, KS distance ``D``, tail size ``n_tail``."""

    alpha: float
    xmin: float
    D: float
    n_tail: int


def fit_powerlaw(values: np.ndarray | Tensor) -> PowerLawFit:
    """Continuous power-law MLE with xmin chosen by minimum KS distance (Clauset et al. 2009).

    ``values`` must hold at least 2 positive numbers (non-positive ones are dropped).
    """
    x = np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values, dtype=np.float64).ravel()
    x = np.sort(x[np.isfinite(x) & (x > 0)])
    n_all = len(x)
    if n_all < 2:
        raise MeasureError(f"a power-law fit needs at least 2 positive values, got {n_all}")
    logs = np.log(x)
    tail_log_sums = np.cumsum(logs[::-1])[::-1]  # sum_{j >= i} log x_j
    best = PowerLawFit(math.nan, math.nan, math.inf, 0)
    for i in range(n_all - 1):
        n = n_all - i
        denom = tail_log_sums[i] - n * logs[i]
        if not denom > 0:
            continue
        alpha = 1.0 + n / denom
        tail = x[i:]
        cdf_fit = 1.0 - (tail / x[i]) ** (1.0 - alpha)
        cdf_emp = np.arange(n, dtype=np.float64) / n
        d = float(np.max(np.abs(cdf_fit - cdf_emp)))
        if d < best.D:
            best = PowerLawFit(float(alpha), float(x[i]), d, n)
    if not math.isfinite(best.alpha):
        raise MeasureError("the power-law fit failed: the values are all equal")
    return best


def layer_eigenvalues(weight: Tensor) -> np.ndarray:
    """Eigenvalues of W^T W for a Linear weight, pooled over the (out, in) slices of a conv kernel."""
    w = weight.detach().double()
    if w.dim() == 2:
        mats = w.unsqueeze(0)
    elif w.dim() > 2:
        mats = w.reshape(w.shape[0], w.shape[1], -1).permute(2, 0, 1)  # (prod(k), out, in)
    else:
        raise ValueError(f"a layer weight must have at least 2 dimensions, got shape {tuple(w.shape)}")
    sv = torch.linalg.svdvals(mats)
    return np.sort(sv.pow(2).reshape(-1).cpu().numpy())


@dataclass(frozen=True)
class LayerESD:
    """One layer's ESD summary: its name, eigenvalue count, lambda_max and power-law fit."""

    name: str
    num_evals: int
    lambda_max: float
    fit: PowerLawFit


def analyze_layers(model: torch.nn.Module, min_evals: int = MIN_EVALS) -> list[LayerESD]:
    """Power-law fits of the ESD of every Linear/Conv layer with at least ``min_evals`` eigenvalues."""
    out = []
    for name, layer in weight_layers(model):
        evals = layer_eigenvalues(layer.weight)
        evals = evals[evals > 0]
        if len(evals) < min_evals:
            continue
        out.append(LayerESD(name, len(evals), float(evals.max()), fit_powerlaw(evals)))
    if not out:
        raise MeasureError(f"no Linear/Conv layer has at least {min_evals} non-zero eigenvalues")
    return out


def _layers(ctx: MeasureContext) -> list[LayerESD]:
    return analyze_layers(model_of(ctx), int(ctx.option("ww_min_evals", MIN_EVALS)))


@register_measure("ww_alpha", citation=MARTIN, needs={"weights"}, higher_means="higher test error", family="spectral")
def ww_alpha(ctx: MeasureContext) -> float:
    """Mean over layers of the power-law exponent alpha of the ESD of W^T W."""
    layers = _layers(ctx)
    return float(np.mean([l.fit.alpha for l in layers]))


@register_measure(
    "ww_alpha_weighted", citation=MARTIN, needs={"weights"}, higher_means="higher test error", family="spectral"
)
def ww_alpha_weighted(ctx: MeasureContext) -> float:
    """Mean over layers of alpha * log10(lambda_max)."""
    layers = _layers(ctx)
    return float(np.mean([l.fit.alpha * math.log10(l.lambda_max) for l in layers]))
