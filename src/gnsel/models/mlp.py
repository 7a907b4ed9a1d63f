"""Multi-layer perceptron on flattened inputs."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._layers import activation as make_activation
from ._layers import check_min_int, dropout as make_dropout
from .registry import register_model


class MLP(nn.Module):
    """Flatten -> ``depth`` x [Linear -> (BatchNorm1d) -> act -> (Dropout)] -> Linear head."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        depth: int = 2,
        width: int = 256,
        dropout: float = 0.0,
        batch_norm: bool = False,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        check_min_int("depth", depth, 0)
        check_min_int("width", width, 1)
        layers: list[nn.Module] = [nn.Flatten()]
        features = in_features
        for _ in range(depth):
            layers.append(nn.Linear(features, width, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(make_activation(activation))
            layers.append(make_dropout(dropout))
            features = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape (B, num_classes)."""
        return self.head(self.features(x))


@register_model("mlp")
def mlp(
    num_classes: int,
    input_shape: tuple[int, ...],
    *,
    depth: int = 2,
    width: int = 256,
    dropout: float = 0.0,
    batch_norm: bool = False,
    activation: str = "relu",
) -> nn.Module:
    """MLP with ``depth`` hidden layers of ``width`` units; flattens any input shape."""
    return MLP(
        math.prod(input_shape),
        num_classes,
        depth=depth,
        width=width,
        dropout=dropout,
        batch_norm=batch_norm,
        activation=activation,
    )
