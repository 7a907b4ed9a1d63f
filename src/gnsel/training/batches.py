"""Mini-batches of split tensors already on the device: in order (evaluation) or shuffled (training)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

__all__ = ["shuffled_batches", "sliced_batches", "steps_per_epoch"]


def sliced_batches(x: Tensor, y: Tensor, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Consecutive batches of (x, y) in order."""
    for s in range(0, len(y), batch_size):
        yield x[s : s + batch_size], y[s : s + batch_size]


def shuffled_batches(x: Tensor, y: Tensor, batch_size: int, gen: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch of shuffled batches (order from ``gen``); a trailing batch of one example is skipped."""
    n = len(y)
    perm = torch.randperm(n, generator=gen).to(y.device)
    for s in range(0, n, batch_size):
        idx = perm[s : s + batch_size]
        if len(idx) == 1 and n > 1:
            return
        yield x[idx], y[idx]


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Number of batches :func:`shuffled_batches` yields for ``n`` examples."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest > 1 or (rest == 1 and n == 1) else 0)
