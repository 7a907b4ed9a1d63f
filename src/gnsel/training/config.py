"""Training configuration: a frozen, JSON-serialisable ``TrainConfig`` with validation and a stable id.

Also the canonical JSON of a configuration (:func:`canonical_json`), whose hash (:func:`config_hash`)
is a run's id and the store's run key.

>>> cfg = TrainConfig(dataset="digits", model_kwargs={"width": 32}, epochs=3)
>>> cfg.validate()
>>> TrainConfig.from_dict(cfg.to_dict()) == cfg
True
>>> len(cfg.run_id())
16
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data import DatasetShape, check_data, list_datasets
from ..keys import canonical_json, config_hash, json_default
from ..models import check_model_kwargs, create_model

__all__ = ["DATA_FIELDS", "OPTIMIZERS", "SCHEDULES", "TrainConfig", "canonical_json", "config_hash", "json_default"]

OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "adamw")
SCHEDULES: tuple[str, ...] = ("constant", "cosine", "step")

# The fields that define the data a run trains, validates and measures GN on (the probe set is drawn from the
# training split with data_seed): a search compares models on the same data, so it never searches these.
DATA_FIELDS: tuple[str, ...] = ("dataset", "dataset_kwargs", "n_train", "n_val", "data_seed", "probe_size")

# Keys that ``load_dataset`` sets itself from the config; they may not appear in ``dataset_kwargs``.
_RESERVED_DATASET_KWARGS = ("seed", "n_train", "n_val", "root", "download", "name")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run; equal configs give identical runs on the CPU.

    The training protocol (Jiang et al. 2020): a run trains until its training cross-entropy (the full
    training split, eval mode, after an epoch) is at most ``stop_loss`` -- it *converged* -- or until
    ``epochs`` epochs, the maximum; ``stop_loss=None`` trains all ``epochs``. The schedule spans ``epochs``.
    """

    dataset: str = "mnist1d"
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    n_train: int | None = None
    n_val: int | None = None
    data_seed: int = 0
    model: str = "mlp"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    batch_size: int = 128
    epochs: int = 20
    stop_loss: float | None = 0.01
    seed: int = 0
    probe_size: int = 512
    trajectory_gn: bool = True
    measure_gn: bool = True
    device: str = "auto"

    def __post_init__(self) -> None:
        """Store float fields given as ints as floats, so that ``lr=1`` and ``lr=1.0`` hash alike."""
        for name in ("lr", "momentum", "weight_decay", "stop_loss"):
            v = getattr(self, name)
            if isinstance(v, int) and not isinstance(v, bool):
                object.__setattr__(self, name, float(v))

    def __hash__(self) -> int:
        """Hash by ``run_id`` (the dict fields make the default field-tuple hash impossible)."""
        return hash(self.run_id())

    # ------------------------------------------------------------------ serialisation
    @classmethod
    def field_names(cls) -> list[str]:
        """Names of all configuration fields, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        """A plain (deep-copied) dict of all fields, JSON-serialisable."""
        return {name: copy.deepcopy(getattr(self, name)) for name in self.field_names()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        """Build from a mapping of field values; missing keys take defaults, unknown keys are a ValueError."""
        if not isinstance(d, Mapping):
            raise ValueError(f"TrainConfig.from_dict needs a mapping, got {type(d).__name__}")
        valid = cls.field_names()
        unknown = sorted(str(k) for k in d if k not in valid)
        if unknown:
            raise ValueError(
                f"unknown TrainConfig key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(valid)}"
            )
        return cls(**copy.deepcopy(dict(d)))

    def run_id(self) -> str:
        """Stable 16-hex-digit id of this configuration: ``config_hash(self.to_dict())``."""
        return config_hash(self.to_dict())

    # ------------------------------------------------------------------ validation
    def validate(self) -> "TrainConfig":
        """Raise ValueError with a clear message on the first bad field; return ``self`` when all is well."""
        self._check_types()
        self._check_numbers()
        self._check_choices()
        shape = self._check_dataset()
        self._check_model(shape)
        self._check_device()
        config_hash(self.to_dict())  # everything must be plain JSON
        return self

    def _check_types(self) -> None:
        """Each field has its declared type (ints are accepted for floats, bools are never ints)."""
        for name in self.field_names():
            _check_type(name, getattr(self, name), _FIELD_TYPES[name])

    def _check_numbers(self) -> None:
        """Positive lr/epochs/batch_size/probe_size, sensible momentum, weight decay and split sizes."""
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        for name in ("epochs", "batch_size", "probe_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not (math.isfinite(self.momentum) and 0.0 <= self.momentum < 1.0):
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0.0):
            raise ValueError(f"weight_decay must be a non-negative finite number, got {self.weight_decay!r}")
        if self.stop_loss is not None and not (math.isfinite(self.stop_loss) and self.stop_loss > 0):
            raise ValueError(f"stop_loss must be a positive finite number or None (no criterion), got {self.stop_loss!r}")
        if self.n_train is not None and self.n_train < 1:
            raise ValueError(f"n_train must be a positive integer or None, got {self.n_train!r}")
        if self.n_val is not None and self.n_val < 0:
            raise ValueError(f"n_val must be a non-negative integer or None, got {self.n_val!r}")

    def _check_choices(self) -> None:
        """Known optimizer and schedule."""
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choices: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choices: {', '.join(SCHEDULES)}")

    def _check_dataset(self) -> DatasetShape | None:
        """A registered dataset, ``dataset_kwargs`` its builder accepts (none that clash with the config's own
        fields), and ``n_train``/``n_val`` that its train pool can give; what the data holds, when known."""
        if self.dataset.lower() not in list_datasets():
            raise ValueError(f"unknown dataset {self.dataset!r}; choices: {', '.join(list_datasets())}")
        clash = [k for k in self.dataset_kwargs if k in _RESERVED_DATASET_KWARGS]
        if clash:
            raise ValueError(
                f"dataset_kwargs may not set {', '.join(map(repr, clash))}: use the config fields "
                "data_seed, n_train and n_val instead"
            )
        return check_data(self.dataset, self.dataset_kwargs, n_train=self.n_train, n_val=self.n_val)

    def _check_model(self, shape: DatasetShape | None) -> None:
        """A registered model whose ``model_kwargs`` are accepted hyper-parameters of the right type, and
        that can be built for the dataset's inputs and classes (on the meta device: nothing is allocated)."""
        check_model_kwargs(self.model, self.model_kwargs)  # unknown model -> ValueError listing the choices
        if shape is None:
            return
        try:
            key = f"{self.model}|{shape.input_shape}|{shape.num_classes}|{canonical_json(self.model_kwargs)}"
        except (TypeError, ValueError):
            return  # not plain JSON: validate() says so next
        if key not in _BUILDS:
            if len(_BUILDS) > 1024:
                _BUILDS.clear()
            _BUILDS[key] = _build_error(self.model, self.model_kwargs, shape)
        if _BUILDS[key]:
            raise ValueError(
                f"model {self.model!r} with {self.model_kwargs} cannot be built for dataset {self.dataset!r} "
                f"(input shape {shape.input_shape}, {shape.num_classes} classes): {_BUILDS[key]}"
            )

    def _check_device(self) -> None:
        """``"auto"`` or a device string torch understands (``"cpu"``, ``"cuda"``, ``"cuda:1"``)."""
        if self.device == "auto":
            return
        try:
            torch.device(self.device)
        except RuntimeError as err:
            raise ValueError(f"unknown device {self.device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from err


_BUILDS: dict[str, str | None] = {}  # model | input shape | classes | kwargs -> the builder's error, None: builds


def _build_error(model: str, kwargs: Mapping[str, Any], shape: DatasetShape) -> str | None:
    """The ValueError message of building ``model`` for ``shape`` on the meta device, None if it builds.

    Only the builder's own ValueErrors (a width of 0, an input shape the model cannot take) count: any
    other exception (an operation the meta device lacks) is left for the real build to report.
    """
    try:
        with torch.device("meta"):
            create_model(model, num_classes=shape.num_classes, input_shape=shape.input_shape, **kwargs)
    except ValueError as err:
        return str(err)
    except Exception:  # noqa: BLE001 - not a bad configuration: the real build will tell
        return None
    return None


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "dataset": (str,),
    "dataset_kwargs": (dict,),
    "n_train": (int, type(None)),
    "n_val": (int, type(None)),
    "data_seed": (int,),
    "model": (str,),
    "model_kwargs": (dict,),
    "optimizer": (str,),
    "lr": (float, int),
    "momentum": (float, int),
    "weight_decay": (float, int),
    "schedule": (str,),
    "batch_size": (int,),
    "epochs": (int,),
    "stop_loss": (float, int, type(None)),
    "seed": (int,),
    "probe_size": (int,),
    "trajectory_gn": (bool,),
    "measure_gn": (bool,),
    "device": (str,),
}


def _check_type(name: str, value: Any, types: tuple[type, ...]) -> None:
    """ValueError unless ``value`` is one of ``types``; a bool only passes where bool is asked for."""
    ok = isinstance(value, types) and (bool in types or not isinstance(value, bool))
    if not ok:
        want = " or ".join("None" if t is type(None) else t.__name__ for t in types)
        raise ValueError(f"{name} must be {want}, got {value!r} ({type(value).__name__})")
