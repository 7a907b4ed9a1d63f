"""Dataset registry (timm-style): ``register_dataset``, ``list_datasets``, ``load_dataset``.

A registered builder is a callable ``builder(*, seed, root, download, **kwargs) -> RawData``
returning unnormalised data; :func:`load_dataset` applies the shared split /
subsample / normalisation logic from :mod:`gnsel.data.splits`. The builders live in one
:class:`~gnsel.registry.Registry`, ``DATASETS``, under lower-case names.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..registry import Registry, UnknownNameError
from .splits import DatasetSplits, RawData, make_splits

__all__ = ["DATASETS", "DatasetNotFoundError", "default_root", "list_datasets", "load_dataset", "register_dataset"]

DEFAULT_DATASET = "mnist1d"

Builder = Callable[..., RawData]
DATASETS: Registry[Builder] = Registry("dataset")


class DatasetNotFoundError(FileNotFoundError):
    """Raised when a dataset's files are missing locally and downloading was not requested."""


def default_root() -> Path:
    """Default data/cache directory: ``$GNSEL_DATA_ROOT``, else ``$XDG_CACHE_HOME/gnsel`` or ``~/.cache/gnsel``."""
    env = os.environ.get("GNSEL_DATA_ROOT")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    return (Path(cache).expanduser() if cache else Path.home() / ".cache") / "gnsel"


def register_dataset(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering a dataset builder under ``name`` (case-insensitive)."""
    key = name.lower()

    def deco(fn: Builder) -> Builder:
        if key in DATASETS and DATASETS.get(key) is not fn:  # the message names ``name`` as given
            raise ValueError(f"dataset {name!r} is already registered")
        return DATASETS.register(key, fn)

    return deco


def list_datasets() -> list[str]:
    """Sorted names of all registered datasets."""
    return sorted(DATASETS.names())


def load_dataset(
    name: str = DEFAULT_DATASET,
    *,
    seed: int = 0,
    n_train: int | None = None,
    n_val: int | None = None,
    root: str | Path | None = None,
    download: bool = False,
    **kwargs,
) -> DatasetSplits:
    """Load dataset ``name`` as normalised train/val/test splits derived from ``seed``."""
    key = str(name).lower()
    if key not in DATASETS:
        raise UnknownNameError(f"unknown dataset {name!r}; choices: {', '.join(list_datasets())}")
    root_path = Path(root).expanduser() if root is not None else None
    raw = DATASETS.get(key)(seed=seed, root=root_path, download=download, **kwargs)
    return make_splits(raw, name=key, seed=seed, n_train=n_train, n_val=n_val)
