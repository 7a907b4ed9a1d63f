"""A run's data splits and freshly initialised model, built from its ``TrainConfig``."""

from __future__ import annotations

import os

import torch
from torch import nn

from ..data import DatasetSplits, load_dataset
from ..models import create_model
from .config import TrainConfig

__all__ = ["build"]


def build(config: TrainConfig, *, root: str | os.PathLike | None = None, download: bool = False
          ) -> tuple[nn.Module, DatasetSplits]:  # fmt: skip
    """Load the config's data splits, then seed torch with ``config.seed`` and create its model (on the CPU)."""
    splits = load_dataset(
        config.dataset, seed=config.data_seed, n_train=config.n_train, n_val=config.n_val,
        root=root, download=download, **config.dataset_kwargs,
    )  # fmt: skip
    torch.manual_seed(config.seed)
    model = create_model(
        config.model, num_classes=splits.num_classes, input_shape=splits.input_shape, **config.model_kwargs
    )
    return model, splits
