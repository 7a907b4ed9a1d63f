"""Reproducible runs: the one :func:`deterministic` settings context and :func:`rng_scope` RNG fork."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

__all__ = ["deterministic", "rng_scope"]


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic algorithms (warn-only) and no cuDNN autotuning for the duration; settings restored."""
    old = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    old_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (new handles)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old[0], warn_only=old[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old_cudnn


def rng_scope(device: torch.device) -> contextlib.AbstractContextManager:
    """Fork the global torch RNGs (CPU and the training GPU), so a run leaves the caller's RNG state alone."""
    devices = [device] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)
