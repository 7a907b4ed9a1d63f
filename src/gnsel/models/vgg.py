"""CIFAR-style VGG-11 / VGG-16 (conv stack, 512*width features, linear classifier)."""

from __future__ import annotations

import torch
from torch import nn

from ._layers import check_positive, dropout as make_dropout, image_shape, init_conv_bn, scale
from .registry import register_model

_CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
              512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG conv stack (3x3 convs, 2x2 max-pools) -> global avg pool -> (Dropout) -> Linear head."""

    def __init__(
        self,
        cfg: list[int | str],
        in_channels: int,
        num_classes: int,
        width_mult: float = 1.0,
        batch_norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_positive("width_mult", width_mult)
        layers: list[nn.Module] = []
        c_in = in_channels
        for v in cfg:
            if v == "M":
                # ceil_mode keeps non power-of-two sizes (e.g. 28x28) alive down to 1x1.
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                c_out = scale(int(v), width_mult)
                layers.append(nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(c_out))
                layers.append(nn.ReLU())
                c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = make_dropout(dropout)
        self.head = nn.Linear(c_in, num_classes)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape (B, num_classes)."""
        x = self.flatten(self.pool(self.features(x)))
        return self.head(self.dropout(x))


def _vgg(
    name: str,
    num_classes: int,
    input_shape: tuple[int, ...],
    width_mult: float,
    batch_norm: bool,
    dropout: float,
) -> nn.Module:
    c, _, _ = image_shape(name, input_shape)
    return VGG(_CFGS[name], c, num_classes, width_mult=width_mult,
               batch_norm=batch_norm, dropout=dropout)


@register_model("vgg11")
def vgg11(
    num_classes: int,
    input_shape: tuple[int, ...],
    *,
    width_mult: float = 1.0,
    batch_norm: bool = True,
    dropout: float = 0.0,
) -> nn.Module:
    """CIFAR VGG-11 (8 conv layers, 512*width_mult features, linear head)."""
    return _vgg("vgg11", num_classes, input_shape, width_mult, batch_norm, dropout)


@register_model("vgg16")
def vgg16(
    num_classes: int,
    input_shape: tuple[int, ...],
    *,
    width_mult: float = 1.0,
    batch_norm: bool = True,
    dropout: float = 0.0,
) -> nn.Module:
    """CIFAR VGG-16 (13 conv layers, 512*width_mult features, linear head)."""
    return _vgg("vgg16", num_classes, input_shape, width_mult, batch_norm, dropout)
