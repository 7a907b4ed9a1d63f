"""Shared helpers: recorded row columns, probe data, eval-mode forward passes, weight layers and BatchNorm folding, margins."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..gradnorm.engine import eval_mode
from .registry import MeasureContext, MeasureError, MissingNeedError

#: The layers whose weights are "the layers W_1..W_d" of the norm-based measures.
WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

EVAL_BATCH = 1024

# Leaf modules that may sit between a layer and its BatchNorm without changing what folding means.
_TRANSPARENT: tuple[type[nn.Module], ...] = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def row_column(rows: Any, key: str) -> Any:
    """Column ``key`` of epoch rows (a frame or one row mapping), NaN where the rows do not record it."""
    value = rows.get(key) if hasattr(rows, "get") else None
    return math.nan if value is None else value


def per_n(rows: Any, value: Any) -> Any:
    """``value / rows["n_train"]``: the 1/n of Li, Luo & Qiao's bound (NaN where ``n_train`` is not recorded)."""
    return value / row_column(rows, "n_train")


def model_of(ctx: MeasureContext) -> nn.Module:
    if ctx.model is None:
        raise MissingNeedError("ctx.model is None")
    return ctx.model


def device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def probe(ctx: MeasureContext, n: int | None = None) -> tuple[Tensor, Tensor]:
    """The probe ``(inputs, targets)`` (the first ``n`` if given), on the device of ``ctx.model``."""
    if ctx.train_data is None:
        raise MissingNeedError("ctx.train_data is None")
    x, y = ctx.train_data
    if n is not None:
        x, y = x[:n], y[:n]
    dev = device_of(ctx.model) if ctx.model is not None else torch.device("cpu")
    return x.to(dev), y.to(dev)


def require_float_inputs(x: Tensor, what: str) -> None:
    if not x.is_floating_point():
        raise MeasureError(f"{what} needs real-valued inputs, but the inputs are {x.dtype} (e.g. tokens)")


@torch.no_grad()
def logits(model: nn.Module, x: Tensor, batch_size: int = EVAL_BATCH) -> Tensor:
    """``model(x)`` in eval mode, in batches, without gradients."""
    with eval_mode(model):
        return torch.cat([model(x[s : s + batch_size]) for s in range(0, len(x), batch_size)])


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = EVAL_BATCH) -> float:
    """Fraction of ``x`` that ``model`` (eval mode) classifies as ``y``."""
    out = logits(model, x, batch_size)
    return float((out.argmax(1) == y).double().mean())


def trainable_params(model: nn.Module) -> dict[str, nn.Parameter]:
    """Trainable parameters by name, tied ones once."""
    out: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for n, p in model.named_parameters():
        if p.requires_grad and id(p) not in seen:
            out[n] = p
            seen.add(id(p))
    return out


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear and Conv{1,2,3}d modules in registration order (the classifier head last)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)]


def _own_params(m: nn.Module) -> list[nn.Parameter]:
    return list(m.parameters(recurse=False))


def check_layers(model: nn.Module, what: str, *, activations: tuple[type[nn.Module], ...] | None = None) -> None:
    """Raise :class:`MeasureError` unless every parametrised module is a weight layer or a BatchNorm.

    With ``activations`` given, also every module from ``torch.nn.modules.activation`` must be one of
    them (activations applied functionally inside ``forward`` cannot be seen).
    """
    bad = []
    for n, m in model.named_modules():
        cls = type(m)
        if _own_params(m) and not isinstance(m, (*WEIGHT_LAYERS, _BatchNorm)):
            bad.append(f"{n or '<root>'} ({cls.__name__})")
        elif activations is not None and cls.__module__ == "torch.nn.modules.activation":
            if not isinstance(m, activations):
                bad.append(f"{n} ({cls.__name__})")
    if bad:
        shown = ", ".join(bad[:6]) + (f" and {len(bad) - 6} more" if len(bad) > 6 else "")
        raise MeasureError(f"{what}: unsupported layer(s) {shown}")
    if not weight_layers(model):
        raise MeasureError(f"{what}: the model has no Linear or Conv layer")


