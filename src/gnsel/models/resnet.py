"""CIFAR ResNets: ResNet-20 (He et al. 2016, option-A shortcuts) and ResNet-18 (3x3 stem)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._layers import check_positive, image_shape, init_conv_bn, scale, scale_residual_init
from .registry import register_model


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class PadShortcut(nn.Module):
    """Option-A shortcut: parameter-free stride-2 subsampling plus zero-padding of channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        extra = out_channels - in_channels
        if extra < 0:
            raise ValueError("option-A shortcut cannot reduce channels")
        self.pad_before = extra // 2
        self.pad_after = extra - extra // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Subsample spatially and zero-pad channels."""
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (option A: pad; option B: 1x1 conv projection)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        batch_norm: bool = True,
        shortcut: str = "B",
    ) -> None:
        super().__init__()
        bias = not batch_norm
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=bias)
        self.bn1 = _norm(out_channels, batch_norm)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=bias)
        self.bn2 = _norm(out_channels, batch_norm)
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        elif shortcut == "A" and out_channels >= in_channels:
            self.shortcut = PadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=bias),
                _norm(out_channels, batch_norm),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return relu(branch(x) + shortcut(x)) (no in-place ops)."""
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet(nn.Module):
    """3x3 stem -> stages of BasicBlocks -> global avg pool -> Linear head."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        stem_channels: int,
        stage_channels: list[int],
        blocks_per_stage: list[int],
        batch_norm: bool = True,
        shortcut: str = "B",
    ) -> None:
        super().__init__()
        bias = not batch_norm
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_channels, 3, 1, 1, bias=bias),
            _norm(stem_channels, batch_norm),
            nn.ReLU(),
        )
        stages: list[nn.Module] = []
        c_in = stem_channels
        for i, (c_out, n) in enumerate(zip(stage_channels, blocks_per_stage)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(c_in, c_out, stride, batch_norm, shortcut))
                c_in = c_out
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(c_in, num_classes)
        init_conv_bn(self)
        if not batch_norm:
            scale_residual_init([m.conv2 for m in self.modules() if isinstance(m, BasicBlock)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape (B, num_classes)."""
        x = self.stages(self.stem(x))
        return self.head(self.flatten(self.pool(x)))


@register_model("resnet20")
def resnet20(
    num_classes: int,
    input_shape: tuple[int, ...],
    *,
    width_mult: float = 1.0,
    depth_mult: float = 1.0,
    batch_norm: bool = True,
) -> nn.Module:
    """He et al. CIFAR ResNet-20: stages 16/32/64 x 3 basic blocks, option-A shortcuts."""
    c, _, _ = image_shape("resnet20", input_shape)
    check_positive("width_mult", width_mult)
    check_positive("depth_mult", depth_mult)
    widths = [scale(w, width_mult) for w in (16, 32, 64)]
    n = scale(3, depth_mult)
    return ResNet(c, num_classes, widths[0], widths, [n, n, n], batch_norm, shortcut="A")


@register_model("resnet18")
def resnet18(
    num_classes: int,
    input_shape: tuple[int, ...],
    *,
    width_mult: float = 1.0,
    batch_norm: bool = True,
) -> nn.Module:
    """CIFAR ResNet-18: 3x3 stem (no max-pool), stages 64/128/256/512 x 2 blocks, 1x1 shortcuts."""
    c, _, _ = image_shape("resnet18", input_shape)
    check_positive("width_mult", width_mult)
    widths = [scale(w, width_mult) for w in (64, 128, 256, 512)]
    return ResNet(c, num_classes, widths[0], widths, [2, 2, 2, 2], batch_norm, shortcut="B")
