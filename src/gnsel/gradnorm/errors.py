"""Errors raised by the gradient-norm engine: one class per kind of bad input, all ``ValueError``s."""

from __future__ import annotations


class GradNormError(ValueError):
    """Base class: the measurement could not be made; the model is left as it was."""


class NonFiniteLossError(GradNormError):
    """Some examples have a non-finite loss; their indices are in ``.indices``."""

    def __init__(self, indices: list[int], n: int):
        self.indices = indices
        shown = ", ".join(str(i) for i in indices[:10]) + (" ..." if len(indices) > 10 else "")
        super().__init__(
            f"non-finite loss for {len(indices)} of {n} examples (indices in the batch: {shown}); "
            "the gradient norm is undefined there and is not averaged over silently"
        )


class UnsupportedLayerError(GradNormError):
    """A layer whose per-example gradients are not defined (e.g. BatchNorm on batch statistics)."""
