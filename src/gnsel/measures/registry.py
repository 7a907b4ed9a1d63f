"""The measure registry: ``register_measure``, ``list_measures``, ``get_measure``, ``compute_measure``.

A measure is a plain function ``fn(ctx: MeasureContext) -> float``. It declares what it needs from the
context (``needs``, a subset of :data:`NEEDS`), where it comes from (``citation``) and which way it
points (``higher_means``, one of :data:`HIGHER_MEANS`). :func:`compute_measure` checks the needs, times
the call and turns every failure into error text: a measure that cannot be computed for a model (missing
initial weights, an unsupported layer, a non-positive margin, ...) gives a :class:`MeasureValue` with
``value`` NaN and ``error`` set, never an exception.

A measure that training records at every epoch declares how to read it from the stored per-epoch rows
(``recorded_as``, a function of the epoch rows: a pandas frame or one row mapping);
:func:`per_epoch_measures` lists those, in registration order. They are the one list of measures a zoo
can score at every epoch without a model.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from ..registry import Registry, UnknownNameError

__all__ = [
    "HIGHER_MEANS",
    "MEASURES",
    "NEEDS",
    "MeasureContext",
    "MeasureError",
    "MeasureSpec",
    "MeasureValue",
    "MissingNeedError",
    "compute_measure",
    "compute_measures",
    "get_measure",
    "list_measures",
    "per_epoch_measures",
    "register_measure",
    "specs",
]

#: What a measure may need from its :class:`MeasureContext`.
#: ``weights``: ``ctx.model``; ``init``: ``ctx.init_model``; ``data``: ``ctx.train_data``;
#: ``trajectory``: a finite ``ctx.row["traj_gn"]``; ``metrics``: the stored per-epoch ``ctx.row``.
NEEDS: frozenset[str] = frozenset({"weights", "init", "data", "trajectory", "metrics"})

#: What a larger value of a measure is expected to go with, according to its source.
HIGHER_MEANS: tuple[str, ...] = (
    "larger gap",  # a complexity measure / generalization-gap predictor (Jiang et al. 2020 convention)
    "smaller gap",
    "higher test error",  # a predictor of test performance rather than of the gap
    "lower test error",  # e.g. zero-cost NAS proxies: a higher score ranks an architecture better
    "nothing",  # a control (the random baseline)
)

_NAME_RE = re.compile(r"[a-z_][a-z0-9_]*")


class MeasureError(ValueError):
    """A measure cannot be computed for this model or context; the message becomes the error text."""


class MissingNeedError(MeasureError):
    """The context lacks something the measure needs (initial weights, data, a stored metric, ...)."""


@dataclass
class MeasureContext:
    """Everything a measure may look at for one (run, epoch).

    ``model`` is the network at the measured epoch, in eval mode; ``init_model`` the same architecture
    with its epoch-0 weights (or None); ``train_data`` an ``(inputs, targets)`` probe subset of the
    training data; ``row`` the stored per-epoch metrics of that run and epoch (``val_loss``, ``traj_gn``,
    ...); ``config`` the run's configuration dict; ``device`` where
    :func:`gnsel.zoo.measure.load_context` put the models (measures run where ``model`` lives);
    ``seed`` seeds every random choice a measure makes. ``options`` holds optional per-measure settings (e.g. ``{"target_drop": 0.05}``); each measure
    documents the keys it reads.
    """

    model: nn.Module | None = None
    init_model: nn.Module | None = None
    train_data: tuple[Tensor, Tensor] | None = None
    row: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    device: str | torch.device = "cpu"
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def option(self, key: str, default: Any) -> Any:
        """``options[key]`` if set, else ``default``."""
        return self.options.get(key, default)


@dataclass(frozen=True)
class MeasureValue:
    """The outcome of one measure: its value (NaN on failure), the seconds it took, and the error text."""

    value: float
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the measure was computed (no error)."""
        return self.error is None


MeasureFn = Callable[[MeasureContext], float]
F = TypeVar("F", bound=MeasureFn)
#: Reads a measure from stored per-epoch rows: ``fn(rows)`` with ``rows[column]`` (a frame or a mapping).
RecordedFn = Callable[[Any], Any]


@dataclass(frozen=True)
class MeasureSpec:
    """A registered measure: its function, citation, needs, direction, family and one-line summary."""

    name: str
    fn: MeasureFn
    citation: str
    needs: frozenset[str]
    higher_means: str
    family: str = ""
    summary: str = ""
    recorded_as: RecordedFn | None = None

    @property
    def per_epoch(self) -> bool:
        """True when training records this measure at every epoch (it has a ``recorded_as``)."""
        return self.recorded_as is not None

    def missing(self, ctx: MeasureContext) -> list[str]:
        """The needs ``ctx`` does not satisfy, each with the reason, e.g. ``"init (ctx.init_model is None)"``."""
        out = []
        for need in sorted(self.needs):
            reason = _need_missing(need, ctx)
            if reason:
                out.append(f"{need} ({reason})")
        return out


MEASURES: Registry[MeasureSpec] = Registry("measure")


def _need_missing(need: str, ctx: MeasureContext) -> str | None:
    if need == "weights":
        return "ctx.model is None" if ctx.model is None else None
    if need == "init":
        return "ctx.init_model is None: no epoch-0 weights" if ctx.init_model is None else None
    if need == "data":
        if ctx.train_data is None:
            return "ctx.train_data is None"
        if len(ctx.train_data) != 2 or len(ctx.train_data[1]) == 0:
            return "ctx.train_data must be a non-empty (inputs, targets) pair"
        return None
    if need == "metrics":
        return "ctx.row is empty: no stored metrics for this epoch" if not ctx.row else None
    if need == "trajectory":
        value = ctx.row.get("traj_gn") if ctx.row else None
        try:
            ok = value is not None and math.isfinite(float(value))
        except (TypeError, ValueError):
            ok = False
        return None if ok else "ctx.row has no finite 'traj_gn' (trajectory GN was not recorded)"
    raise AssertionError(need)  # pragma: no cover - needs are validated at registration


