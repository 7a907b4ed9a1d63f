"""Tests for the dataset registry (gnsel.data). Offline: torchvision files are written locally."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from gnsel.data import DatasetNotFoundError, DatasetSplits, list_datasets, load_dataset
from gnsel.data.mnist1d import mnist1d_args, mnist1d_cache_path

M1D_N = 2000  # small mnist1d for speed: 1600 train pool / 400 test


@pytest.fixture(scope="module")
def m1d_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("m1d")


def _rows(x: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in x}


# --------------------------------------------------------------------------- registry


def test_list_datasets_contains_all():
    names = list_datasets()
    assert names == sorted(names)
    for n in ["mnist1d", "digits", "synthetic", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn"]:
        assert n in names


def test_unknown_dataset_lists_choices():
    with pytest.raises(ValueError) as ei:
        load_dataset("imagenet42")
    msg = str(ei.value)
    assert "imagenet42" in msg
    for n in list_datasets():
        assert n in msg


# --------------------------------------------------------------------------- mnist1d


def test_mnist1d_shapes_and_normalisation(m1d_root):
    d = load_dataset("mnist1d", root=m1d_root, num_samples=M1D_N)
    assert isinstance(d, DatasetSplits) and d.name == "mnist1d"
    assert d.num_classes == 10 and d.input_shape == (40,)
    assert len(d.train) + len(d.val) == 1600 and len(d.test) == 400 and len(d.val) == 160
    x, y = d.train.tensors
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (40,)
    assert set(y.unique().tolist()) <= set(range(10))
    assert abs(x.mean().item()) < 1e-4 and abs(x.std(unbiased=False).item() - 1) < 1e-3
    assert d.test.tensors[0].dtype == torch.float32 and d.val.tensors[1].dtype == torch.int64


def test_mnist1d_cache_written_and_read(m1d_root, monkeypatch):
    load_dataset("mnist1d", root=m1d_root, num_samples=M1D_N)
    path = mnist1d_cache_path(mnist1d_args(num_samples=M1D_N), m1d_root)
    assert path.is_file() and path.suffix == ".npz" and path.parent == m1d_root / "mnist1d"
    import mnist1d.data

    def boom(*a, **k):
        raise AssertionError("make_dataset called although a cache exists")

    monkeypatch.setattr(mnist1d.data, "make_dataset", boom)
    d = load_dataset("mnist1d", root=m1d_root, num_samples=M1D_N)
    assert len(d.test) == 400
    # different generation args -> different cache key -> would regenerate
    assert mnist1d_cache_path(mnist1d_args(num_samples=M1D_N, shuffle_seq=True), m1d_root) != path
    with pytest.raises(AssertionError, match="cache"):
        load_dataset("mnist1d", root=m1d_root, num_samples=M1D_N, shuffle_seq=True)


def test_mnist1d_deterministic_and_seeded(m1d_root):
    a = load_dataset("mnist1d", root=m1d_root, num_samples=M1D_N, seed=3)
    b = load_dataset("mnist1d", root=m1d_root, num_samples=M1D_N, seed=3)
    c = load_dataset("mnist1d", root=m1d_root, num_samples=M1D_N, seed=4)
    for s in ("train", "val", "test"):
        for ta, tb in zip(getattr(a, s).tensors, getattr(b, s).tensors):
            assert torch.equal(ta, tb)
    assert not torch.equal(a.val_indices, c.val_indices)
    # the test set is fixed across seeds (up to normalisation statistics)
    assert torch.equal(a.test.tensors[1], c.test.tensors[1])
    # generation does not clobber global RNGs
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    load_dataset("mnist1d", root=m1d_root, num_samples=M1D_N)
    assert np.random.rand() == expected


def test_mnist1d_splits_disjoint(m1d_root):
    d = load_dataset("mnist1d", root=m1d_root, num_samples=M1D_N, seed=1)
    assert set(d.train_indices.tolist()).isdisjoint(d.val_indices.tolist())
    tr, va, te = (_rows(s.tensors[0]) for s in (d.train, d.val, d.test))
    assert len(tr) == len(d.train) and len(va) == len(d.val)
    assert tr.isdisjoint(va) and tr.isdisjoint(te) and va.isdisjoint(te)


def test_mnist1d_nested_n_train(m1d_root):
    full = load_dataset("mnist1d", root=m1d_root, num_samples=M1D_N, seed=2)
    small = load_dataset("mnist1d", root=m1d_root, num_samples=M1D_N, seed=2, n_train=50)
    mid = load_dataset("mnist1d", root=m1d_root, num_samples=M1D_N, seed=2, n_train=300)
    assert len(small.train) == 50 and len(mid.train) == 300
    assert torch.equal(mid.train_indices[:50], small.train_indices)
    assert torch.equal(full.train_indices[:300], mid.train_indices)
    assert torch.equal(mid.train.tensors[0][:50], small.train.tensors[0])  # same normalisation too
    assert torch.equal(small.val.tensors[0], full.val.tensors[0])  # validation unaffected by n_train
    assert torch.equal(small.test.tensors[0], full.test.tensors[0])


@pytest.mark.parametrize("bad", [0, -5, 1441, 10**6])
def test_invalid_n_train(m1d_root, bad):
    with pytest.raises(ValueError, match="maximum is 1440"):
        load_dataset("mnist1d", root=m1d_root, num_samples=M1D_N, n_train=bad)


def test_invalid_n_val(m1d_root):
    with pytest.raises(ValueError, match="n_val"):
        load_dataset("mnist1d", root=m1d_root, num_samples=M1D_N, n_val=1600)
    d = load_dataset("mnist1d", root=m1d_root, num_samples=M1D_N, n_val=0)
    assert len(d.val) == 0 and len(d.train) == 1600


def test_loaders_deterministic(m1d_root):
    d = load_dataset("mnist1d", root=m1d_root, num_samples=M1D_N, n_train=200)
    first = [next(iter(d.loaders(32, seed=7)[0]))[1] for _ in range(2)]
    assert torch.equal(first[0], first[1])
    other = next(iter(d.loaders(32, seed=8)[0]))[1]
    assert not torch.equal(first[0], other)
    tr, va, te = d.loaders(64, shuffle_train=False)
    assert torch.equal(next(iter(tr))[1], d.train.tensors[1][:64])
    assert sum(len(b[1]) for b in te) == len(d.test)


# --------------------------------------------------------------------------- digits / synthetic


def test_digits_basics():
    d = load_dataset("digits", seed=0, n_train=100)
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10 and len(d.train) == 100
    full = load_dataset("digits", seed=0)
    assert len(full.train) + len(full.val) + len(full.test) == 1797
    assert full.train.tensors[0].shape[1:] == (1, 8, 8) and full.train.tensors[1].dtype == torch.int64
    assert torch.equal(full.train_indices[:100], d.train_indices)


def test_synthetic_basics():
    d = load_dataset("synthetic", seed=5, n_features=7, n_classes=3, n_samples=600)
    assert d.input_shape == (7,) and d.num_classes == 3
    assert len(d.train) + len(d.val) + len(d.test) == 600
    x = d.train.tensors[0]
    assert torch.allclose(x.mean(0), torch.zeros(7), atol=0.15)  # per-feature normalisation (on full pool)
    again = load_dataset("synthetic", seed=5, n_features=7, n_classes=3, n_samples=600)
    assert torch.equal(again.train.tensors[0], x)
    other = load_dataset("synthetic", seed=6, n_features=7, n_classes=3, n_samples=600)
    assert not torch.equal(other.test.tensors[0], d.test.tensors[0])
    fixed = [load_dataset("synthetic", seed=s, data_seed=0, n_samples=600) for s in (1, 2)]
    assert torch.equal(fixed[0].test.tensors[1], fixed[1].test.tensors[1])


# --------------------------------------------------------------------------- torchvision (offline files)


def _write_idx(path: Path, arr: np.ndarray) -> None:
    """Write a uint8 array in the big-endian idx format of the MNIST raw files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def _make_mnist(root: Path, folder: str, n_train: int = 12, n_test: int = 5) -> None:
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)


