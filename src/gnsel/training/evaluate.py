"""The training loss, and loss/accuracy of a model over batches (eval mode, no gradients)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..gradnorm import resolve_device
from .batches import sliced_batches

__all__ = ["EVAL_BATCH_SIZE", "evaluate", "evaluate_splits", "training_loss"]

EVAL_BATCH_SIZE = 1024  # batch size of the no-grad evaluations (eval mode: results do not depend on it)


def training_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """The training loss: mean cross-entropy."""
    return F.cross_entropy(logits, targets)


def evaluate(model: nn.Module, loader: Iterable, device: str | torch.device) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` over ``loader``'s (x, y) batches, in eval mode, no grad.

    The model's train/eval mode is restored afterwards; an empty loader gives (nan, nan).
    """
    dev = resolve_device(device)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    correct = torch.zeros((), dtype=torch.long, device=dev)
    n = 0
    try:
        with torch.no_grad():
            for batch in loader:
                x, y = batch[0].to(dev), batch[1].to(dev)
                out = model(x)
                loss_sum += F.cross_entropy(out, y, reduction="sum").double()
                correct += (out.argmax(dim=1) == y).sum()
                n += len(y)
    finally:
        model.train(was_training)
    if n == 0:
        return math.nan, math.nan
    return float(loss_sum) / n, float(correct) / n


def evaluate_splits(model: nn.Module, data: dict[str, tuple[Tensor, Tensor]], device: torch.device
                    ) -> dict[str, float]:  # fmt: skip
    """``{name}_loss`` and ``{name}_acc`` for each (x, y) split in ``data``, in its order."""
    out: dict[str, float] = {}
    for name, (x, y) in data.items():
        out[f"{name}_loss"], out[f"{name}_acc"] = evaluate(model, sliced_batches(x, y, EVAL_BATCH_SIZE), device)
    return out
