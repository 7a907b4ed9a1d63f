"""Optimisers and the per-step learning-rate schedule of a ``TrainConfig``."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from .config import TrainConfig

__all__ = ["lr_factor", "make_optimizer", "make_scheduler", "rebase_lr"]


def make_optimizer(config: TrainConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """SGD (with ``momentum``), Adam (L2 ``weight_decay``) or AdamW (decoupled ``weight_decay``)."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def lr_factor(schedule: str, step: int, steps_per_epoch: int, epochs: int) -> float:
    """Multiplier of the base lr at (0-based, global) ``step``: constant, cosine over all steps, or step decay.

    ``"step"`` multiplies by 0.1 from epoch ``int(0.5 * epochs)`` and again from ``int(0.75 * epochs)``
    (0-based epochs; never before the first epoch's end).
    """
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        total = max(1, steps_per_epoch * epochs)
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    if schedule == "step":
        epoch = step // max(1, steps_per_epoch)
        milestones = [max(1, int(f * epochs)) for f in (0.5, 0.75)]
        return 0.1 ** sum(epoch >= m for m in milestones)
    raise ValueError(f"unknown schedule {schedule!r}")


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
                   ) -> torch.optim.lr_scheduler.LambdaLR:  # fmt: skip
    """A per-step ``LambdaLR`` following :func:`lr_factor`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(config.schedule, step, steps_per_epoch, config.epochs)
    )


def rebase_lr(scheduler: torch.optim.lr_scheduler.LambdaLR, lr: float, factor: float) -> None:
    """Give ``scheduler`` (and its optimiser) the base lr ``lr``; the current lr becomes ``lr * factor``.

    The schedule then goes on from its current step with the new base (what PBT's perturbation needs).
    """
    groups = scheduler.optimizer.param_groups
    scheduler.base_lrs = [float(lr)] * len(groups)
    for g in groups:
        g["initial_lr"] = float(lr)
        g["lr"] = float(lr) * factor
    scheduler._last_lr = [g["lr"] for g in groups]
