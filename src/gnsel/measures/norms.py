"""Norm- and margin-based measures, as defined in appendix C of Jiang et al. (2020).

Notation: ``W_1..W_d`` are the weights of the network's ``d`` Linear/Conv layers (biases and
normalisation parameters excluded; each BatchNorm is first folded into the layer before it using its
running statistics, as the reference implementation of Dziugaite et al. (2020) does); ``gamma`` is the
10th percentile of the output margin ``f(x)[y] - max_{j != y} f(x)[j]`` over the probe training data.

* ``log_prod_spectral``  = log prod_i ||W_i||_2^2                  (Jiang #32, "log-prod-of-spec")
* ``log_sum_spectral``   = log( d * (prod_i ||W_i||_2^2)^(1/d) )    (Jiang #35, "log-sum-of-spec": the
  sum of squared spectral norms after the norm-balancing rescaling of the layers, by AM-GM)
* ``log_prod_frobenius`` = log prod_i ||W_i||_F^2                  (Jiang #37)
* ``log_sum_frobenius``  = log( d * (prod_i ||W_i||_F^2)^(1/d) )    (Jiang #39)
* ``param_norm``         = sum_i ||W_i||_F^2                       (Jiang #42)
* ``dist_from_init``     = ||theta - theta_0||_2 over *all* trainable parameters (Jiang #40 is the
  square, over the layer weights only; the square root is monotone, so rankings agree)
* ``path_norm``          = sum_k f_{w^2}(1)[k]: the summed outputs, on an all-ones input, of the
  BN-folded network with every parameter squared (Jiang #44; ReLU/LeakyReLU networks only)
* ``inverse_margin``     = 1 / gamma^2                             (Jiang #22)
* ``path_norm_over_margin`` = path_norm / gamma^2                  (Jiang #43)

Conv layers: the spectral norm is that of the kernel reshaped to a matrix ``(out_channels,
in_channels/groups * prod(kernel))`` -- a cheap proxy (Yoshida & Miyato 2017), not the operator norm of
the convolution (Sedghi et al. 2019), which depends on the input size and needs an FFT per layer.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ._util import (
    check_layers,
    fold_batchnorm,
    layer_weights,
    margin_quantile,
    model_of,
    probe,
    require_float_inputs,
    trainable_params,
)
from .registry import MeasureContext, MeasureError, MissingNeedError, register_measure

JIANG = "Jiang, Neyshabur, Mobahi, Krishnan & Bengio 2020, Fantastic Generalization Measures and Where to Find Them"


def as_matrix(weight: Tensor) -> Tensor:
    """A layer weight as a matrix: Linear ``(out, in)`` as is, a conv kernel reshaped to ``(out, -1)``."""
    if weight.dim() < 2:
        raise ValueError(f"a layer weight must have at least 2 dimensions, got shape {tuple(weight.shape)}")
    return weight.reshape(weight.shape[0], -1)


def spectral_norm(weight: Tensor) -> float:
    """Largest singular value of ``weight`` (conv kernels reshaped by :func:`as_matrix`), in float64."""
    return float(torch.linalg.matrix_norm(as_matrix(weight.detach()).double(), ord=2))


def frobenius_norm(weight: Tensor) -> float:
    """Frobenius norm of ``weight`` (equal for the kernel and its reshaped matrix), in float64."""
    return float(torch.linalg.vector_norm(weight.detach().double()))


def _log_prod(norms: list[float]) -> float:
    if any(not n > 0 for n in norms):
        raise MeasureError("a layer has zero norm: the log of the product is -inf")
    return float(sum(2.0 * math.log(n) for n in norms))


def log_sum_from_log_prod(log_prod: float, depth: int) -> float:
    """``log(d * exp(log_prod / d))`` = log of the balanced sum of the d squared norms."""
    return math.log(depth) + log_prod / depth


@register_measure("log_prod_spectral", citation=JIANG, needs={"weights"}, higher_means="larger gap", family="norm")
def log_prod_spectral(ctx: MeasureContext) -> float:
    """log prod_i ||W_i||_2^2 over the BN-folded Linear/Conv weights (conv kernels reshaped)."""
    return _log_prod([spectral_norm(w) for w in layer_weights(model_of(ctx), "log_prod_spectral")])


@register_measure("log_sum_spectral", citation=JIANG, needs={"weights"}, higher_means="larger gap", family="norm")
def log_sum_spectral(ctx: MeasureContext) -> float:
    """log(d (prod_i ||W_i||_2^2)^(1/d)): log of the norm-balanced sum of squared spectral norms."""
    ws = layer_weights(model_of(ctx), "log_sum_spectral")
    return log_sum_from_log_prod(_log_prod([spectral_norm(w) for w in ws]), len(ws))


@register_measure("log_prod_frobenius", citation=JIANG, needs={"weights"}, higher_means="larger gap", family="norm")
def log_prod_frobenius(ctx: MeasureContext) -> float:
    """log prod_i ||W_i||_F^2 over the BN-folded Linear/Conv weights."""
    return _log_prod([frobenius_norm(w) for w in layer_weights(model_of(ctx), "log_prod_frobenius")])


@register_measure("log_sum_frobenius", citation=JIANG, needs={"weights"}, higher_means="larger gap", family="norm")
def log_sum_frobenius(ctx: MeasureContext) -> float:
    """log(d (prod_i ||W_i||_F^2)^(1/d)): log of the norm-balanced sum of squared Frobenius norms."""
    ws = layer_weights(model_of(ctx), "log_sum_frobenius")
    return log_sum_from_log_prod(_log_prod([frobenius_norm(w) for w in ws]), len(ws))


@register_measure("param_norm", citation=JIANG, needs={"weights"}, higher_means="larger gap", family="norm")
def param_norm(ctx: MeasureContext) -> float:
    """sum_i ||W_i||_F^2 over the BN-folded Linear/Conv weights (Jiang #42)."""
    return float(sum(frobenius_norm(w) ** 2 for w in layer_weights(model_of(ctx), "param_norm")))


def parameter_distance(model: nn.Module, init_model: nn.Module) -> float:
    """||theta - theta_0||_2 over all trainable parameters, matched by name (shapes must agree)."""
    now, then = trainable_params(model), dict(init_model.named_parameters())
    missing = [n for n in now if n not in then or then[n].shape != now[n].shape]
    if missing:
        raise MeasureError(f"the initial model does not match the model: parameters {missing[:5]} differ")
    total = torch.zeros((), dtype=torch.float64)
    for n, p in now.items():
        total += (p.detach().double() - then[n].detach().to(p.device).double()).pow(2).sum().cpu()
    return float(total.sqrt())


@register_measure(
    "dist_from_init", citation=JIANG, needs={"weights", "init"}, higher_means="larger gap", family="norm"
)
def dist_from_init(ctx: MeasureContext) -> float:
    """||theta - theta_0||_2: Frobenius distance of all trainable parameters to their initial values."""
    if ctx.init_model is None:
        raise MissingNeedError("ctx.init_model is None")
    return parameter_distance(model_of(ctx), ctx.init_model)


_PATH_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU)