def register_measure(
    name: str,
    *,
    citation: str,
    needs: Iterable[str],
    higher_means: str,
    family: str = "",
    recorded_as: RecordedFn | None = None,
) -> Callable[[F], F]:
    """Decorator registering ``fn(ctx) -> float`` as measure ``name`` (a ValueError on a clash or bad spec).

    ``citation`` is "Authors year, title"; ``needs`` a subset of :data:`NEEDS`; ``higher_means`` one of
    :data:`HIGHER_MEANS`; ``family`` groups measures for listing (e.g. ``"norm"``). ``recorded_as``
    declares that training records the measure at every epoch, and how to read it from the stored
    epoch rows, e.g. ``lambda rows: 1.0 - rows["val_acc"]``.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"measure name must match [a-z_][a-z0-9_]*, got {name!r}")
    if not isinstance(citation, str) or not citation.strip():
        raise ValueError(f"measure {name!r} needs a citation ('Authors year, title')")
    need_set = frozenset(needs)
    unknown = need_set - NEEDS
    if unknown:
        raise ValueError(f"measure {name!r}: unknown needs {sorted(unknown)}; choose from {sorted(NEEDS)}")
    if higher_means not in HIGHER_MEANS:
        raise ValueError(f"measure {name!r}: higher_means must be one of {HIGHER_MEANS}, got {higher_means!r}")

    def decorator(fn: F) -> F:
        if name in MEASURES and MEASURES.get(name).fn is not fn:
            raise ValueError(f"measure {name!r} is already registered")
        doc = (fn.__doc__ or "").strip()
        spec = MeasureSpec(
            name, fn, citation.strip(), need_set, higher_means, family, doc.splitlines()[0] if doc else "",
            recorded_as,
        )
        MEASURES.register(name, spec, replace=True)  # the same function again (a reload) replaces its spec
        return fn

    return decorator


def list_measures(family: str | None = None) -> list[str]:
    """Sorted names of the registered measures (of one ``family`` if given)."""
    return sorted(n for n, s in MEASURES.items() if family is None or s.family == family)


def get_measure(name: str) -> MeasureSpec:
    """The :class:`MeasureSpec` of measure ``name`` (ValueError listing the choices if unknown)."""
    if name not in MEASURES:
        raise UnknownNameError(f"unknown measure {name!r}; choices: {', '.join(list_measures())}")
    return MEASURES.get(name)


def per_epoch_measures() -> dict[str, RecordedFn]:
    """The measures training records at every epoch: name -> how to read it from the epoch rows.

    In registration order (the order of the per-epoch tables of :mod:`gnsel.zoo.correlate`).
    """
    return {n: s.recorded_as for n, s in MEASURES.items() if s.recorded_as is not None}


def _sync(model: nn.Module | None) -> None:
    if model is None:
        return
    for p in model.parameters():
        if p.device.type == "cuda":
            torch.cuda.synchronize(p.device)
        return


def _model_state(model: nn.Module | None) -> list[tuple[nn.Module, bool]]:
    return [] if model is None else [(m, m.training) for m in model.modules()]


def compute_measure(name: str, ctx: MeasureContext) -> MeasureValue:
    """Compute measure ``name`` on ``ctx``: ``MeasureValue(value, seconds, error)``, never raising for the model.

    Missing needs, a :class:`MeasureError`, any other exception inside the measure and a non-finite
    result all give ``value`` NaN and the reason in ``error``. An unknown ``name`` is a ValueError.
    The caller's global torch RNG state and the models' train/eval modes are left as they were.
    """
    spec = get_measure(name)
    missing = spec.missing(ctx)
    if missing:
        return MeasureValue(math.nan, 0.0, f"missing needs: {'; '.join(missing)}")
    modes = _model_state(ctx.model) + _model_state(ctx.init_model)
    first = next(iter(ctx.model.parameters()), None) if ctx.model is not None else None
    cuda = [first.device] if first is not None and first.device.type == "cuda" else []
    t0 = time.perf_counter()
    error: str | None = None
    value = math.nan
    try:
        with torch.random.fork_rng(devices=cuda):
            raw = spec.fn(ctx)
        value = float(raw)
        _sync(ctx.model)
    except MeasureError as err:
        error = str(err)
    except Exception as err:  # noqa: BLE001 - a failing measure is recorded, not raised
        error = f"{type(err).__name__}: {err}"
    finally:
        for module, training in modes:
            module.train(training)
    seconds = time.perf_counter() - t0
    if error is None and not math.isfinite(value):
        error, value = f"non-finite value {value!r}", math.nan
    return MeasureValue(value if error is None else math.nan, seconds, error)


def compute_measures(
    ctx: MeasureContext, names: Iterable[str] | None = None
) -> dict[str, MeasureValue]:
    """:func:`compute_measure` for each of ``names`` (default: every registered measure), in order."""
    return {n: compute_measure(n, ctx) for n in (list_measures() if names is None else names)}


def specs() -> Mapping[str, MeasureSpec]:
    """A read-only view of the registry (name -> spec)."""
    return dict(MEASURES.items())
