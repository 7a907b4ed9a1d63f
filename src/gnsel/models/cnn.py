"""Small convolutional nets: a 1-D CNN for signals (MNIST-1D) and LeNet-5 for images."""

from __future__ import annotations

import torch
from torch import nn

from ._layers import check_min_int, check_positive, dropout as make_dropout, image_shape, scale
from .registry import register_model


class CNN1d(nn.Module):
    """``depth`` x [Conv1d(stride 2) -> (BN) -> ReLU] -> global avg pool -> (Dropout) -> Linear."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int = 32,
        depth: int = 3,
        kernel_size: int = 5,
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        check_min_int("channels", channels, 1)
        check_min_int("depth", depth, 1)
        check_min_int("kernel_size", kernel_size, 1)
        layers: list[nn.Module] = []
        c_in = in_channels
        for _ in range(depth):
            layers.append(
                nn.Conv1d(
                    c_in, channels, kernel_size, stride=2, padding=kernel_size // 2,
                    bias=not batch_norm,
                )
            )
            if batch_norm:
                layers.append(nn.BatchNorm1d(channels))
            layers.append(nn.ReLU())
            c_in = channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.flatten = nn.Flatten()
        self.dropout = make_dropout(dropout)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Accept (B, L) or (B, C, L); return logits of shape (B, num_classes)."""
        if x.dim() == 2:
            x = x.unsqueeze(1)
        x = self.pool(self.features(x))
        return self.head(self.dropout(self.flatten(x)))


@register_model("cnn1d")
def cnn1d(
    num_classes: int,
    input_shape: tuple[int, ...],
    *,
    channels: int = 32,
    depth: int = 3,
    kernel_size: int = 5,
    dropout: float = 0.0,
    batch_norm: bool = False,
    width_mult: float = 1.0,
) -> nn.Module:
    """1-D CNN for signals of shape (L,) or (C, L): stride-2 conv blocks, global pool, linear head."""
    if len(input_shape) == 1:
        in_channels = 1
    elif len(input_shape) == 2:
        in_channels = input_shape[0]
    else:
        raise ValueError(f"model 'cnn1d' expects input_shape (L,) or (C, L), got {input_shape!r}")
    check_positive("width_mult", width_mult)
    check_min_int("channels", channels, 1)
    model = CNN1d(
        in_channels,
        num_classes,
        channels=scale(channels, width_mult),
        depth=depth,
        kernel_size=kernel_size,
        dropout=dropout,
        batch_norm=batch_norm,
    )
    return model


class LeNet5(nn.Module):
    """LeNet-5: 2 x [Conv5x5 -> (BN) -> ReLU -> MaxPool2] -> FC 120 -> FC 84 -> (Dropout) -> FC."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        width_mult: float = 1.0,
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        check_positive("width_mult", width_mult)
        c, h, w = input_shape
        c1, c2 = scale(6, width_mult), scale(16, width_mult)
        f1, f2 = scale(120, width_mult), scale(84, width_mult)
        # MNIST convention: LeNet-5 was designed for 32x32; pad smaller images (e.g. 28x28) by 2.
        pad = 2 if min(h, w) < 32 else 0
        if min(h, w) + 2 * pad < 16:
            raise ValueError(f"model 'lenet5' needs images of at least 12x12, got {input_shape!r}")

        def norm2d(n: int) -> nn.Module:
            return nn.BatchNorm2d(n) if batch_norm else nn.Identity()

        def norm1d(n: int) -> nn.Module:
            return nn.BatchNorm1d(n) if batch_norm else nn.Identity()

        self.features = nn.Sequential(
            nn.Conv2d(c, c1, 5, padding=pad, bias=not batch_norm),
            norm2d(c1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, bias=not batch_norm),
            norm2d(c2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flat = self.features.eval()(torch.zeros(1, c, h, w)).shape[1]
        self.features.train()
        self.classifier = nn.Sequential(
            nn.Linear(n_flat, f1, bias=not batch_norm),
            norm1d(f1),
            nn.ReLU(),
            nn.Linear(f1, f2, bias=not batch_norm),
            norm1d(f2),
            nn.ReLU(),
            make_dropout(dropout),
        )
        self.head = nn.Linear(f2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape (B, num_classes)."""
        return self.head(self.classifier(self.features(x)))


@register_model("lenet5")
def lenet5(
    num_classes: int,
    input_shape: tuple[int, ...],
    *,
    width_mult: float = 1.0,
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> nn.Module:
    """LeNet-5 for (C, H, W) images such as 1x28x28 or 3x32x32 (flattened size computed)."""
    return LeNet5(
        image_shape("lenet5", input_shape),
        num_classes,
        width_mult=width_mult,
        dropout=dropout,
        batch_norm=batch_norm,
    )
