"""Rules for the normalisation layers: BatchNorm (eval mode, or batch statistics as constants),
LayerNorm, GroupNorm, RMSNorm (where torch has it)."""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..contrib import Contribution, Dense
from ..errors import UnsupportedLayerError
from .registry import register_rule

# How BatchNorm in train mode is treated: "error" (per-example gradients undefined) or "constant"
# (batch statistics taken as constants, for trajectory GN during training). A process-wide setting,
# not a context variable: on CUDA the backward hooks run on autograd's own device threads.
_BATCH_STATS = ["error"]


@contextlib.contextmanager
def batch_statistics(mode: str) -> Iterator[None]:
    """Within this context, BatchNorm on batch statistics is an ``"error"`` or taken as ``"constant"``."""
    previous = _BATCH_STATS[0]
    _BATCH_STATS[0] = mode
    try:
        yield
    finally:
        _BATCH_STATS[0] = previous


def _affine(names: list[str], g: Tensor, xhat: Tensor, reduce_dims: tuple[int, ...]) -> dict[str, Contribution]:
    out: dict[str, Contribution] = {}
    if "weight" in names:
        out["weight"] = Dense((g * xhat).sum(reduce_dims) if reduce_dims else g * xhat)
    if "bias" in names:
        out["bias"] = Dense(g.sum(reduce_dims) if reduce_dims else g)
    return out


@register_rule(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
def batchnorm_rule(module: nn.modules.batchnorm._BatchNorm, inputs: tuple, grad: Tensor, names: list[str]) -> dict[str, Contribution]:
    """Eval-mode BatchNorm is per-channel affine in x: ``dw = sum g * xhat``, ``db = sum g``."""
    x = inputs[0].detach()
    shape = [1, -1] + [1] * (x.dim() - 2)
    batch_stats = module.training or module.running_mean is None or module.running_var is None
    if batch_stats and _BATCH_STATS[0] == "constant":
        dims = [0] + list(range(2, x.dim()))
        var, mean = torch.var_mean(x, dim=dims, keepdim=True, correction=0)
        xhat = (x - mean) * torch.rsqrt(var + module.eps)
        return _affine(names, grad, xhat, tuple(range(2, x.dim())))
    if batch_stats:
        raise UnsupportedLayerError(
            f"{type(module).__name__} normalises with batch statistics (train mode or "
            "track_running_stats=False), which couples the examples of a batch: per-example "
            "gradients are undefined. Measure in eval mode with running statistics."
        )
    # dw_bc = rsqrt(var_c + eps) * sum_t g_bct (x_bct - mean_c): the scale applied once per channel
    b, c = x.shape[:2]
    t = math.prod(x.shape[2:])  # explicit sizes: an empty batch makes reshape(b, c, -1) ambiguous
    g = grad.reshape(b, c, t)
    out: dict[str, Contribution] = {}
    if "weight" in names:
        dots = (g * (x - module.running_mean.view(shape)).reshape(b, c, t)).sum(2)
        out["weight"] = Dense(dots * torch.rsqrt(module.running_var + module.eps))
    if "bias" in names:
        out["bias"] = Dense(g.sum(2))
    return out


@register_rule(nn.LayerNorm)
def layernorm_rule(module: nn.LayerNorm, inputs: tuple, grad: Tensor, names: list[str]) -> dict[str, Contribution]:
    """``dw_b = sum over leading positions of g * xhat`` (normalised over the trailing dims)."""
    x = inputs[0].detach()
    k = len(module.normalized_shape)
    xhat = F.layer_norm(x, module.normalized_shape, None, None, module.eps)
    return _affine(names, grad, xhat, tuple(range(1, x.dim() - k)))


@register_rule(nn.GroupNorm)
def groupnorm_rule(module: nn.GroupNorm, inputs: tuple, grad: Tensor, names: list[str]) -> dict[str, Contribution]:
    """Per-sample group statistics, per-channel affine: ``dw_bc = sum_spatial g * xhat``."""
    x = inputs[0].detach()
    xhat = F.group_norm(x, module.num_groups, None, None, module.eps)
    return _affine(names, grad, xhat, tuple(range(2, x.dim())))


if hasattr(nn, "RMSNorm"):

    @register_rule(nn.RMSNorm)
    def rmsnorm_rule(module: nn.RMSNorm, inputs: tuple, grad: Tensor, names: list[str]) -> dict[str, Contribution]:
        """``y = x / rms(x) * w``: ``dw_b = sum over leading positions of g * x / rms(x)``."""
        x = inputs[0].detach()
        k = len(module.normalized_shape)
        dims = tuple(range(x.dim() - k, x.dim()))
        eps = module.eps if module.eps is not None else torch.finfo(x.dtype).eps
        xhat = x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + eps)
        return _affine(names, grad, xhat, tuple(range(1, x.dim() - k)))