def _pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def _make_cifar10(root: Path, per_batch: int = 3, n_test: int = 4) -> None:
    rng = np.random.default_rng(1)
    base = root / "cifar-10-batches-py"
    for i in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        _pickle(base / f"data_batch_{i}", {"data": data, "labels": [(i + j) % 10 for j in range(per_batch)]})
    _pickle(base / "test_batch", {"data": rng.integers(0, 256, (n_test, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]})
    _pickle(base / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})


def _make_cifar100(root: Path, n_train: int = 10, n_test: int = 4) -> None:
    rng = np.random.default_rng(2)
    base = root / "cifar-100-python"
    for name, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        _pickle(base / name, {"data": data, "fine_labels": [(7 * j) % 100 for j in range(n)]})
    _pickle(base / "meta", {"fine_label_names": [f"c{i}" for i in range(100)]})


def _make_svhn(root: Path, n_train: int = 10, n_test: int = 4) -> None:
    import scipy.io

    rng = np.random.default_rng(3)
    root.mkdir(parents=True, exist_ok=True)
    for name, n in (("train_32x32.mat", n_train), ("test_32x32.mat", n_test)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # SVHN labels 1..10, 10 == digit 0
        scipy.io.savemat(root / name, {"X": x, "y": y})


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_family_from_local_files(tmp_path, name, folder):
    _make_mnist(tmp_path, folder)
    d = load_dataset(name, root=tmp_path, n_val=2, seed=0)
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert (len(d.train), len(d.val), len(d.test)) == (10, 2, 5)
    x, y = d.train.tensors
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(d.test.tensors[1], torch.arange(5))
    # values are the written pixels, normalised with the train-pool statistics
    raw = np.frombuffer((tmp_path / folder / "raw" / "t10k-images-idx3-ubyte").read_bytes()[16:], np.uint8)
    expect = (torch.from_numpy(raw.reshape(5, 1, 28, 28).copy()).float() / 255 - d.mean) / d.std
    assert torch.allclose(d.test.tensors[0], expect, atol=1e-5)
    # nested subsample
    small = load_dataset(name, root=tmp_path, n_val=2, seed=0, n_train=4)
    assert torch.equal(small.train_indices, d.train_indices[:4])


def test_cifar10_from_local_files(tmp_path):
    _make_cifar10(tmp_path)
    # stock torchvision rejects locally-made files (MD5 of the official release) -> clear message
    with pytest.raises(RuntimeError, match="verify_checksums=False"):
        load_dataset("cifar10", root=tmp_path)
    d = load_dataset("cifar10", root=tmp_path, verify_checksums=False, n_val=3)
    assert d.input_shape == (3, 32, 32) and d.num_classes == 10
    assert (len(d.train), len(d.val), len(d.test)) == (12, 3, 4)
    assert torch.equal(d.test.tensors[1], torch.tensor([0, 1, 2, 3]))
    assert d.mean.shape == (3, 1, 1)  # per-channel statistics
    # channel layout: first test image, red channel = first 1024 bytes of the row
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as f:
        row = pickle.load(f)["data"][0]
    red = torch.from_numpy(row[:1024].reshape(32, 32).astype(np.float32)) / 255
    assert torch.allclose(d.test.tensors[0][0, 0], (red - d.mean[0]) / d.std[0], atol=1e-5)


def test_cifar100_from_local_files(tmp_path):
    _make_cifar100(tmp_path)
    d = load_dataset("cifar100", root=tmp_path, verify_checksums=False, n_val=2)
    assert d.input_shape == (3, 32, 32) and d.num_classes == 100
    assert (len(d.train), len(d.val), len(d.test)) == (8, 2, 4)
    assert torch.equal(d.test.tensors[1], torch.tensor([0, 7, 14, 21]))


def test_svhn_from_local_files(tmp_path):
    _make_svhn(tmp_path)
    with pytest.raises(RuntimeError, match="MD5"):
        load_dataset("svhn", root=tmp_path)
    d = load_dataset("svhn", root=tmp_path, verify_checksums=False, n_val=1)
    assert d.input_shape == (3, 32, 32) and d.num_classes == 10
    assert (len(d.train), len(d.val), len(d.test)) == (9, 1, 4)
    assert torch.equal(d.test.tensors[1], torch.tensor([1, 2, 3, 4]))
    all_train = torch.cat([d.train.tensors[1], d.val.tensors[1]])
    assert sorted(all_train.tolist()) == list(range(10))  # label 10 -> digit 0


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100", "svhn"])
def test_missing_files_clear_error(tmp_path, name):
    with pytest.raises(FileNotFoundError) as ei:
        load_dataset(name, root=tmp_path / "empty")
    assert isinstance(ei.value, DatasetNotFoundError)
    msg = str(ei.value)
    assert "--data-root" in msg and "--download" in msg and name in msg
    assert not (tmp_path / "empty").exists()  # nothing created, nothing downloaded
