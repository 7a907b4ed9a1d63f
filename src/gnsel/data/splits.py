"""Train/validation/test splitting, training-set subsampling and normalisation.

Dataset builders return a :class:`RawData` (unnormalised float inputs, the
official train pool and a fixed test set); :func:`make_splits` turns it into a
:class:`DatasetSplits`:

* a permutation of the train pool drawn from ``torch.Generator().manual_seed(seed)``;
* validation = the first ``n_val`` indices of that permutation (never test data);
* training = the next ``n_train`` indices, i.e. a prefix of the remaining
  permutation, so for a fixed ``(seed, n_val)`` smaller training sets are nested
  in larger ones;
* mean/std computed on the *whole* post-validation training pool (independent of
  ``n_train``, so inputs are bit-identical across ``n_train`` values) and applied
  to all three splits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["DatasetSplits", "RawData", "default_n_val", "make_splits", "normalise_stats", "split_sizes"]

_MAX_DEFAULT_VAL = 5000
_EPS = 1e-8


@dataclass
class RawData:
    """Unnormalised data as produced by a dataset builder (inputs float32, targets int64)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    channel_dim: int | None = None
    """Input dim (without batch) whose entries get separate statistics; ``None`` = one scalar."""

    def __post_init__(self) -> None:
        if len(self.x_train) != len(self.y_train) or len(self.x_test) != len(self.y_test):
            raise ValueError("inputs and targets have different lengths")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"train/test input shapes differ: {tuple(self.x_train.shape[1:])} vs {tuple(self.x_test.shape[1:])}"
            )


@dataclass
class DatasetSplits:
    """Normalised train/val/test ``TensorDataset``s of (float32 inputs, int64 targets) plus metadata."""

    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    num_classes: int
    input_shape: tuple[int, ...]
    name: str
    mean: torch.Tensor | None = field(default=None, repr=False)
    std: torch.Tensor | None = field(default=None, repr=False)
    train_indices: torch.Tensor | None = field(default=None, repr=False)
    """Indices of the training examples in the original train pool."""
    val_indices: torch.Tensor | None = field(default=None, repr=False)
    """Indices of the validation examples in the original train pool."""

    def loaders(
        self, batch_size: int, *, shuffle_train: bool = True, seed: int = 0, **loader_kwargs
    ) -> tuple[DataLoader, DataLoader, DataLoader]:
        """Return (train, val, test) DataLoaders; train shuffling uses a generator seeded with ``seed``."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        gen = torch.Generator().manual_seed(seed)
        train = DataLoader(self.train, batch_size=batch_size, shuffle=shuffle_train, generator=gen, **loader_kwargs)
        val = DataLoader(self.val, batch_size=batch_size, shuffle=False, **loader_kwargs)
        test = DataLoader(self.test, batch_size=batch_size, shuffle=False, **loader_kwargs)
        return train, val, test

    def __len__(self) -> int:
        return len(self.train)

    def __repr__(self) -> str:
        return (
            f"DatasetSplits(name={self.name!r}, train={len(self.train)}, val={len(self.val)}, "
            f"test={len(self.test)}, input_shape={self.input_shape}, num_classes={self.num_classes})"
        )


def default_n_val(pool_size: int) -> int:
    """Default validation size: 10% of the train pool, at least 1 (if possible) and at most 5000."""
    if pool_size < 2:
        return 0
    return min(_MAX_DEFAULT_VAL, max(1, round(0.1 * pool_size)))


def normalise_stats(x: torch.Tensor, channel_dim: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of ``x`` (batch first) per entry of ``channel_dim`` (or global), shaped to broadcast."""
    xd = x.double()
    if channel_dim is None:
        mean, std = xd.mean(), xd.std(unbiased=False)
        shape = (1,) * (x.dim() - 1)
        mean, std = mean.reshape(shape), std.reshape(shape)
    else:
        dim = channel_dim % (x.dim() - 1) + 1  # position in the batched tensor
        reduce = [d for d in range(x.dim()) if d != dim]
        mean = xd.mean(dim=reduce, keepdim=True)[0]
        std = xd.std(dim=reduce, keepdim=True, unbiased=False)[0]
    std = torch.where(std > _EPS, std, torch.ones_like(std))  # constant channels stay centred, not blown up
    return mean.float(), std.float()


def split_sizes(pool: int, *, name: str, n_train: int | None = None, n_val: int | None = None,
                about: str = "") -> tuple[int, int]:  # fmt: skip
    """``(n_train, n_val)`` that :func:`make_splits` takes from a train pool of ``pool`` examples (``None``:
    the defaults), or a ValueError saying what the pool can give; ``about`` describes the pool in it."""
    given_val = n_val is not None
    if n_val is None:
        n_val = default_n_val(pool)
    if not isinstance(n_val, int) or isinstance(n_val, bool) or n_val < 0 or n_val >= pool:
        raise ValueError(
            f"invalid n_val={n_val!r} for dataset {name!r}: must be an integer in [0, {pool - 1}] "
            f"(the train pool has {pool} examples{about} and at least one must remain for training)"
        )
    max_train = pool - n_val
    if n_train is None:
        n_train = max_train
    if not isinstance(n_train, int) or isinstance(n_train, bool) or not 1 <= n_train <= max_train:
        val = f"n_val={n_val}" if given_val else f"the default n_val={n_val} (10%, at most {_MAX_DEFAULT_VAL})"
        raise ValueError(
            f"invalid n_train={n_train!r} for dataset {name!r}: must be an integer in [1, {max_train}]; "
            f"the maximum is {max_train} = the train pool of {pool}{about} minus {val}"
        )
    return n_train, n_val


def make_splits(
    raw: RawData, *, name: str, seed: int = 0, n_train: int | None = None, n_val: int | None = None
) -> DatasetSplits:
    """Carve validation from the train pool, subsample ``n_train`` (nested prefix), normalise on train."""
    pool = len(raw.y_train)
    n_train, n_val = split_sizes(pool, name=name, n_train=n_train, n_val=n_val)

    perm = torch.randperm(pool, generator=torch.Generator().manual_seed(seed))
    val_idx = perm[:n_val]
    pool_idx = perm[n_val:]  # full training pool (after validation), used for statistics
    train_idx = pool_idx[:n_train]

    mean, std = normalise_stats(raw.x_train[pool_idx], raw.channel_dim)

    def _make(x: torch.Tensor, y: torch.Tensor) -> TensorDataset:
        x = ((x.float() - mean) / std).contiguous()
        return TensorDataset(x, y.long().contiguous())

    return DatasetSplits(
        train=_make(raw.x_train[train_idx], raw.y_train[train_idx]),
        val=_make(raw.x_train[val_idx], raw.y_train[val_idx]),
        test=_make(raw.x_test, raw.y_test),
        num_classes=int(raw.num_classes),
        input_shape=tuple(int(s) for s in raw.x_train.shape[1:]),
        name=name,
        mean=mean,
        std=std,
        train_indices=train_idx,
        val_indices=val_idx,
    )
