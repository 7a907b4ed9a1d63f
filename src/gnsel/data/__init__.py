"""Dataset registry: ``load_dataset(name, seed=..., n_train=...)`` -> normalised train/val/test splits."""

from . import mnist1d as _mnist1d  # noqa: F401  (registers "mnist1d")
from . import sklearn_sets as _sklearn_sets  # noqa: F401  (registers "digits", "synthetic")
from . import vision as _vision  # noqa: F401  (registers torchvision datasets)
from .registry import (
    DEFAULT_DATASET,
    DatasetNotFoundError,
    default_root,
    list_datasets,
    load_dataset,
    register_dataset,
)
from .splits import DatasetSplits, RawData, default_n_val, make_splits

__all__ = [
    "DEFAULT_DATASET",
    "DatasetNotFoundError",
    "DatasetSplits",
    "RawData",
    "default_n_val",
    "default_root",
    "list_datasets",
    "load_dataset",
    "make_splits",
    "register_dataset",
]
