"""Gradient-norm family: GN of the final model on the probe set, and the trajectory GN stored by training.

Li, Luo & Qiao (2020) bound the generalization error of noisy gradient methods (SGLD and relatives) by
a data-dependent sum of squared gradient norms along the trajectory; gnsel studies whether the GN of
the trained model (and the recorded trajectory sum) predicts the gap of ordinary SGD-trained models.

* ``gn_full`` = mean_i ||grad_theta l_i||^2 over the probe examples, all trainable parameters
  (exactly :func:`gnsel.gradient_norm`, eval mode, cross-entropy, batches of ``gn_batch_size`` = 256);
* ``gn_fc`` = the same over the classifier head only (``scope="fc"``);
* ``mean_grad_sq`` = ||mean_i grad l_i||^2 (the squared norm of the full-batch probe gradient);
* ``grad_variance`` = ``gn_full - mean_grad_sq`` = mean_i ||grad l_i - mean grad||^2;
* ``traj_gn`` = sqrt(S) / n with S = sum_t lr_t^2 mean_{i in B_t} ||grad l_i(theta_t)||^2, the row's
  ``traj_gn``, and n = ``n_train``: the data-dependent term of Li, Luo & Qiao's bound for SGLD,
  (C/n) sqrt(sum_t (lr_t^2 / sigma_t^2) g(t)), with the noise sigma_t taken constant (plain SGD injects
  none; a constant scales every run alike). The square root is monotone, so within one training-set size
  the ranking is that of S; the 1/n (outside the root) makes zoos of different sizes comparable.

Training records all five at every epoch (``recorded_as``: the stored columns ``gn_full``, ``gn_fc``,
``gn_full_mean_grad_sq``, ``traj_gn`` and ``n_train``).
"""

from __future__ import annotations

import math

from ..gradnorm import GN_BATCH_SIZE, GradNorm, gradient_norm
from ._util import device_of, model_of, per_n
from .registry import MeasureContext, MissingNeedError, register_measure

CITATION = (
    "Li, Luo & Qiao 2020, On Generalization Error Bounds of Noisy Gradient Methods for Non-Convex Learning"
)


def _gn(ctx: MeasureContext, scope: str) -> GradNorm:
    model = model_of(ctx)
    if ctx.train_data is None:
        raise MissingNeedError("ctx.train_data is None")
    return gradient_norm(
        model, ctx.train_data, scope=scope, batch_size=int(ctx.option("gn_batch_size", GN_BATCH_SIZE)),
        device=device_of(model),
    )  # fmt: skip


@register_measure(
    "gn_full", citation=CITATION, needs={"weights", "data"}, higher_means="larger gap", family="gradient",
    recorded_as=lambda rows: rows["gn_full"],
)  # fmt: skip
def gn_full(ctx: MeasureContext) -> float:
    """GN: mean per-example squared gradient norm over all trainable parameters on the probe set."""
    return _gn(ctx, "full").mean_sq


@register_measure(
    "gn_fc", citation=CITATION, needs={"weights", "data"}, higher_means="larger gap", family="gradient",
    recorded_as=lambda rows: rows["gn_fc"],
)  # fmt: skip
def gn_fc(ctx: MeasureContext) -> float:
    """GN restricted to the classifier head (the last nn.Linear)."""
    return _gn(ctx, "fc").mean_sq


@register_measure(
    "mean_grad_sq", citation=CITATION, needs={"weights", "data"}, higher_means="larger gap", family="gradient",
    recorded_as=lambda rows: rows["gn_full_mean_grad_sq"],
)  # fmt: skip
def mean_grad_sq(ctx: MeasureContext) -> float:
    """Squared norm of the mean (full-batch) probe gradient, all trainable parameters."""
    return _gn(ctx, "full").mean_grad_sq


@register_measure(
    "grad_variance", citation=CITATION, needs={"weights", "data"}, higher_means="larger gap", family="gradient",
    recorded_as=lambda rows: rows["gn_full"] - rows["gn_full_mean_grad_sq"],
)  # fmt: skip
def grad_variance(ctx: MeasureContext) -> float:
    """Gradient variance mean_i ||g_i - mean g||^2 = GN - ||mean g||^2 on the probe set."""
    return _gn(ctx, "full").variance


@register_measure(
    "traj_gn", citation=CITATION, needs={"trajectory"}, higher_means="larger gap", family="gradient",
    recorded_as=lambda rows: per_n(rows, rows["traj_gn"] ** 0.5),
)  # fmt: skip
def traj_gn(ctx: MeasureContext) -> float:
    """Trajectory GN as the bound has it: sqrt(sum_t lr_t^2 * mean-batch GN) / n, recorded during training."""
    value = float(ctx.row["traj_gn"])
    n = ctx.row.get("n_train")
    if not math.isfinite(value) or n is None or not math.isfinite(float(n)):
        raise MissingNeedError("ctx.row has no finite 'traj_gn' and 'n_train'")
    return math.sqrt(value) / float(n)
