"""The naive per-example loop: one backward pass per example. The baseline that gnsel replaces."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .engine import measuring
from .losses import LossFn, resolve_loss
from .scope import Scope, resolve_scope


@dataclass
class NaiveResult:
    """Per-example squared norms from the loop, and the seconds it took."""

    sq: Tensor
    seconds: float


def naive_sq_norms(
    model: nn.Module, inputs: Tensor, targets: Tensor, *, loss: str | LossFn = "cross_entropy", scope: Scope = "full"
) -> NaiveResult:
    """``||grad l_i||^2`` by a separate forward and backward pass for each example (slow, simple)."""
    params = resolve_scope(model, scope)
    loss_fn = resolve_loss(loss)
    wrt = list(params.values())
    out = []
    sync = inputs.is_cuda and torch.cuda.is_available()
    t0 = time.perf_counter()
    with measuring(model, params):
        for i in range(targets.shape[0]):
            li = loss_fn(model(inputs[i : i + 1]), targets[i : i + 1]).sum()
            grads = torch.autograd.grad(li, wrt, allow_unused=True)
            out.append(sum(g.pow(2).sum() for g in grads if g is not None))
    sq = torch.stack(out).detach()
    if sync:
        torch.cuda.synchronize()
    return NaiveResult(sq, time.perf_counter() - t0)
