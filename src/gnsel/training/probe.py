"""The fixed probe set of a run and the GN measured on it (the one place for the probe batch size)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..data import DatasetSplits
from ..gradnorm import GN_BATCH_SIZE, gradient_norm
from .config import TrainConfig

__all__ = ["GN_BATCH_SIZE", "GN_KEYS", "GN_SCOPES", "measure_probe_gn", "probe_indices", "probe_set"]

GN_SCOPES: tuple[str, ...] = ("full", "fc")  # the scopes a row can hold, in row order
GN_KEYS: tuple[str, ...] = tuple(k for s in GN_SCOPES for k in (f"gn_{s}", f"gn_{s}_mean_grad_sq"))


def probe_indices(n: int, size: int, seed: int) -> Tensor:
    """The probe set: the first ``min(size, n)`` of a permutation of ``range(n)`` drawn from ``seed``."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[: min(size, n)]


def probe_set(splits: DatasetSplits, config: TrainConfig) -> tuple[Tensor, Tensor]:
    """(inputs, targets) of the fixed probe set: ``probe_size`` training examples drawn with ``data_seed``."""
    x, y = splits.train.tensors
    idx = probe_indices(len(y), config.probe_size, config.data_seed)
    return x[idx], y[idx]


def measure_probe_gn(model: nn.Module, probe: tuple[Tensor, Tensor], scopes: Sequence[str],
                     device: torch.device) -> dict[str, float]:  # fmt: skip
    """``gn_<scope>`` and ``gn_<scope>_mean_grad_sq`` for every key of :data:`GN_KEYS`; NaN outside ``scopes``."""
    out = {k: math.nan for k in GN_KEYS}
    for scope in (s for s in GN_SCOPES if s in scopes):
        gn = gradient_norm(model, probe, scope=scope, batch_size=GN_BATCH_SIZE, device=device)
        out[f"gn_{scope}"], out[f"gn_{scope}_mean_grad_sq"] = gn.mean_sq, gn.mean_grad_sq
    return out
