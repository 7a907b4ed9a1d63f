"""Dataset registry (timm-style): ``register_dataset``, ``list_datasets``, ``load_dataset``.

A registered builder is a callable ``builder(*, seed, root, download, **kwargs) -> RawData``
returning unnormalised data; :func:`load_dataset` applies the shared split /
subsample / normalisation logic from :mod:`gnsel.data.splits`. The builders live in one
:class:`~gnsel.registry.Registry`, ``DATASETS``, under lower-case names.

A builder may come with a ``describe`` function (``register_dataset(name, describe=...)``) that tells,
from the builder's keyword arguments alone, how many examples the data holds, its input shape and its
classes (a :class:`DatasetShape`), so that :func:`check_data` can refuse a configuration that asks for
more training data than there is, or an unknown keyword, before anything loads or trains.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..registry import Registry, UnknownNameError
from .splits import DatasetSplits, RawData, make_splits, split_sizes

__all__ = [
    "DATASETS", "DatasetNotFoundError", "DatasetShape", "check_data", "dataset_kwargs_accepted", "default_root",
    "describe_dataset", "list_datasets", "load_dataset", "register_dataset", "unknown_kwargs_error",
]  # fmt: skip

DEFAULT_DATASET = "mnist1d"

Builder = Callable[..., RawData]
DATASETS: Registry[Builder] = Registry("dataset")


class DatasetNotFoundError(FileNotFoundError):
    """Raised when a dataset's files are missing locally and downloading was not requested."""


@dataclass(frozen=True)
class DatasetShape:
    """What a dataset holds, known without loading it: the train pool (validation and training are carved
    from it), the fixed test set, the per-example input shape and the number of classes."""

    pool: int
    test: int
    input_shape: tuple[int, ...]
    num_classes: int


_DESCRIBE: dict[str, Callable[..., DatasetShape]] = {}
_BUILDER_ARGS = ("seed", "root", "download")  # set by load_dataset, never by dataset_kwargs


def default_root() -> Path:
    """Default data/cache directory: ``$GNSEL_DATA_ROOT``, else ``$XDG_CACHE_HOME/gnsel`` or ``~/.cache/gnsel``."""
    env = os.environ.get("GNSEL_DATA_ROOT")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    return (Path(cache).expanduser() if cache else Path.home() / ".cache") / "gnsel"


def register_dataset(name: str, *, describe: Callable[..., DatasetShape] | None = None
                     ) -> Callable[[Builder], Builder]:  # fmt: skip
    """Decorator registering a dataset builder under ``name`` (case-insensitive).

    ``describe(**dataset_kwargs)`` (optional) returns the :class:`DatasetShape` the builder would give
    for those keyword arguments, without loading anything; it raises ValueError for impossible ones.
    """
    key = name.lower()

    def deco(fn: Builder) -> Builder:
        if key in DATASETS and DATASETS.get(key) is not fn:  # the message names ``name`` as given
            raise ValueError(f"dataset {name!r} is already registered")
        if describe is not None:
            _DESCRIBE[key] = describe
        return DATASETS.register(key, fn)

    return deco


def unknown_kwargs_error(name: str, unknown: list[str], accepted: list[str]) -> ValueError:
    """The error for ``dataset_kwargs`` dataset ``name`` does not take, listing those it does."""
    return ValueError(f"unknown dataset_kwargs {', '.join(map(repr, unknown))} for dataset {name!r}; "
                      f"accepted: {', '.join(accepted) or '(none)'}")  # fmt: skip


def dataset_kwargs_accepted(name: str) -> list[str] | None:
    """The ``dataset_kwargs`` dataset ``name``'s builder accepts (None: any, it takes ``**kwargs``)."""
    builder = DATASETS.get(str(name).lower())
    params = inspect.signature(builder).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name not in _BUILDER_ARGS]


def describe_dataset(name: str, kwargs: Mapping[str, Any] | None = None) -> DatasetShape | None:
    """The :class:`DatasetShape` of dataset ``name`` built with ``kwargs``, or None if its builder has no
    ``describe``; a ValueError names an unknown or impossible keyword and lists the accepted ones."""
    key, kwargs = str(name).lower(), dict(kwargs or {})
    if key not in DATASETS:
        raise UnknownNameError(f"unknown dataset {name!r}; choices: {', '.join(list_datasets())}")
    accepted = dataset_kwargs_accepted(key)
    unknown = [k for k in kwargs if accepted is not None and k not in accepted]
    if unknown:
        raise unknown_kwargs_error(name, unknown, accepted or [])
    describe = _DESCRIBE.get(key)
    if describe is None:
        return None
    try:
        return describe(**kwargs)
    except TypeError as err:  # a value of the wrong type
        raise ValueError(f"dataset_kwargs for dataset {name!r}: {err}") from err


def check_data(name: str, kwargs: Mapping[str, Any] | None = None, *, n_train: int | None = None,
               n_val: int | None = None) -> DatasetShape | None:  # fmt: skip
    """What :func:`load_dataset` would refuse, checked without loading: unknown ``kwargs``, and
    ``n_train``/``n_val`` beyond what the train pool holds (counted as :func:`make_splits` counts)."""
    shape = describe_dataset(name, kwargs)
    if shape is not None:
        about = f" (the {shape.test} test examples apart)"
        split_sizes(shape.pool, name=str(name).lower(), n_train=n_train, n_val=n_val, about=about)
    return shape


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
