"""Search spaces over ``TrainConfig`` fields and architectures, from YAML, checked before anything runs.

A space names the dataset, the fixed fields and the searched ones::

    dataset: mnist1d
    dataset_kwargs: {num_samples: 2000}
    fixed: {epochs: 10, probe_size: 256}
    space:
      lr: {loguniform: [0.005, 0.2]}
      batch_size: {choice: [32, 128]}
      weight_decay: {choice: [0.0, 0.0005]}
      model: {choice: [mlp, cnn1d]}
      model_kwargs.width: {choice: [32, 256]}       # applies when model == mlp
      model_kwargs.channels: {choice: [8, 32]}      # applies when model == cnn1d

Kinds: ``choice`` (a list), ``grid`` (a list, every value tried: Ray's ``grid_search``),
``uniform`` and ``loguniform`` (``[low, high]`` floats) and ``randint`` (``[low, high]`` integers,
both ends included). ``model_kwargs.K`` is a hyper-parameter of the architecture; it applies to a
trial whose model accepts ``K`` (per the model registry) and is dropped otherwise, so one space can
search several architectures. ``fixed`` may also hold ``model_kwargs`` (applied where accepted).
The data is never searched: ``dataset`` and ``dataset_kwargs`` are top-level keys and the other
data-defining fields (``n_train``, ``n_val``, ``data_seed``, ``probe_size``) go under ``fixed``, so
every trial trains, validates and measures GN on the same examples.

:func:`load_space` validates everything it can without training: unknown hyper-parameters, empty or
inverted ranges, non-positive log bounds, unknown models or model hyper-parameters, values a
``TrainConfig`` rejects. What depends on the algorithm and objective is each algorithm's own check
(:func:`gnsel.tune.algorithms.check_search`). The space translates to Ray Tune
(:meth:`SearchSpace.tune_space`, :meth:`SearchSpace.tune_grid`), to an Optuna define-by-run
function with the architecture conditions (:meth:`SearchSpace.optuna_space`), to ConfigSpace with
conditions for BOHB (:meth:`SearchSpace.configspace`) and to PBT mutations
(:meth:`SearchSpace.pbt_mutations`).
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..models import list_models, model_defaults
from ..presets import read_yaml
from ..training import DATA_FIELDS, TrainConfig

__all__ = ["KINDS", "PBT_MUTABLE", "Param", "SearchSpace", "load_space"]

KINDS: tuple[str, ...] = ("choice", "grid", "uniform", "loguniform", "randint")
_TOP_KEYS = ("name", "description", "dataset", "dataset_kwargs", "fixed", "space")
# Fields that are not hyper-parameters of a search: the data, the budget, what is measured, where it runs.
_NOT_SEARCHABLE = (*DATA_FIELDS, "model_kwargs", "epochs", "measure_gn", "trajectory_gn", "device")
_NOT_FIXED = ("dataset", "dataset_kwargs")
_MK = "model_kwargs."
PBT_MUTABLE = ("lr", "weight_decay")  # what population-based training perturbs




def _plain(value: Any) -> Any:
    """numpy/torch scalars (as some searchers return them) as plain Python values."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (TypeError, ValueError):
            return value
    return value


