"""Per-example gradient contributions of one parameter use, and their squared norms.

A rule describes the per-example gradient of a parameter in one of two forms:

* ``Dense``: the per-example gradient itself, shape ``(B, *param_shape)`` (cheap for vectors such
  as biases and normalisation weights);
* ``Outer``: a sum of outer products, ``grad_b = L_b^T R_b`` with ``L_b`` of shape ``(T, p)`` and
  ``R_b`` of shape ``(T, q)`` (Linear layers with a sequence dimension, unfolded convolutions,
  embeddings with one-hot ``L``). Its squared norm is taken either by materialising ``L^T R``
  (cost ``T*p*q`` per example) or by the ghost norm ``<L L^T, R R^T>`` (cost ``T^2*(p+q)``),
  whichever is cheaper, in chunks of examples so that the temporaries stay small.

Uses of one parameter in several places (a module called twice, tied weights) are combined before
the norm is taken, so the result stays exact: outer forms concatenate along ``T``; otherwise the
dense per-example gradients are summed.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

# Largest temporary (in elements) a chunk of examples may allocate while taking a norm. On the CPU,
# cache-sized chunks are fastest; on an accelerator a chunk is a kernel launch, so chunks are large
# (64 Mi elements, 256 MiB in float32) and a batch's norms of a layer take a few kernels, not hundreds.
CHUNK_ELEMENTS = 1 << 20
ACCELERATOR_CHUNK_ELEMENTS = 1 << 26
_local = threading.local()  # the budget of the norms being taken in this thread (autograd runs hooks
#                             in a per-device thread on CUDA, so this is set where they run)


@contextlib.contextmanager
def chunk_budget(device: torch.device | str | None) -> Iterator[None]:
    """Take the norms within with the chunk budget of ``device`` (CPU: small; CUDA and others: large)."""
    kind = torch.device(device).type if device is not None else "cpu"
    old = getattr(_local, "budget", None)
    _local.budget = CHUNK_ELEMENTS if kind == "cpu" else ACCELERATOR_CHUNK_ELEMENTS
    try:
        yield
    finally:
        _local.budget = old


def chunk_size(per_example: int, n: int, budget: int | None = None) -> int:
    """How many examples fit in ``budget`` elements (default: this thread's, see :func:`chunk_budget`)
    when each needs ``per_example`` elements."""
    if budget is None:
        budget = getattr(_local, "budget", None) or CHUNK_ELEMENTS
    return max(1, min(n, budget // max(1, per_example)))


def use_ghost(t: int, p: int, q: int) -> bool:
    """True when the ghost norm costs fewer FLOPs than materialising the per-example gradient."""
    return t * t * (p + q) < t * p * q


class Dense:
    """Per-example gradient ``(B, *param_shape)``, or a function of an example range giving it,
    so that large per-example gradients are only formed a chunk of examples at a time."""

    def __init__(
        self, grad: Tensor | Callable[[int, int], Tensor], batch: int | None = None, numel: int = 0, chunk: int | None = None
    ):
        self.grad = grad
        self.batch = grad.shape[0] if isinstance(grad, Tensor) else int(batch)
        self.numel = numel
        self.chunk = chunk

    def _get(self, start: int, stop: int) -> Tensor:
        g = self.grad[start:stop] if isinstance(self.grad, Tensor) else self.grad(start, stop)
        return _rows(g)

    def sq_norms(self) -> Tensor:
        if isinstance(self.grad, Tensor):
            return _sq(_rows(self.grad))
        step = chunk_size(2 * self.numel, self.batch)
        if self.chunk is not None:
            step = min(step, self.chunk)
        return torch.cat([_sq(self._get(s, min(self.batch, s + step))) for s in _starts(self.batch, step)])

    def dense(self) -> Tensor:
        return self._get(0, self.batch)


def _sq(x: Tensor) -> Tensor:
    """Row-wise squared L2 norms of a 2-D tensor."""
    return torch.linalg.vector_norm(x, dim=1).pow(2)


def _rows(x: Tensor) -> Tensor:
    """``x`` as one row per example, ``(B, numel)``; also for an empty batch, where ``-1`` is ambiguous."""
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))


def _starts(batch: int, step: int) -> range | list[int]:
    """Chunk starts over ``batch`` examples; one empty chunk for an empty batch, so that the result
    is an empty tensor of the right dtype and device (``torch.cat`` of nothing is an error)."""
    return range(0, batch, step) or [0]


@dataclass
class Outer:
    """Per-example gradient ``L_b^T R_b`` summed over ``T`` positions, optionally per group.

    ``L``: ``(B*G, T, p)``, ``R``: ``(B*G, T, q)``; with ``G`` groups the gradient of group ``g``
    is block ``g`` (of ``p`` rows) of the parameter, as in grouped convolutions.
    Either tensor may be given lazily as a function of an example range, so that large unfolded
    inputs are only built a chunk at a time.
    """

    L: Tensor | Callable[[int, int], Tensor]
    R: Tensor | Callable[[int, int], Tensor]
    batch: int
    groups: int
    t: int
    p: int
    q: int
    ghost: bool | None = None  # None: whichever costs fewer FLOPs

    def _get(self, x: Tensor | Callable[[int, int], Tensor], start: int, stop: int) -> Tensor:
        if callable(x):
            return x(start, stop)
        return x[start * self.groups : stop * self.groups]

    def sq_norms(self) -> Tensor:
        t, p, q, g = self.t, self.p, self.q, self.groups
        ghost = use_ghost(t, p, q) if self.ghost is None else self.ghost
        per_ex = g * (t * (p + q) + (t * t if ghost else p * q))
        step = chunk_size(per_ex, self.batch)
        out = []
        for s in _starts(self.batch, step):
            e = min(self.batch, s + step)
            left, right = self._get(self.L, s, e), self._get(self.R, s, e)
            if t == 1:
                n = left.reshape(-1, p).pow(2).sum(1) * right.reshape(-1, q).pow(2).sum(1)
            elif ghost:
                n = (torch.bmm(left, left.transpose(1, 2)) * torch.bmm(right, right.transpose(1, 2))).sum((1, 2))
            else:
                n = _sq(torch.bmm(left.transpose(1, 2), right).flatten(1))
            out.append(n.view(e - s, g).sum(1))
        return torch.cat(out)

    def full(self) -> tuple[Tensor, Tensor]:
        return self._get(self.L, 0, self.batch), self._get(self.R, 0, self.batch)

    def dense(self) -> Tensor:
        left, right = self.full()
        grad = torch.bmm(left.transpose(1, 2), right)  # (B*G, p, q)
        return grad.reshape(self.batch, self.groups * self.p * self.q)


class Precomputed:
    """Squared norms already taken (e.g. while choosing the fastest way); ``dense`` still works."""

    def __init__(self, values: Tensor, source: "Dense | Outer"):
        self.values = values
        self.source = source
        self.batch = source.batch

    def sq_norms(self) -> Tensor:
        return self.values

    def dense(self) -> Tensor:
        return self.source.dense()


Contribution = Dense | Outer | Precomputed


def combined_sq_norms(parts: list[Contribution]) -> Tensor:
    """Squared norm of the per-example gradient of one parameter summed over all its uses."""
    if len(parts) == 1:
        return parts[0].sq_norms()
    parts = [c.source if isinstance(c, Precomputed) else c for c in parts]
    outers = [c for c in parts if isinstance(c, Outer)]
    if len(outers) == len(parts) and len({(c.groups, c.p, c.q) for c in outers}) == 1:
        first = outers[0]
        ls, rs = zip(*(c.full() for c in outers))
        left = torch.cat(ls, dim=1)
        right = torch.cat(rs, dim=1)
        return Outer(left, right, first.batch, first.groups, left.shape[1], first.p, first.q).sq_norms()
    total = None
    for c in parts:
        d = c.dense()
        total = d if total is None else total + d
    return _sq(total)
