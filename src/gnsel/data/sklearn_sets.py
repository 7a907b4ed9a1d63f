"""Small offline datasets: scikit-learn ``digits`` and a seeded Gaussian-mixture ``synthetic`` task."""

from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np
import torch

from .registry import DatasetShape, register_dataset
from .splits import RawData

__all__: list[str] = []

_TEST_SPLIT_SEED = 0
_DIGITS = 1797  # images in scikit-learn's digits


def _test_count(n: int, test_size: float) -> int:
    """How many of ``n`` examples a ``test_size`` holdout takes (at least 1, leaving at least 1)."""
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)) or not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}")
    n_test = max(1, round(test_size * n))
    if n_test >= n:
        raise ValueError(f"test_size must be in (0, 1) and leave training data, got {test_size}")
    return n_test


def _fixed_test_split(n: int, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (pool_idx, test_idx): a fixed permutation-based holdout of ``test_size`` of ``n`` examples."""
    n_test = _test_count(n, test_size)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def describe_digits(*, test_size: float = 0.2) -> DatasetShape:
    """What :func:`build_digits` gives, without loading scikit-learn."""
    n_test = _test_count(_DIGITS, test_size)
    return DatasetShape(pool=_DIGITS - n_test, test=n_test, input_shape=(1, 8, 8), num_classes=10)


@register_dataset("digits", describe=describe_digits)
def build_digits(
    *, seed: int = 0, root: Path | None = None, download: bool = False, test_size: float = 0.2
) -> RawData:
    """scikit-learn 8x8 digits (1797 images, ships with sklearn): input shape (1, 8, 8), 10 classes, fixed test split."""
    del seed, root, download
    from sklearn.datasets import load_digits  # heavy: scikit-learn takes seconds to import

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    pool, test = (torch.from_numpy(i) for i in _fixed_test_split(len(y), test_size, _TEST_SPLIT_SEED))
    return RawData(x[pool], y[pool], x[test], y[test], num_classes=10, channel_dim=None)


def _synthetic_checks(n_samples: int, n_features: int, n_classes: int, label_noise: float, test_size: float,
                      shape: list[int] | tuple[int, ...] | None) -> tuple[int, tuple[int, ...] | None, int]:
    """``(n_features, shape, n_test)`` of a synthetic set, or a ValueError naming the bad argument."""
    for key, v in (("n_samples", n_samples), ("n_features", n_features), ("n_classes", n_classes)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise ValueError(f"synthetic {key} must be an integer, got {v!r}")
    if shape is not None:
        if not isinstance(shape, (list, tuple)) or any(
            isinstance(d, bool) or not isinstance(d, numbers.Integral) for d in shape
        ):
            raise ValueError(f"synthetic shape must be a list of positive integers, got {shape!r}")
        shape = tuple(int(d) for d in shape)
        if not shape or min(shape) < 1:
            raise ValueError(f"synthetic shape must be positive dimensions, got {list(shape)}")
        n_features = int(np.prod(shape))
    if n_samples < 2 or n_features < 1 or n_classes < 2:
        raise ValueError("synthetic needs n_samples >= 2, n_features >= 1, n_classes >= 2")
    if not 0.0 <= label_noise <= 1.0:
        raise ValueError(f"label_noise must be in [0, 1], got {label_noise}")
    return n_features, shape, _test_count(n_samples, test_size)


def describe_synthetic(*, n_samples: int = 3000, n_features: int = 20, n_classes: int = 4, noise: float = 1.0,
                       class_sep: float = 2.0, label_noise: float = 0.0, test_size: float = 0.2,
                       data_seed: int | None = None, shape: list[int] | tuple[int, ...] | None = None) -> DatasetShape:
    """What :func:`build_synthetic` gives for these arguments, without drawing it."""
    del noise, class_sep, data_seed
    n_features, shape, n_test = _synthetic_checks(n_samples, n_features, n_classes, label_noise, test_size, shape)
    return DatasetShape(pool=n_samples - n_test, test=n_test, input_shape=shape or (n_features,),
                        num_classes=n_classes)  # fmt: skip


@register_dataset("synthetic", describe=describe_synthetic)
def build_synthetic(
    *,
    seed: int = 0,
    root: Path | None = None,
    download: bool = False,
    n_samples: int = 3000,
    n_features: int = 20,
    n_classes: int = 4,
    noise: float = 1.0,
    class_sep: float = 2.0,
    label_noise: float = 0.0,
    test_size: float = 0.2,
    data_seed: int | None = None,
    shape: list[int] | tuple[int, ...] | None = None,
) -> RawData:
    """Gaussian mixture: one isotropic Gaussian (std ``noise``) per class around random means.

    ``shape`` (e.g. ``[3, 32, 32]``) gives each example that shape instead of ``n_features``
    (which then becomes their product): image-shaped stand-in data for timing and smoke tests.

    Class means are ``class_sep * N(0, I/n_features)``-distributed (so their pairwise distance
    is about ``class_sep * sqrt(2)`` whatever ``n_features``); classes are balanced;
    ``label_noise`` is the fraction of labels replaced by uniformly random ones. Everything
    (means, samples, test split) is drawn from ``data_seed``, which defaults to ``seed``.
    """
    del root, download
    n_features, shape, n_test = _synthetic_checks(n_samples, n_features, n_classes, label_noise, test_size, shape)
    rng = np.random.default_rng(seed if data_seed is None else data_seed)
    means = class_sep * rng.standard_normal((n_classes, n_features)) / np.sqrt(n_features)
    y = rng.permutation(np.arange(n_samples) % n_classes)
    x = means[y] + noise * rng.standard_normal((n_samples, n_features))
    if label_noise > 0:
        flip = rng.random(n_samples) < label_noise
        y = np.where(flip, rng.integers(0, n_classes, n_samples), y)
    perm = rng.permutation(n_samples)
    test, pool = torch.from_numpy(np.sort(perm[:n_test])), torch.from_numpy(np.sort(perm[n_test:]))
    xt = torch.from_numpy(x.astype(np.float32))
    if shape is not None:
        xt = xt.reshape(n_samples, *shape)
    yt = torch.from_numpy(y.astype(np.int64))
    return RawData(xt[pool], yt[pool], xt[test], yt[test], num_classes=n_classes, channel_dim=0)
