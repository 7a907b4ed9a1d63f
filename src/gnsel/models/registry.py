"""Model registry: ``register_model``, ``list_models``, ``create_model``, ``model_defaults``.

A builder is a function ``builder(num_classes, input_shape, *, hp1=default1, ...) -> nn.Module``
whose hyper-parameters are all keyword-only with defaults, so that ``model_defaults`` can list
them and ``create_model`` can validate a configuration (e.g. from a grid or YAML) before building.
The builders live in one :class:`~gnsel.registry.Registry`, ``MODELS``; their hyper-parameters
are read from their signatures (checked once, at registration).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from torch import nn

from ..registry import Registry, UnknownNameError

__all__ = [
    "MODELS",
    "register_model",
    "list_models",
    "create_model",
    "model_defaults",
    "check_model_kwarg",
    "check_model_kwargs",
    "classifier_head",
]

Builder = Callable[..., nn.Module]
B = TypeVar("B", bound=Builder)

MODELS: Registry[Builder] = Registry("model")


def _keyword_defaults(name: str, fn: Builder) -> dict[str, Any]:
    """Return the keyword-only hyper-parameters of ``fn`` with their defaults."""
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    positional = [
        p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if [p.name for p in positional] != ["num_classes", "input_shape"]:
        raise TypeError(
            f"builder for model {name!r} must take (num_classes, input_shape, *, ...) "
            f"positionally; got {[p.name for p in positional]}"
        )
    defaults: dict[str, Any] = {}
    for p in params:
        if p.kind is p.KEYWORD_ONLY:
            if p.default is p.empty:
                raise TypeError(
                    f"hyper-parameter {p.name!r} of model {name!r} must have a default"
                )
            defaults[p.name] = p.default
        elif p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"builder for model {name!r} must not take *args/**kwargs")
    return defaults


def register_model(name: str) -> Callable[[B], B]:
    """Decorator registering a model builder under ``name`` (raises ValueError on a clash)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")

    def decorator(fn: B) -> B:
        if name in MODELS and MODELS.get(name) is not fn:
            raise ValueError(f"model {name!r} is already registered")
        _keyword_defaults(name, fn)  # a builder of the wrong form is refused here, not when used
        return MODELS.register(name, fn)

    return decorator


def list_models() -> list[str]:
    """Return the sorted names of all registered models."""
    return sorted(MODELS.names())


def _builder(name: str) -> Builder:
    """The builder of model ``name``; ``UnknownNameError`` (a ValueError) listing the choices."""
    if name not in MODELS:
        raise UnknownNameError(f"unknown model {name!r}; valid choices: {', '.join(list_models())}")
    return MODELS.get(name)


def model_defaults(name: str) -> dict[str, Any]:
    """Return the keyword hyper-parameters model ``name`` accepts, with their defaults."""
    return _keyword_defaults(name, _builder(name))


def check_model_kwarg(model: str, key: str, value: Any, default: Any) -> None:
    """Light type check of a hyper-parameter against the type of its default."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        want = "bool"
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        want = "int"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        want = "float"
    elif isinstance(default, str):
        ok = isinstance(value, str)
        want = "str"
    else:
        return
    if not ok:
        raise ValueError(
            f"hyper-parameter {key!r} of model {model!r} must be {want}, "
            f"got {value!r} ({type(value).__name__})"
        )


def check_model_kwargs(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``kwargs`` against model ``name``'s hyper-parameters (names, then types); its defaults."""
    defaults = model_defaults(name)
    unknown = [k for k in kwargs if k not in defaults]
    if unknown:
        raise ValueError(
            f"unknown keyword(s) {', '.join(map(repr, unknown))} for model {name!r}; "
            f"accepted: {', '.join(defaults) or '(none)'}"
        )
    for k, v in kwargs.items():
        check_model_kwarg(name, k, v, defaults[k])
    return defaults


def _check_input_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        raise ValueError(f"input_shape must be a tuple of ints, got {input_shape!r}")
    shape = tuple(input_shape)
    if not shape or any(
        isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape
    ):
        raise ValueError(
            f"input_shape must be a non-empty tuple of positive ints (batch excluded), "
            f"got {input_shape!r}"
        )
    return shape


def create_model(
    name: str, *, num_classes: int, input_shape: tuple[int, ...], **kwargs: Any
) -> nn.Module:
    """Build model ``name`` for ``num_classes`` classes and per-example ``input_shape``."""
    builder = _builder(name)
    check_model_kwargs(name, kwargs)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    shape = _check_input_shape(input_shape)
    return builder(num_classes, shape, **kwargs)


def classifier_head(model: nn.Module) -> nn.Linear:
    """Return the classifier head of a gnsel model: its last ``nn.Linear`` in ``modules()`` order."""
    head = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            head = m
    if head is None:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier head")
    return head
