"""MNIST-1D (Greydanus 2020), generated locally with the ``mnist1d`` package and cached as ``.npz``.

The data is always *generated* (``mnist1d.data.make_dataset``), never downloaded.
Generation uses mnist1d's own ``seed`` argument (``data_seed``, default 42 as in
mnist1d), so the data and its official test split are fixed; the ``seed`` of
:func:`gnsel.data.load_dataset` only drives the train/validation split and the
``n_train`` subsample.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from .registry import DatasetShape, default_root, register_dataset, unknown_kwargs_error
from .splits import RawData

__all__ = ["describe_mnist1d", "mnist1d_args", "mnist1d_cache_path"]

_CACHE_VERSION = 1
_EXCLUDED_ARGS = {"url", "seed"}


def mnist1d_args(num_samples: int = 10000, data_seed: int = 42, **overrides) -> dict:
    """mnist1d generation arguments (``get_dataset_args`` defaults) with ``num_samples``/seed/overrides applied."""
    from mnist1d.data import get_dataset_args  # heavy: mnist1d imports matplotlib

    args = get_dataset_args(as_dict=True)
    unknown = set(overrides) - (set(args) - _EXCLUDED_ARGS)
    if unknown:
        allowed = sorted(set(args) - _EXCLUDED_ARGS)
        raise TypeError(f"unknown mnist1d argument(s) {sorted(unknown)}; allowed: num_samples, data_seed, {allowed}")
    args.update(overrides)
    args["num_samples"] = int(num_samples)
    args["seed"] = int(data_seed)
    args.pop("url", None)
    return args


def describe_mnist1d(*, num_samples: int = 10000, data_seed: int = 42, cache: bool = True,
                     **mnist1d_overrides) -> DatasetShape:  # fmt: skip
    """What :func:`build_mnist1d` gives for these arguments, without generating it: ``make_dataset`` draws
    ``num_samples // 10`` examples of each of the 10 templates and keeps ``train_split`` of them for training."""
    del cache
    from mnist1d.data import get_dataset_args  # heavy: mnist1d imports matplotlib

    overrides = sorted(set(get_dataset_args(as_dict=True)) - _EXCLUDED_ARGS - {"num_samples"})
    unknown = [k for k in mnist1d_overrides if k not in overrides]
    if unknown:
        raise unknown_kwargs_error("mnist1d", unknown, ["num_samples", "data_seed", "cache", *overrides])
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 10:
        raise ValueError(f"mnist1d needs num_samples >= 10 (whole examples per class, 10 classes), got {num_samples!r}")
    args = mnist1d_args(num_samples=num_samples, data_seed=data_seed, **mnist1d_overrides)
    split = args["train_split"]
    if isinstance(split, bool) or not isinstance(split, (int, float)) or not 0 < split < 1:
        raise ValueError(f"mnist1d train_split must be in (0, 1), got {split!r}")
    total = (num_samples // 10) * 10
    pool = int(total * split)  # as make_dataset splits
    return DatasetShape(pool=pool, test=total - pool, input_shape=(int(args["final_seq_length"]),), num_classes=10)


def mnist1d_cache_path(args: dict, root: Path | None = None) -> Path:
    """Cache file for the given generation arguments: ``<root>/mnist1d/mnist1d_<hash>.npz``."""
    key = json.dumps({"v": _CACHE_VERSION, **{k: args[k] for k in sorted(args)}}, sort_keys=True, default=str)
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return (root if root is not None else default_root()) / "mnist1d" / f"mnist1d_{digest}.npz"


def _generate(args: dict) -> dict[str, np.ndarray]:
    """Run ``mnist1d.data.make_dataset`` without leaking its global RNG seeding."""
    # heavy: mnist1d imports matplotlib; only needed when the cache misses
    from mnist1d import data as m1d_data
    from mnist1d.utils import ObjectView

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        ds = m1d_data.make_dataset(ObjectView(dict(args)))
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {k: np.asarray(ds[k]) for k in ("x", "y", "x_test", "y_test")}


def _save_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@register_dataset("mnist1d", describe=describe_mnist1d)
def build_mnist1d(
    *,
    seed: int = 0,
    root: Path | None = None,
    download: bool = False,
    num_samples: int = 10000,
    data_seed: int = 42,
    cache: bool = True,
    **mnist1d_overrides,
) -> RawData:
    """MNIST-1D: input shape (40,), 10 classes; mnist1d's 80/20 split gives the train pool and test set."""
    del seed, download  # data is generated deterministically; nothing to download
    args = mnist1d_args(num_samples=num_samples, data_seed=data_seed, **mnist1d_overrides)
    path = mnist1d_cache_path(args, root)
    arrays: dict[str, np.ndarray] | None = None
    if cache and path.is_file():
        try:
            with np.load(path) as f:
                arrays = {k: f[k] for k in ("x", "y", "x_test", "y_test")}
        except (OSError, KeyError, ValueError):
            arrays = None  # corrupt/partial cache: regenerate
    if arrays is None:
        arrays = _generate(args)
        if cache:
            _save_atomic(path, arrays)
    return RawData(
        x_train=torch.from_numpy(arrays["x"]).float(),
        y_train=torch.from_numpy(arrays["y"]).long(),
        x_test=torch.from_numpy(arrays["x_test"]).float(),
        y_test=torch.from_numpy(arrays["y_test"]).long(),
        num_classes=10,
        channel_dim=None,  # a single-channel 1-D signal: one global mean/std
    )
