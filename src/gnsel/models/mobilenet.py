"""CIFAR MobileNetV2 (stride-1 stem, inverted residuals with depthwise convs, ReLU6)."""

from __future__ import annotations

import torch
from torch import nn

from ._layers import check_positive, dropout as make_dropout, image_shape, init_conv_bn, scale
from .registry import register_model

# (expansion t, output channels c, repeats n, first stride s); CIFAR variant: stride 1 at stage 2.
_CFG: list[tuple[int, int, int, int]] = [
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
             act: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if act:
        layers.append(nn.ReLU6())
    return layers


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection, residual when shapes match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += _conv_bn(c_in, hidden, 1)
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += _conv_bn(hidden, c_out, 1, act=False)
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return block(x) (+ x when the residual applies)."""
        out = self.block(x)
        return out + x if self.use_residual else out


class MobileNetV2(nn.Module):
    """MobileNetV2 for small images -> global avg pool -> (Dropout) -> Linear head."""

    def __init__(self, in_channels: int, num_classes: int, width_mult: float = 1.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        check_positive("width_mult", width_mult)
        c = scale(32, width_mult)
        layers: list[nn.Module] = _conv_bn(in_channels, c, 3, 1)
        for t, c_out, n, s in _CFG:
            c_out = scale(c_out, width_mult)
            for i in range(n):
                layers.append(InvertedResidual(c, c_out, s if i == 0 else 1, t))
                c = c_out
        last = scale(1280, width_mult)
        layers += _conv_bn(c, last, 1)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = make_dropout(dropout)
        self.head = nn.Linear(last, num_classes)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape (B, num_classes)."""
        x = self.flatten(self.pool(self.features(x)))
        return self.head(self.dropout(x))


@register_model("mobilenetv2")
def mobilenetv2(
    num_classes: int,
    input_shape: tuple[int, ...],
    *,
    width_mult: float = 1.0,
    dropout: float = 0.0,
) -> nn.Module:
    """CIFAR MobileNetV2 (stride-1 stem and stage 2, depthwise convs, ReLU6, 1280*width features)."""
    c, _, _ = image_shape("mobilenetv2", input_shape)
    return MobileNetV2(c, num_classes, width_mult=width_mult, dropout=dropout)
