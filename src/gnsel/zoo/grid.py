"""Grids of training configurations: a YAML file or a named preset, expanded to ``TrainConfig``s.

A grid names datasets, models with their hyper-parameter values, training hyper-parameter values
and seeds; every value may be a single value or a list, and the grid is their Cartesian product::

    datasets: [mnist1d]            # or `dataset: mnist1d`
    dataset_kwargs: {}
    models:                        # model -> its hyper-parameters (values or lists)
      mlp: {width: [64, 512], depth: 2}
      cnn1d: {channels: [16, 64]}
    train:                         # TrainConfig fields (values or lists)
      lr: [0.01, 0.1]
      n_train: 1000                # one value: a zoo searched or replayed holds its data fixed
      epochs: 15
    seeds: [0]

A grid is checked whole before anything trains: a file that is empty, not a mapping or not YAML, an
unknown key, a list where a mapping belongs, and every configuration's own validation
(:meth:`TrainConfig.validate`: the data can give ``n_train``, the dataset takes the ``dataset_kwargs``,
the model can be built) each give one ValueError naming the file and the problem.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping


from ..training import TrainConfig
from ..presets import list_presets as _list_presets
from ..presets import read_mapping, yaml_kind

_TOP_KEYS = ("name", "description", "dataset", "datasets", "dataset_kwargs", "models", "train", "seeds")
_NOT_IN_TRAIN = ("dataset", "dataset_kwargs", "model", "model_kwargs", "seed")


@dataclass
class Grid:
    """A parsed grid: its name and the configurations it expands to."""

    name: str
    configs: list[TrainConfig]
    description: str = ""
    axes: dict[str, list[Any]] = field(default_factory=dict)


def list_presets() -> list[str]:
    """Names of the grids shipped with gnsel (``gnsel zoo build --preset NAME``)."""
    return _list_presets("gnsel.zoo")


def load_grid(source: str | Path | Mapping[str, Any]) -> Grid:
    """A grid from a preset name, a YAML file path, or an already-parsed mapping."""
    if isinstance(source, Mapping):
        return expand_grid(source)
    if not isinstance(source, (str, Path)):
        raise ValueError(f"a grid is a preset name, a YAML file or a mapping, got {source!r}")
    spec, name, where = read_mapping(source, "gnsel.zoo", "grid", "give at least 'models' (see docs/zoo.md)",
                                     f"grid keys ({', '.join(_TOP_KEYS)})")  # fmt: skip
    try:
        return expand_grid({"name": name, **spec})
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _values(key: str, v: Any) -> list[Any]:
    values = list(v) if isinstance(v, (list, tuple)) else [v]
    if not values:
        raise ValueError(f"grid value for {key!r} is an empty list: give at least one value")
    return values


def _product(spec: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where} must be a mapping of names to values or lists, got {type(spec).__name__}")
    keys = list(spec)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(_values(f"{where}.{k}", spec[k]) for k in keys))]


def _mapping(spec: Mapping[str, Any], key: str, example: str) -> dict[str, Any]:
    """``spec[key]`` as a dict (absent or null: empty), or a ValueError saying a mapping belongs there."""
    value = spec.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"'{key}' must be a mapping, e.g. {example}, got a {yaml_kind(value)}: {value!r}")
    return dict(value)


def expand_grid(spec: Mapping[str, Any]) -> Grid:
    """Validate a grid mapping and expand it; every error names the bad key or value."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"a grid must be a mapping of grid keys ({', '.join(_TOP_KEYS)}), got a {yaml_kind(spec)}")
    unknown = [k for k in spec if k not in _TOP_KEYS]
    if unknown:
        raise ValueError(f"unknown grid key(s) {unknown}; valid keys: {', '.join(_TOP_KEYS)}")
    if not set(spec) - {"name", "description"}:
        raise ValueError("the grid is empty: give at least 'models' (see docs/zoo.md)")
    if "dataset" in spec and "datasets" in spec:
        raise ValueError("give either 'dataset' or 'datasets', not both")
    datasets = _values("datasets", spec.get("datasets", spec.get("dataset", "mnist1d")))
    bad = [d for d in datasets if not isinstance(d, str)]
    if bad:
        raise ValueError(f"'datasets' must be dataset names, got {bad[0]!r}")
    if "models" in spec and not spec["models"]:
        raise ValueError("'models' is empty: map at least one model to its hyper-parameters, e.g. {mlp: {width: 64}}")
    models = _mapping(spec, "models", "{mlp: {width: [64, 256]}}") or {"mlp": {}}
    train = _mapping(spec, "train", "{lr: [0.01, 0.1], epochs: 20}")
    dataset_kwargs = _mapping(spec, "dataset_kwargs", "{num_samples: 4000}")
    bad = [k for k in train if k in _NOT_IN_TRAIN or k not in TrainConfig.field_names()]
    if bad:
        valid = [k for k in TrainConfig.field_names() if k not in _NOT_IN_TRAIN]
        raise ValueError(f"unknown training hyper-parameter(s) {bad} under 'train'; valid: {', '.join(valid)}")
    seeds = _values("seeds", spec.get("seeds", [0]))
    configs: list[TrainConfig] = []
    seen: set[str] = set()
    for dataset, (model, mspec), tkw, seed in itertools.product(
        datasets, models.items(), _product(train, "train"), seeds
    ):
        for mkw in _product(mspec or {}, f"models.{model}"):
            cfg = TrainConfig(dataset=dataset, dataset_kwargs=dict(dataset_kwargs),
                              model=model, model_kwargs=mkw, seed=seed, **tkw)
            try:
                cfg.validate()
            except ValueError as err:
                raise ValueError(f"grid entry (dataset={dataset}, model={model}, {mkw}, {tkw}, seed={seed}): {err}") from err
            if cfg.run_id() not in seen:
                seen.add(cfg.run_id())
                configs.append(cfg)
    axes = {"datasets": datasets, "models": list(models), "seeds": seeds,
            **{k: _values(k, v) for k, v in train.items()}}
    for model, mspec in models.items():
        for k, v in (mspec or {}).items():
            axes[f"{model}.{k}"] = _values(k, v)
    return Grid(str(spec.get("name", "grid")), configs, str(spec.get("description", "")), axes)
