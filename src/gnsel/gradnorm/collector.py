"""Collect exact per-example gradient norms inside your own training loop, at about no extra cost.

    collector = GradNormCollector(model)
    for x, y in loader:
        with collector.batch(len(y)):
            loss = F.cross_entropy(model(x), y)
            sq = collector.backward(loss)       # loss.backward() + per-example ||grad l_i||^2
        optimizer.step(); optimizer.zero_grad()

The backward is the training step's own (parameter gradients are accumulated as usual); the hooks
only add the per-layer norm computations.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Iterator

from torch import Tensor, nn

from .engine import GradNormHooks
from .errors import GradNormError
from .rules import batch_statistics
from .scope import Scope, resolve_scope


class GradNormCollector:
    """Per-example squared gradient norms of ``scope`` for each training batch.

    ``batch_stats``: BatchNorm in train mode normalises with batch statistics, which couples the
    examples, so per-example gradients are not defined; ``"error"`` refuses, ``"constant"`` treats
    the batch statistics as constants (the usual approximation; exact for models without them).
    """

    def __init__(self, model: nn.Module, scope: Scope = "full", batch_stats: str = "error"):
        if batch_stats not in ("error", "constant"):
            raise GradNormError(f"batch_stats must be 'error' or 'constant', got {batch_stats!r}")
        self.model = model
        self.params = resolve_scope(model, scope)
        self.batch_stats = batch_stats
        self._persistent = GradNormHooks(model, self.params, persistent=True)
        weakref.finalize(self, self._persistent.detach)
        self._hooks: GradNormHooks | None = None

    @contextlib.contextmanager
    def batch(self, batch_size: int) -> Iterator["GradNormCollector"]:
        """Hooks for one forward and one backward pass of ``batch_size`` examples."""
        self._hooks = self._persistent
        self._hooks.batch = batch_size
        try:
            with self._hooks, batch_statistics(self.batch_stats):
                yield self
        finally:
            self._hooks = None

    def close(self) -> None:
        """Remove the collector's hooks from the model (also done when the collector is deleted)."""
        self._persistent.detach()

    def backward(self, loss: Tensor, *, reduction: str = "mean", **backward_kwargs: object) -> Tensor:
        """Run ``loss.backward()`` and return per-example squared norms of the loss of each example.

        ``reduction`` says how ``loss`` was formed from the per-example losses: ``"mean"`` (the
        default of PyTorch losses) or ``"sum"``. A batch of 0 examples gives a tensor of shape ``(0,)``.
        """
        if self._hooks is None:
            raise GradNormError("GradNormCollector.backward must be called inside `with collector.batch(n):`")
        if reduction not in ("mean", "sum"):
            raise GradNormError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        hooks = self._hooks
        hooks.prepare()
        with batch_statistics(self.batch_stats):
            loss.backward(**backward_kwargs)
            scale = float(hooks.batch) if reduction == "mean" else 1.0
            return hooks.sq_norms(scale).detach()
