"""Small shared helpers for the model builders (validation, scaling, init)."""

from __future__ import annotations

import math

import torch
from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
}


def activation(name: str) -> nn.Module:
    """Return a fresh (not in-place) activation module by name."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; valid choices: {', '.join(sorted(_ACTIVATIONS))}"
        ) from None


def scale(channels: int, mult: float) -> int:
    """Scale a channel/block count by ``mult``, rounded to an int >= 1."""
    return max(1, int(round(channels * mult)))


def check_positive(name: str, value: float) -> None:
    """Raise ValueError unless ``value`` > 0."""
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def check_min_int(name: str, value: int, minimum: int) -> None:
    """Raise ValueError unless ``value`` >= ``minimum``."""
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


def dropout(p: float) -> nn.Module:
    """``nn.Dropout(p)`` for p > 0, else ``nn.Identity`` (validates 0 <= p < 1)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p!r}")
    return nn.Dropout(p) if p > 0 else nn.Identity()


def image_shape(model: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Validate a ``(C, H, W)`` image input shape."""
    if len(input_shape) != 3:
        raise ValueError(
            f"model {model!r} expects an image input_shape (C, H, W), got {input_shape!r}"
        )
    c, h, w = input_shape
    return c, h, w


def init_conv_bn(module: nn.Module) -> None:
    """He (fan-out) init for convs, unit/zero init for norms; Linear layers keep torch's default."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def scale_residual_init(last_convs: list[nn.Module]) -> None:
    """Scale the last conv of each residual branch by 1/sqrt(#blocks) (for nets without BN).

    Without normalization, each residual block roughly adds the variance of its input, so the
    activation scale grows like 2**(#blocks/2) at init; this Fixup-style rescaling keeps it
    bounded (growth <= e) while leaving every parameter trainable with nonzero gradient.
    """
    if not last_convs:
        return
    factor = 1.0 / math.sqrt(len(last_convs))
    with torch.no_grad():
        for conv in last_convs:
            conv.weight.mul_(factor)