@torch.no_grad()
def path_norm_value(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """sum_k f_{w^2}(1)[k]: outputs of the BN-folded model with squared parameters on an all-ones input.

    Every parameter (weights, biases, the shift left by a folded BN) is squared, so every hidden value
    is non-negative and each ReLU passes it through: the result is the sum over input-output paths of
    the products of squared weights (biases count as paths from a constant input).
    """
    check_layers(model, "path_norm", activations=_PATH_ACTIVATIONS)
    net = fold_batchnorm(model).double()
    for p in net.parameters():
        p.pow_(2)
    for m in net.modules():
        if not isinstance(m, _BatchNorm):
            continue
        # every BN is folded to weight 1 and running var 1 - eps; set the var again in float64, so that the
        # BN's scale is 1 to float64 rounding rather than float32's
        m.running_var.fill_(1.0 - m.eps)
        if m.bias is None:
            # without affine parameters the folded shift lives in the running mean (BN(x) = x - running_mean,
            # see fold_batchnorm), a buffer the loop above does not reach: square it too, BN(x) = x + shift^2,
            # as for an affine BN, whose bias holds the shift
            m.running_mean.copy_(-m.running_mean.pow(2))
    dev = next(net.parameters()).device
    out = net(torch.ones((1, *input_shape), dtype=torch.float64, device=dev))
    return float(out.sum())


def _path_norm(ctx: MeasureContext) -> float:
    x, _ = probe(ctx, 1)
    require_float_inputs(x, "path_norm")
    return path_norm_value(model_of(ctx), tuple(x.shape[1:]))


@register_measure("path_norm", citation=JIANG, needs={"weights", "data"}, higher_means="larger gap", family="norm")
def path_norm(ctx: MeasureContext) -> float:
    """Path norm sum_k f_{w^2}(1)[k] (ReLU networks; the probe data only gives the input shape)."""
    return _path_norm(ctx)


def _gamma(ctx: MeasureContext) -> float:
    x, y = probe(ctx)
    return margin_quantile(model_of(ctx), x, y, float(ctx.option("margin_quantile", 0.1)))


@register_measure(
    "inverse_margin", citation=JIANG, needs={"weights", "data"}, higher_means="larger gap", family="norm"
)
def inverse_margin(ctx: MeasureContext) -> float:
    """1 / gamma^2, gamma the 10th percentile of the output margin on the probe data (Jiang #22)."""
    return 1.0 / _gamma(ctx) ** 2


@register_measure(
    "path_norm_over_margin", citation=JIANG, needs={"weights", "data"}, higher_means="larger gap", family="norm"
)
def path_norm_over_margin(ctx: MeasureContext) -> float:
    """path_norm / gamma^2 (Jiang #43)."""
    return _path_norm(ctx) / _gamma(ctx) ** 2
