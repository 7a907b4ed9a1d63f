"""Divergence: the error a non-finite training loss raises, and the check that watches the losses."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["CHECK_EVERY_CUDA", "DivergenceError", "FiniteCheck"]

CHECK_EVERY_CUDA = 32  # on CUDA, the finiteness of the training loss is synchronised every this many steps


class DivergenceError(ValueError):
    """The training loss became non-finite; ``epoch`` and ``step`` (1-based within the epoch) say where."""

    def __init__(self, message: str, *, epoch: int, step: int | None = None):
        super().__init__(message)
        self.epoch = epoch
        self.step = step


class FiniteCheck:
    """Watches the training losses; raises :class:`DivergenceError` on the first non-finite one.

    On CUDA the losses are checked in chunks, so the host waits for the device only now and then.
    """

    def __init__(self, device: torch.device):
        self.every = CHECK_EVERY_CUDA if device.type == "cuda" else 1
        self.pending: list[tuple[Tensor, int, int]] = []  # (loss, epoch, step)

    def add(self, loss: Tensor, epoch: int, step: int) -> None:
        """Record one step's loss; check when the chunk is full."""
        self.pending.append((loss.detach(), epoch, step))
        if len(self.pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        """Check the recorded losses now."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        losses = torch.stack([p[0] for p in pending])
        bad = ~torch.isfinite(losses)
        if bool(bad.any()):
            k = int(bad.nonzero()[0, 0])
            _, epoch, step = pending[k]
            raise DivergenceError(
                f"training diverged: non-finite training loss {float(losses[k])} at epoch {epoch}, step {step}",
                epoch=epoch, step=step,
            )  # fmt: skip
