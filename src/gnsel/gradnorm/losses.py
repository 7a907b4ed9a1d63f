"""Per-example losses by name, or any callable with ``reduction="none"`` semantics."""

from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor

from ..registry import Registry
from .errors import GradNormError

LossFn = Callable[[Tensor, Tensor], Tensor]

LOSSES: Registry[LossFn] = Registry("loss")


@LOSSES.register("cross_entropy")
def _cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
    return F.cross_entropy(outputs, targets, reduction="none")


@LOSSES.register("mse")
def _mse(outputs: Tensor, targets: Tensor) -> Tensor:
    diff = outputs - targets.reshape(outputs.shape).to(outputs.dtype)
    return diff.pow(2).reshape(diff.shape[0], -1).sum(1)


def resolve_loss(loss: str | LossFn) -> LossFn:
    """The per-example loss function for ``loss`` (a name in ``LOSSES`` or a callable)."""
    if callable(loss):
        return loss
    if loss in LOSSES:
        return LOSSES.get(loss)
    raise GradNormError(f"unknown loss {loss!r}; choose one of {sorted(LOSSES)} or pass a callable")
