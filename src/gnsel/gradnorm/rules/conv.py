"""Rule for ``nn.Conv1d``/``Conv2d``/``Conv3d``: the fastest of four exact ways, timed once per layer shape."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..contrib import Contribution, Dense, Outer
from ..errors import UnsupportedLayerError
from .autotune import autotuned
from .registry import register_rule


def _unfold(x: Tensor, module: nn.modules.conv._ConvNd) -> Tensor:
    """Patches of ``x`` as ``(B, T, C*prod(k))``, C outermost, matching the weight layout."""
    d = x.dim() - 2
    pad = module._reversed_padding_repeated_twice
    if any(pad):
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        x = F.pad(x, pad, mode=mode)
    k, s, dil = module.kernel_size, module.stride, module.dilation
    b, c = x.shape[:2]
    if all(v == 1 for v in k) and all(v == 1 for v in s):
        return x.flatten(2).transpose(1, 2)
    if d == 2:
        cols = F.unfold(x, k, dilation=dil, stride=s)  # (B, C*k0*k1, T)
        return cols.transpose(1, 2)
    for i in range(d):
        span = dil[i] * (k[i] - 1) + 1
        x = x.unfold(2 + i, span, s[i])
        if dil[i] > 1:
            x = x[..., :: dil[i]]
    # x: (B, C, O_1..O_d, k_1..k_d)
    perm = [0] + list(range(2, 2 + d)) + [1] + list(range(2 + d, 2 + 2 * d))
    x = x.permute(*perm)
    t = math.prod(x.shape[1 : 1 + d])
    return x.reshape(b, t, math.prod(x.shape[1 + d :]))


def _conv_per_example_weight_grads(module: nn.modules.conv._ConvNd, x: Tensor, g: Tensor) -> Tensor:
    """Per-example weight gradients ``(n, *weight.shape)`` as one grouped convolution backward
    (Rochette et al. 2019): the examples of the chunk become groups of a single-example conv."""
    n, cin = x.shape[:2]
    d = x.dim() - 2
    if isinstance(module.padding, str) or module.padding_mode != "zeros":
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        pad = module._reversed_padding_repeated_twice
        x = F.pad(x, pad, mode=mode) if any(pad) else x
        padding = [0] * d
    else:
        padding = list(module.padding)
    w = module.weight
    cout = w.shape[0]
    # Only the weight's shape matters for the weight gradient: an uninitialised template, no copies.
    template = w.new_empty((n * cout, *w.shape[1:]))
    grads = torch.ops.aten.convolution_backward(
        g.reshape(1, n * cout, *g.shape[2:]),
        x.reshape(1, n * cin, *x.shape[2:]),
        template,
        None,
        list(module.stride),
        padding,
        list(module.dilation),
        False,
        [0] * d,
        n * module.groups,
        [False, True, False],
    )[1]
    return grads.reshape(n, w.numel())


GHOST_MAX_RATIO = 16  # try the ghost norm only where its flops are at most this multiple of the materialised product's


@register_rule(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def conv_rule(module: nn.modules.conv._ConvNd, inputs: tuple, grad: Tensor, names: list[str]) -> dict[str, Contribution]:
    """Per group, ``dW_b = G_b^T A_b`` over output positions, by the fastest of four exact ways for
    this layer and shape (timed once): the ghost norm or the materialised product on unfolded
    patches, or per-example weight gradients from a grouped convolution backward (Rochette et al.
    2019) over 16 examples at a time or the whole batch. Which wins depends on map size, channels
    and hardware (unfolding large maps costs more than the convolution; grouped kernels slow down
    with many channels per group)."""
    x = inputs[0].detach()
    if x.dim() == grad.dim() - 1:  # unbatched call
        raise UnsupportedLayerError(f"{type(module).__name__} called without a batch dimension")
    b = x.shape[0]
    groups = module.groups
    cout = grad.shape[1]
    g_flat = grad.flatten(2)  # (B, Cout, T)
    t = g_flat.shape[2]
    if b == 0:  # an empty batch: empty norms, without timing candidates on nothing (a grouped conv of 0 groups fails)
        empty = {"weight": Dense(grad.new_zeros(0, module.weight.numel())), "bias": Dense(g_flat.sum(2))}
        return {n: c for n, c in empty.items() if n in names}
    p = cout // groups
    q = (module.in_channels // groups) * math.prod(module.kernel_size)
    out: dict[str, Contribution] = {}
    if "weight" in names:

        def left(s: int, e: int) -> Tensor:
            return g_flat[s:e].reshape(e - s, groups, p, t).transpose(2, 3).reshape((e - s) * groups, t, p)

        def right(s: int, e: int) -> Tensor:
            cols = _unfold(x[s:e], module)  # (n, T, C*K)
            n = e - s
            return cols.reshape(n, t, groups, q).transpose(1, 2).reshape(n * groups, t, q)

        def per_example(s: int, e: int) -> Tensor:
            return _conv_per_example_weight_grads(module, x[s:e], grad[s:e])

        numel = module.weight.numel()
        candidates = {
            "ghost": lambda: Outer(left, right, b, groups, t, p, q, ghost=True),
            "unfold": lambda: Outer(left, right, b, groups, t, p, q, ghost=False),
            "grouped16": lambda: Dense(per_example, b, numel, chunk=16),
            "grouped": lambda: Dense(per_example, b, numel, chunk=b),
        }
        layer = (type(module), module.in_channels, module.out_channels, module.kernel_size, module.stride,
                 module.padding, module.dilation, groups, module.padding_mode)  # fmt: skip
        if t * (p + q) > GHOST_MAX_RATIO * p * q:
            # the ghost norm's T x T Gram matrices cost t^2 (p + q) per group against t p q materialised: on large
            # maps with few channels per group (depthwise convs) it is orders of magnitude slower, and timing it
            # once took minutes (MobileNetV2 at 32x32 on the CPU); it cannot win there, so it is not tried
            del candidates["ghost"]
        out["weight"] = autotuned((layer, tuple(x.shape), x.dtype, x.device), candidates)
    if "bias" in names:
        out["bias"] = Dense(g_flat.sum(2))
    return out
