"""torchvision image datasets: mnist, fashion_mnist, cifar10, cifar100, svhn.

The real torchvision dataset classes read the files (torchvision's on-disk layout
under ``root``); their arrays (``ds.data``/``ds.targets``) are converted to tensors
in bulk, no per-item transforms. Without ``download=True`` missing files raise
:class:`~gnsel.data.registry.DatasetNotFoundError` naming ``--data-root``/``--download``.

Integrity checks: torchvision's MNIST/FashionMNIST only check that the raw files
exist (the MD5s are for the downloaded archives), so they load any well-formed
idx files as-is. CIFAR-10/100 and SVHN compare every file with a hard-coded MD5 of
the official release, so files made locally (tests, re-encoded copies) cannot be
loaded by the stock classes. ``verify_checksums=True`` (the default) uses the stock
classes unchanged; ``verify_checksums=False`` uses thin subclasses whose only change
is that the integrity check tests file *existence* instead of the MD5 (parsing is
still torchvision's own code). It is a no-op for mnist/fashion_mnist.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets as tvd

from .registry import DatasetNotFoundError, DatasetShape, default_root, register_dataset
from .splits import RawData

__all__ = ["VISION_DATASETS", "expected_files"]


class _ExistenceOnlyCIFARMixin:
    """CIFAR variant whose integrity check is file existence instead of the official MD5s."""

    root: str
    base_folder: str
    train_list: list
    test_list: list
    meta: dict

    def _check_integrity(self) -> bool:
        return all(
            os.path.isfile(os.path.join(self.root, self.base_folder, f)) for f, _ in self.train_list + self.test_list
        )

    def _load_meta(self) -> None:
        path = os.path.join(self.root, self.base_folder, self.meta["filename"])
        if not os.path.isfile(path):
            raise RuntimeError(f"Dataset metadata file not found: {path}")
        with open(path, "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class _CIFAR10NoMD5(_ExistenceOnlyCIFARMixin, tvd.CIFAR10):
    """torchvision CIFAR10 without the MD5 comparison (``verify_checksums=False``)."""


class _CIFAR100NoMD5(_ExistenceOnlyCIFARMixin, tvd.CIFAR100):
    """torchvision CIFAR100 without the MD5 comparison (``verify_checksums=False``)."""


class _SVHNNoMD5(tvd.SVHN):
    """torchvision SVHN without the MD5 comparison (``verify_checksums=False``)."""

    def _check_integrity(self) -> bool:
        return os.path.isfile(os.path.join(self.root, self.filename))


@dataclass(frozen=True)
class _Spec:
    kind: str  # "mnist" | "cifar" | "svhn"
    cls: type
    cls_no_md5: type
    num_classes: int
    sizes: tuple[int, int]  # (train, test) of the official release: what n_train is checked against
    input_shape: tuple[int, int, int]


VISION_DATASETS: dict[str, _Spec] = {
    "mnist": _Spec("mnist", tvd.MNIST, tvd.MNIST, 10, (60000, 10000), (1, 28, 28)),
    "fashion_mnist": _Spec("mnist", tvd.FashionMNIST, tvd.FashionMNIST, 10, (60000, 10000), (1, 28, 28)),
    "cifar10": _Spec("cifar", tvd.CIFAR10, _CIFAR10NoMD5, 10, (50000, 10000), (3, 32, 32)),
    "cifar100": _Spec("cifar", tvd.CIFAR100, _CIFAR100NoMD5, 100, (50000, 10000), (3, 32, 32)),
    "svhn": _Spec("svhn", tvd.SVHN, _SVHNNoMD5, 10, (73257, 26032), (3, 32, 32)),
}


def expected_files(name: str, root: str | Path) -> list[Path]:
    """Files torchvision needs under ``root`` to load dataset ``name`` without downloading."""
    spec, root = VISION_DATASETS[name], Path(root)
    cls = spec.cls
    if spec.kind == "mnist":
        raw = root / cls.__name__ / "raw"
        return [raw / os.path.splitext(os.path.basename(f))[0] for f, _ in cls.resources]
    if spec.kind == "cifar":
        files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return [root / cls.base_folder / f for f in files]
    return [root / cls.split_list[s][1] for s in ("train", "test")]


def _legacy_mnist_present(spec: _Spec, root: Path) -> bool:
    processed = root / spec.cls.__name__ / "processed"
    return spec.kind == "mnist" and all((processed / f).is_file() for f in ("training.pt", "test.pt"))


def _to_tensors(spec: _Spec, ds) -> tuple[torch.Tensor, torch.Tensor]:
    """Bulk-convert a torchvision dataset to (uint8 NCHW images, int64 targets)."""
    if spec.kind == "mnist":
        x = torch.as_tensor(ds.data).unsqueeze(1)
        y = torch.as_tensor(ds.targets)
    elif spec.kind == "cifar":
        x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2)  # NHWC -> NCHW
        y = torch.as_tensor(np.asarray(ds.targets, dtype=np.int64))
    else:
        x = torch.from_numpy(np.ascontiguousarray(ds.data))  # torchvision already made it NCHW
        y = torch.as_tensor(np.asarray(ds.labels, dtype=np.int64))
    return x, y.long()


def _open(spec: _Spec, name: str, root: Path, train: bool, download: bool, verify: bool):
    cls = spec.cls if verify else spec.cls_no_md5
    split_kw = {"split": "train" if train else "test"} if spec.kind == "svhn" else {"train": train}
    try:
        return cls(root=str(root), download=download, **split_kw)
    except RuntimeError as e:
        if spec.kind != "mnist" and verify and all(p.is_file() for p in expected_files(name, root)):
            raise RuntimeError(
                f"{name}: the files under {root} exist but fail torchvision's MD5 check against the official "
                f"release (corrupted or not the official files). Re-fetch them with --download, or pass "
                f"verify_checksums=False to load locally-made files. torchvision said: {e}"
            ) from e
        raise


def _build(name: str, *, root: Path | None, download: bool, verify_checksums: bool) -> RawData:
    spec = VISION_DATASETS[name]
    root = root if root is not None else default_root()
    if not download:
        missing = [p for p in expected_files(name, root) if not p.is_file()]
        if missing and not _legacy_mnist_present(spec, root):
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise DatasetNotFoundError(
                f"dataset {name!r} not found under data root {str(root)!r} (missing: "
                f"{', '.join(str(p) for p in missing[:3])}{more}). Pass --data-root pointing to a directory that "
                f"holds the torchvision files, or --download to fetch them "
                f"(Python: load_dataset({name!r}, root=..., download=True))."
            )
    if download:
        root.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr = _to_tensors(spec, _open(spec, name, root, True, download, verify_checksums))
    x_te, y_te = _to_tensors(spec, _open(spec, name, root, False, download, verify_checksums))
    return RawData(
        x_train=x_tr.float().div_(255.0),
        y_train=y_tr,
        x_test=x_te.float().div_(255.0),
        y_test=y_te,
        num_classes=spec.num_classes,
        channel_dim=0,  # per-channel mean/std
    )


def _register(name: str) -> None:
    spec = VISION_DATASETS[name]

    def describe(*, verify_checksums: bool = True) -> DatasetShape:
        """The official release's sizes (locally made files, ``verify_checksums=False``, may hold fewer)."""
        del verify_checksums
        return DatasetShape(pool=spec.sizes[0], test=spec.sizes[1], input_shape=spec.input_shape,
                            num_classes=spec.num_classes)  # fmt: skip

    def builder(
        *, seed: int = 0, root: Path | None = None, download: bool = False, verify_checksums: bool = True
    ) -> RawData:
        del seed
        return _build(name, root=root, download=download, verify_checksums=verify_checksums)

    builder.__name__ = f"build_{name}"
    builder.__doc__ = f"torchvision {VISION_DATASETS[name].cls.__name__} as uint8->float32 NCHW tensors."
    register_dataset(name, describe=describe)(builder)


for _name in VISION_DATASETS:
    _register(_name)