@dataclass(frozen=True)
class Param:
    """One searched hyper-parameter: ``name`` (a TrainConfig field or ``model_kwargs.K``), its kind and values."""

    name: str
    kind: str
    values: tuple[Any, ...] = ()  # choice / grid
    low: float | int | None = None  # uniform / loguniform / randint
    high: float | int | None = None

    @property
    def finite(self) -> bool:
        """Whether the parameter has a finite list of values (choice or grid)."""
        return self.kind in ("choice", "grid")

    @property
    def is_model_kwarg(self) -> bool:
        return self.name.startswith(_MK)

    @property
    def key(self) -> str:
        """The model hyper-parameter's own name for ``model_kwargs.K``, else the field name."""
        return self.name[len(_MK):] if self.is_model_kwarg else self.name

    def candidates(self) -> list[Any]:
        """The values a validation has to try: every listed value, or both ends of a range."""
        return list(self.values) if self.finite else [self.low, self.high]

    def describe(self) -> str:
        if self.finite:
            return f"{self.kind} {list(self.values)}"
        return f"{self.kind} [{self.low}, {self.high}]"

    # ---------------------------------------------------------------- translations
    def to_tune(self) -> Any:
        """The Ray Tune domain (``tune.choice``, ``tune.loguniform``, ``tune.grid_search`` ...)."""
        from ray import tune  # heavy: ray

        if self.kind == "grid":
            return tune.grid_search(list(self.values))
        if self.kind == "choice":
            return tune.choice(list(self.values))
        if self.kind == "uniform":
            return tune.uniform(self.low, self.high)
        if self.kind == "loguniform":
            return tune.loguniform(self.low, self.high)
        return tune.randint(self.low, self.high + 1)  # Ray's upper bound is exclusive

    def suggest(self, trial: Any) -> Any:
        """Sample from an Optuna trial (define-by-run)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.values))
        if self.kind == "uniform":
            return trial.suggest_float(self.name, self.low, self.high)
        if self.kind == "loguniform":
            return trial.suggest_float(self.name, self.low, self.high, log=True)
        if self.kind == "randint":
            return trial.suggest_int(self.name, self.low, self.high)
        raise ValueError(f"{self.name}: the grid kind cannot be sampled by Optuna")

    def to_configspace(self) -> Any:
        """The ConfigSpace hyper-parameter (choices become categorical)."""
        import ConfigSpace as CS  # heavy: ConfigSpace

        if self.kind == "choice":
            return CS.CategoricalHyperparameter(self.name, list(self.values))
        if self.kind in ("uniform", "loguniform"):
            return CS.UniformFloatHyperparameter(
                self.name, float(self.low), float(self.high), log=self.kind == "loguniform"
            )
        if self.kind == "randint":
            return CS.UniformIntegerHyperparameter(self.name, int(self.low), int(self.high))
        raise ValueError(f"{self.name}: the grid kind has no ConfigSpace equivalent")


@dataclass
class SearchSpace:
    """A validated search space: the base configuration and the searched parameters."""

    dataset: str
    dataset_kwargs: dict[str, Any]
    fixed: dict[str, Any]
    params: dict[str, Param]
    name: str = "space"
    description: str = ""
    spec: dict[str, Any] = field(default_factory=dict, repr=False)  # the mapping it was read from

    # ---------------------------------------------------------------- configurations
    @property
    def models(self) -> list[str]:
        """Every model a trial of this space may use."""
        p = self.params.get("model")
        return list(p.values) if p is not None else [self.fixed.get("model", TrainConfig.model)]

    def base(self, **overrides: Any) -> dict[str, Any]:
        """The fixed part of every trial's configuration (``overrides`` win over ``fixed``)."""
        out = {"dataset": self.dataset, "dataset_kwargs": copy.deepcopy(self.dataset_kwargs)}
        out.update(copy.deepcopy(self.fixed))
        out.update(overrides)
        return out

    def resolve(self, point: Mapping[str, Any], **overrides: Any) -> TrainConfig:
        """The ``TrainConfig`` of one sampled ``point`` (keys as in the space; a grid point under ``point``).

        Model hyper-parameters the trial's model does not accept are dropped; numpy scalars and labels
        returned by searchers become the space's own values.
        """
        flat = self.point(point)
        cfg = self.base(**overrides)
        model = flat.get("model", cfg.get("model", TrainConfig.model))
        accepted = model_defaults(model)
        mkw = {k: v for k, v in dict(cfg.get("model_kwargs") or {}).items() if k in accepted}
        for name, value in flat.items():
            p = self.params[name]
            if p.is_model_kwarg:
                if p.key in accepted:
                    mkw[p.key] = value
            else:
                cfg[name] = value
        cfg["model"] = model
        cfg["model_kwargs"] = mkw
        return TrainConfig.from_dict(cfg)

    def point(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The searched values of a trial's config, normalised (``point`` unpacked, numpy -> Python)."""
        raw = dict(config)
        if isinstance(raw.get("point"), Mapping):
            raw = {**raw.pop("point"), **raw}
        out = {}
        for name, value in raw.items():
            if name not in self.params:
                continue
            out[name] = self._normalise(self.params[name], _plain(value))
        return out

    def active(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The searched values that matter for this trial (model hyper-parameters of other models dropped)."""
        flat = self.point(config)
        accepted = model_defaults(flat.get("model", self.fixed.get("model", TrainConfig.model)))
        return {k: v for k, v in flat.items() if not (self.params[k].is_model_kwarg and self.params[k].key not in accepted)}

    @staticmethod
    def _normalise(p: Param, value: Any) -> Any:
        if p.finite:
            for v in p.values:  # the listed value itself (type included), also from a label
                if v == value and type(v) is type(value):
                    return v
            for v in p.values:
                if v == value or str(v) == str(value):
                    return v
            return value
        if p.kind == "randint" and isinstance(value, float) and value.is_integer():
            return int(value)
        if p.kind in ("uniform", "loguniform") and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value

    # ---------------------------------------------------------------- algorithm checks
    # ---------------------------------------------------------------- translations
    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the (finite) values, deduplicated on the resolved configuration.

        A model hyper-parameter that does not apply to a point's model is left out of the point, so that
        e.g. ``width`` x ``channels`` does not repeat each MLP once per ``channels`` value.
        """
        names = list(self.params)
        points, seen = [], set()
        for combo in itertools.product(*(self.params[n].values for n in names)):
            point = dict(zip(names, combo))
            accepted = model_defaults(point.get("model", self.fixed.get("model", TrainConfig.model)))
            point = {k: v for k, v in point.items()
                     if not (self.params[k].is_model_kwarg and self.params[k].key not in accepted)}
            rid = self.resolve(point).run_id()
            if rid not in seen:
                seen.add(rid)
                points.append(point)
        return points

    def tune_space(self) -> dict[str, Any]:
        """Ray Tune's ``param_space``: every parameter as its Tune domain (a grid uses :meth:`tune_grid`)."""
        return {name: p.to_tune() for name, p in self.params.items()}

    def tune_grid(self) -> dict[str, Any]:
        """Ray Tune's ``param_space`` for a grid: one ``grid_search`` over the deduplicated points."""
        from ray import tune  # heavy: ray

        return {"point": tune.grid_search(self.grid_points())}

    def optuna_space(self) -> "OptunaDefine":
        """An Optuna define-by-run function: the model first, then only its own hyper-parameters."""
        return OptunaDefine(dict(self.params), self.fixed.get("model", TrainConfig.model))

    def configspace(self, seed: int | None = None) -> Any:
        """ConfigSpace for BOHB, with a condition on the model for each model hyper-parameter."""
        import ConfigSpace as CS  # heavy: ConfigSpace

        cs = CS.ConfigurationSpace(seed=seed)
        hps = {name: p.to_configspace() for name, p in self.params.items()}
        cs.add(list(hps.values()))
        if "model" in self.params:
            conditions = []
            for name, p in self.params.items():
                if p.is_model_kwarg:
                    models = [m for m in self.params["model"].values if p.key in model_defaults(m)]
                    if len(models) < len(self.params["model"].values):
                        conditions.append(CS.InCondition(hps[name], hps["model"], models))
            if conditions:
                cs.add(conditions)
        return cs

    def pbt_mutations(self) -> dict[str, Any]:
        """PBT's ``hyperparam_mutations``: lr and weight_decay as searched (lists for finite kinds)."""
        out = {}
        for name in PBT_MUTABLE:
            p = self.params.get(name)
            if p is not None:
                out[name] = list(p.values) if p.finite else p.to_tune()
        return out


@dataclass(frozen=True)
class OptunaDefine:
    """Picklable define-by-run space for ``OptunaSearch`` (Tune pickles the searcher with the experiment)."""

    params: dict[str, Param]
    default_model: str

    def __call__(self, trial: Any) -> None:
        p = self.params.get("model")
        model = p.suggest(trial) if p is not None else self.default_model
        accepted = model_defaults(model)
        for name, p in self.params.items():
            if name == "model" or (p.is_model_kwarg and p.key not in accepted):
                continue
            p.suggest(trial)


# ------------------------------------------------------------------------------------ loading
def load_space(source: str | Path | Mapping[str, Any]) -> SearchSpace:
    """A validated :class:`SearchSpace` from a YAML file or an already-parsed mapping."""
    if isinstance(source, Mapping):
        return parse_space(source)
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"search space file {path} does not exist")
    spec = read_yaml(path, f"search space file {path}")  # a syntax error: one line, with line and column
    if not isinstance(spec, Mapping):
        raise ValueError(f"search space file {path} must hold a mapping with 'dataset', 'fixed' and 'space'")
    return parse_space({"name": path.stem, **spec})


def _param(name: str, spec: Any) -> Param:
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise ValueError(
            f"space.{name}: give exactly one of {', '.join(KINDS)}, e.g. {{choice: [32, 128]}} "
            f"or {{loguniform: [0.001, 0.1]}}; got {spec!r}"
        )
    kind, values = next(iter(spec.items()))
    if kind not in KINDS:
        raise ValueError(f"space.{name}: unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
    if kind in ("choice", "grid"):
        if not isinstance(values, (list, tuple)):
            raise ValueError(f"space.{name}: {kind} needs a list of values, got {values!r}")
        if not values:
            raise ValueError(f"space.{name}: {kind} is an empty list: give at least one value")
        if any(isinstance(v, (list, dict)) for v in values):
            raise ValueError(f"space.{name}: {kind} values must be plain values, got {values!r}")
        return Param(name, kind, values=tuple(values))
    if not (isinstance(values, (list, tuple)) and len(values) == 2):
        raise ValueError(f"space.{name}: {kind} needs [low, high], got {values!r}")
    low, high = values
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
    if not numeric or not all(math.isfinite(v) for v in (low, high)):
        raise ValueError(f"space.{name}: {kind} bounds must be finite numbers, got {values!r}")
    if kind == "randint" and not all(isinstance(v, int) for v in (low, high)):
        raise ValueError(f"space.{name}: randint bounds must be integers, got {values!r}")
    if low >= high:
        raise ValueError(f"space.{name}: empty range {kind} [{low}, {high}]: low must be below high")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"space.{name}: loguniform bounds must be positive, got [{low}, {high}]")
    if kind in ("uniform", "loguniform"):
        low, high = float(low), float(high)
    return Param(name, kind, low=low, high=high)


def parse_space(spec: Mapping[str, Any]) -> SearchSpace:
    """Validate a space mapping; every error names the bad key or value."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"a search space must be a mapping, got {type(spec).__name__}")
    unknown = [k for k in spec if k not in _TOP_KEYS]
    if unknown:
        raise ValueError(f"unknown search-space key(s) {unknown}; valid keys: {', '.join(_TOP_KEYS)}")
    fields = TrainConfig.field_names()
    fixed = dict(spec.get("fixed") or {})
    bad = [k for k in fixed if k not in fields or k in _NOT_FIXED]
    if bad:
        raise ValueError(
            f"unknown fixed field(s) {bad}; valid: {', '.join(f for f in fields if f not in _NOT_FIXED)} "
            "(dataset and dataset_kwargs are top-level keys)"
        )
    if "model_kwargs" in fixed and not isinstance(fixed["model_kwargs"], Mapping):
        raise ValueError(f"fixed.model_kwargs must be a mapping, got {fixed['model_kwargs']!r}")
    raw = spec.get("space") or {}
    if not isinstance(raw, Mapping):
        raise ValueError("'space' must map hyper-parameter names to {kind: values}")
    searchable = [f for f in fields if f not in _NOT_SEARCHABLE]
    params: dict[str, Param] = {}
    for name, pspec in raw.items():
        name = str(name)
        if name.startswith(_MK):
            if not name[len(_MK):]:
                raise ValueError("space: 'model_kwargs.' needs a hyper-parameter name, e.g. model_kwargs.width")
        elif name in DATA_FIELDS:
            raise ValueError(_data_searched(name))
        elif name not in searchable:
            why = " (the budget: set it under fixed or with --epochs)" if name == "epochs" else ""
            raise ValueError(
                f"unknown hyper-parameter {name!r}{why}; searchable TrainConfig fields: {', '.join(searchable)}, "
                "and model hyper-parameters as model_kwargs.NAME"
            )
        if name in fixed:
            raise ValueError(f"{name!r} is both fixed and searched: keep one")
        params[name] = _param(name, pspec)
    space = SearchSpace(
        dataset=str(spec.get("dataset", TrainConfig.dataset)),
        dataset_kwargs=dict(spec.get("dataset_kwargs") or {}),
        fixed=fixed,
        params=params,
        name=str(spec.get("name", "space")),
        description=str(spec.get("description", "")),
        spec=copy.deepcopy(dict(spec)),
    )
    _validate_values(space)
    return space


def _data_searched(name: str) -> str:
    """The one-line refusal of a data-defining field as a searched dimension."""
    where = "at the top level of the space" if name in _NOT_FIXED else "under fixed:"
    return (f"space.{name}: {name} defines the data (training, validation or probe set), which a search holds "
            f"fixed: models trained on other data answer another question; put one value {where}")


def _validate_values(space: SearchSpace) -> None:
    """Build a ``TrainConfig`` for every listed value and range end, on every model it applies to."""
    base = space.base()
    models = space.models
    for m in models:
        if not isinstance(m, str) or m not in list_models():
            raise ValueError(f"unknown model {m!r}; valid choices: {', '.join(list_models())}")
    accepted = {m: model_defaults(m) for m in models}
    fixed_mkw = dict(space.fixed.get("model_kwargs") or {})
    for k in fixed_mkw:
        if not any(k in a for a in accepted.values()):
            raise ValueError(_unknown_kwarg(f"fixed.model_kwargs.{k}", k, accepted))
    for m in models:  # the fixed part alone, on every model
        cfg = {**base, "model": m, "model_kwargs": {k: v for k, v in fixed_mkw.items() if k in accepted[m]}}
        _try(cfg, "fixed configuration" + (f" with model {m!r}" if len(models) > 1 else ""))
    for name, p in space.params.items():
        if p.is_model_kwarg:
            on = [m for m in models if p.key in accepted[m]]
            if not on:
                raise ValueError(_unknown_kwarg(f"space.{name}", p.key, accepted))
        else:
            on = models if name != "model" else [None]
        _check_float_kind(p, on, accepted)
        for m in on:
            for value in p.candidates():
                cfg = space.base()
                model = m if m is not None else value
                cfg["model"] = model
                cfg["model_kwargs"] = {k: v for k, v in fixed_mkw.items() if k in accepted[model]}
                if p.is_model_kwarg:
                    cfg["model_kwargs"][p.key] = value
                elif name != "model":
                    cfg[name] = value
                _try(cfg, f"space.{name} = {value!r}" + (f" (model {m})" if p.is_model_kwarg and len(models) > 1 else ""))


def _check_float_kind(p: Param, models: list, accepted: Mapping[str, Mapping[str, Any]]) -> None:
    """uniform/loguniform only for float hyper-parameters (they draw floats)."""
    if p.kind not in ("uniform", "loguniform"):
        return
    if not p.is_model_kwarg:
        kind = str(TrainConfig.__dataclass_fields__[p.name].type)
        if "float" not in kind:
            raise ValueError(f"space.{p.name}: {p.name} is {kind}, not float: use randint or choice, not {p.kind}")
        return
    for m in models:
        default = accepted[m][p.key]
        if not isinstance(default, float):
            raise ValueError(
                f"space.{p.name}: hyper-parameter {p.key!r} of model {m!r} is "
                f"{type(default).__name__}, not float: use randint or choice, not {p.kind}"
            )


def _unknown_kwarg(where: str, key: str, accepted: Mapping[str, Mapping[str, Any]]) -> str:
    lists = "; ".join(f"{m} accepts {', '.join(a) or '(none)'}" for m, a in accepted.items())
    return f"{where}: unknown model hyper-parameter {key!r}: no model of the space ({', '.join(accepted)}) accepts it; {lists}"


def _try(cfg: Mapping[str, Any], where: str) -> None:
    try:
        TrainConfig.from_dict(cfg).validate()
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err
