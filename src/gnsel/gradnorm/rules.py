"""Registry of per-layer rules, in the spirit of Opacus' grad samplers.

A rule takes a layer, the input it saw in the forward pass, the gradient of the loss sum with
respect to its output, and the names of its own parameters that are in scope; it returns, for each
of those parameters, a description of the per-example gradient (see ``contrib``). Rules never form
parameter gradients through autograd, which is what keeps exact GN at about one training step.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .contrib import Contribution, Dense, Outer, Precomputed, chunk_size
from .errors import UnsupportedLayerError

Rule = Callable[[nn.Module, tuple, Tensor, list[str]], dict[str, Contribution]]

_RULES: dict[type[nn.Module], Rule] = {}

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


def register_rule(*types: type[nn.Module]) -> Callable[[Rule], Rule]:
    """Register ``fn`` as the per-example gradient rule for modules of the given types."""

    def deco(fn: Rule) -> Rule:
        for t in types:
            _RULES[t] = fn
        return fn

    return deco


def find_rule(module: nn.Module) -> Rule | None:
    """The rule for ``module``'s exact type, else for its nearest registered base class."""
    for klass in type(module).__mro__:
        if klass in _RULES:
            return _RULES[klass]
        if klass is nn.Module:
            break
    return None


_CHOICES: dict[tuple, str] = {}


def autotuned(key: tuple, candidates: dict[str, Callable[[], Contribution]]) -> Contribution:
    """The contribution from the fastest of several exact ways, timed once per layer and shape.

    On the first call every candidate computes its squared norms (all exact, so the result does not
    depend on the choice) and the fastest is remembered for ``key``; later calls use it alone.
    """
    name = _CHOICES.get(key)
    if name is not None:
        return candidates[name]()
    best = None
    for cand, make in candidates.items():
        contrib = make()
        seconds = float("inf")
        for _ in range(2):  # the first run of a kernel may pay for its set-up
            if key[-1].type == "cuda":
                torch.cuda.synchronize(key[-1])
            t0 = time.perf_counter()
            values = contrib.sq_norms()
            if key[-1].type == "cuda":
                torch.cuda.synchronize(key[-1])
            seconds = min(seconds, time.perf_counter() - t0)
        if best is None or seconds < best[0]:
            best = (seconds, cand, Precomputed(values, contrib))
    _CHOICES[key] = best[1]
    return best[2]


def registered_types() -> list[type[nn.Module]]:
    """Module types that have a rule (others use the ``torch.func`` fallback)."""
    return list(_RULES)


# --------------------------------------------------------------------------------------- Linear
@register_rule(nn.Linear)
def linear_rule(module: nn.Linear, inputs: tuple, grad: Tensor, names: list[str]) -> dict[str, Contribution]:
    """``dW_b = sum_t g_bt a_bt^T``: product of norms for 2-D input, ghost or materialised otherwise."""
    a = inputs[0].detach()
    b = a.shape[0]
    if a.dim() == 2:  # the common case: two row norms, no chunking
        gg = torch.linalg.vector_norm(grad, dim=1).square()
        out2: dict[str, Contribution] = {}
        if "weight" in names:
            aa = torch.linalg.vector_norm(a, dim=1).square()
            out2["weight"] = Precomputed(gg * aa, Outer(grad.unsqueeze(1), a.unsqueeze(1), b, 1, 1, grad.shape[1], a.shape[1]))
        if "bias" in names:
            out2["bias"] = Precomputed(gg, Dense(grad))
        return out2
    a = a.reshape(b, -1, a.shape[-1])
    g = grad.reshape(b, -1, grad.shape[-1])
    out: dict[str, Contribution] = {}
    if "weight" in names:
        out["weight"] = Outer(g, a, b, 1, a.shape[1], g.shape[2], a.shape[2])
    if "bias" in names:
        out["bias"] = Dense(g.sum(1))
    return out


# ---------------------------------------------------------------------------------- Convolution
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
        return x.reshape(b, c, -1).transpose(1, 2)
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
    return x.reshape(b, t, -1)


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
    return grads.reshape(n, -1)


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
    g_flat = grad.reshape(b, cout, -1)  # (B, Cout, T)
    t = g_flat.shape[2]
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
        out["weight"] = autotuned((layer, tuple(x.shape), x.dtype, x.device), candidates)
    if "bias" in names:
        out["bias"] = Dense(g_flat.sum(2))
    return out


# -------------------------------------------------------------------------------- Normalisation
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
    g = grad.reshape(b, c, -1)
    out: dict[str, Contribution] = {}
    if "weight" in names:
        dots = (g * (x - module.running_mean.view(shape)).reshape(b, c, -1)).sum(2)
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


# ------------------------------------------------------------------------------------ Embedding
@register_rule(nn.Embedding)
def embedding_rule(module: nn.Embedding, inputs: tuple, grad: Tensor, names: list[str]) -> dict[str, Contribution]:
    """``dW_b = onehot(idx_b)^T g_b``: ghost ``sum_{t,s} [idx_t = idx_s] g_t.g_s`` or a scatter."""
    if module.scale_grad_by_freq:
        raise UnsupportedLayerError(
            "nn.Embedding(scale_grad_by_freq=True) scales gradients by token counts of the whole "
            "batch: per-example gradients are undefined"
        )
    if "weight" not in names:
        return {}
    idx = inputs[0].detach()
    b = idx.shape[0]
    idx = idx.reshape(b, -1)
    g = grad.reshape(b, idx.shape[1], -1)
    if module.padding_idx is not None:
        g = g * (idx != module.padding_idx).unsqueeze(-1).to(g.dtype)
    v, d = module.weight.shape
    return {"weight": EmbeddingGrad(idx, g, v, d)}


class EmbeddingGrad(Outer):
    """Outer form with a one-hot ``L`` that is never built unless uses must be combined."""

    def __init__(self, idx: Tensor, g: Tensor, v: int, d: int):
        self.idx = idx

        def left(s: int, e: int) -> Tensor:
            return F.one_hot(idx[s:e], v).to(g.dtype)

        super().__init__(left, g, idx.shape[0], 1, idx.shape[1], v, d)

    def sq_norms(self) -> Tensor:
        b, t = self.idx.shape
        d, v = self.q, self.p
        g = self.R
        if t * t <= v:  # ghost over positions
            step = chunk_size(t * (t + d), b)
            out = []
            for s in range(0, b, step):
                i, gg = self.idx[s : s + step], g[s : s + step]
                same = (i.unsqueeze(2) == i.unsqueeze(1)).to(gg.dtype)
                out.append((same * torch.bmm(gg, gg.transpose(1, 2))).sum((1, 2)))
            return torch.cat(out)
        # scatter into (n, V, D) a chunk of examples at a time
        step = chunk_size(v * d, b)
        out = []
        for s in range(0, b, step):
            i, gg = self.idx[s : s + step], g[s : s + step]
            n = i.shape[0]
            acc = gg.new_zeros(n * v, d)
            flat = (i + torch.arange(n, device=i.device).unsqueeze(1) * v).reshape(-1)
            acc.index_add_(0, flat, gg.reshape(-1, d))
            out.append(acc.view(n, -1).pow(2).sum(1))
        return torch.cat(out)
