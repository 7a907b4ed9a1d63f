"""Dataset registry: ``load_dataset(name, seed=..., n_train=...)`` -> normalised train/val/test splits."""

# Each dataset module registers its builders in ``registry.DATASETS`` when imported; nothing else
# is taken from them here.
from . import mnist1d as _mnist1d  # noqa: F401  (registers "mnist1d")
from . import sklearn_sets as _sklearn_sets  # noqa: F401  (registers "digits", "synthetic")
from . import vision as _vision  # noqa: F401  (registers "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn")
from .registry import (
    DATASETS,
    DEFAULT_DATASET,
    DatasetNotFoundError,
    default_root,
    list_datasets,
    load_dataset,
    register_dataset,
)
from .splits import DatasetSplits, RawData, default_n_val, make_splits

__all__ = [
    "DATASETS",
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
