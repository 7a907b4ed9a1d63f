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
    DatasetShape,
    check_data,
    dataset_kwargs_accepted,
    default_root,
    describe_dataset,
    list_datasets,
    load_dataset,
    register_dataset,
)
from .splits import DatasetSplits, RawData, default_n_val, make_splits, split_sizes

__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "DatasetNotFoundError",
    "DatasetShape",
    "DatasetSplits",
    "RawData",
    "check_data",
    "dataset_kwargs_accepted",
    "default_n_val",
    "default_root",
    "describe_dataset",
    "list_datasets",
    "load_dataset",
    "make_splits",
    "register_dataset",
    "split_sizes",
]