def _out_channels(m: nn.Module) -> int:
    return m.out_features if isinstance(m, nn.Linear) else m.out_channels


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with each BatchNorm folded into the Linear/Conv layer before it.

    ``BN(W x + b) = (s W) x + s (b - mu) + beta`` with ``s = gamma / sqrt(var + eps)`` (running
    statistics): the layer's weight becomes ``s W``; with a bias it absorbs the shift and the BN becomes
    the identity, without one the BN is left as a pure shift (weight 1, running var ``1 - eps``, running
    mean 0, bias ``beta - s mu``). The copy computes the same function in eval mode. The BN must follow
    its Linear/Conv layer in registration order with only Identity/Dropout leaves between them, and
    have as many features as the layer has output channels; anything else is a :class:`MeasureError`.
    """
    folded = copy.deepcopy(model).eval()
    last: nn.Module | None = None
    for name, m in folded.named_modules():
        if isinstance(m, _BatchNorm):
            if m.running_var is None or m.running_mean is None:
                raise MeasureError(f"cannot fold BatchNorm {name}: it keeps no running statistics")
            if last is None or _out_channels(last) != m.num_features:
                raise MeasureError(f"cannot fold BatchNorm {name}: it does not directly follow a Linear/Conv layer")
            scale = torch.rsqrt(m.running_var + m.eps)
            if m.weight is not None:
                scale = scale * m.weight
            shape = (-1,) + (1,) * (last.weight.dim() - 1)
            last.weight.mul_(scale.reshape(shape))
            beta = m.bias if m.bias is not None else torch.zeros_like(scale)
            shift = beta - scale * m.running_mean
            if last.bias is not None:
                last.bias.copy_(scale * last.bias + shift)
                shift = torch.zeros_like(shift)
            m.running_mean.zero_()
            m.running_var.fill_(1.0 - m.eps)
            if m.weight is not None:
                m.weight.fill_(1.0)
            if m.bias is not None:
                m.bias.copy_(shift)
            else:
                m.running_mean.copy_(-shift)
            last = None
        elif isinstance(m, WEIGHT_LAYERS):
            last = m
        elif _own_params(m) or (not list(m.children()) and not isinstance(m, _TRANSPARENT)):
            last = None  # anything between a layer and a BN (an activation, a pool, ...) forbids folding
    return folded


def layer_weights(model: nn.Module, what: str) -> list[Tensor]:
    """The (BatchNorm-folded) weights ``W_1..W_d`` of the Linear/Conv layers, detached, in float64."""
    check_layers(model, what)
    folded = fold_batchnorm(model)
    return [m.weight.detach().double() for _, m in weight_layers(folded)]


@torch.no_grad()
def output_margins(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """``f(x)[y] - max_{j != y} f(x)[j]`` per example (eval mode), float64."""
    out = logits(model, x).double()
    if out.dim() != 2 or out.shape[1] < 2:
        raise MeasureError(f"margins need logits of shape (N, C >= 2), got {tuple(out.shape)}")
    idx = torch.arange(len(y), device=out.device)
    correct = out[idx, y].clone()
    out[idx, y] = -math.inf
    return correct - out.max(1).values


def margin_quantile(model: nn.Module, x: Tensor, y: Tensor, q: float = 0.1) -> float:
    """gamma: the ``q``-quantile (default the 10th percentile) of the output margins on ``(x, y)``.

    Raises :class:`MeasureError` when it is not positive (more than ``q`` of the examples are
    misclassified or on the boundary), where the margin-normalised measures are undefined.
    """
    margins = output_margins(model, x, y)
    gamma = float(torch.quantile(margins, q))
    if not gamma > 0:
        raise MeasureError(
            f"the {100 * q:g}th-percentile output margin is {gamma:.4g} <= 0 (more than {100 * q:g}% of the "
            "probe examples are misclassified): margin-based measures are undefined"
        )
    return gamma
