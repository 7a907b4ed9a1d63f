"""Which parameters a measurement covers: ``"full"``, ``"fc"`` (the classifier head) or named modules."""

from __future__ import annotations

import weakref
from typing import Sequence

from torch import nn

from .errors import GradNormError

Scope = str | Sequence[str]


_MEMO: dict[int, tuple[tuple, dict]] = {}


def model_memo(model: nn.Module) -> dict:
    """A per-model dict for derived facts, emptied when the model's modules change."""
    key = tuple(map(id, model.modules()))
    entry = _MEMO.get(id(model))
    if entry is None or entry[0] != key:
        if entry is None:
            weakref.finalize(model, _MEMO.pop, id(model), None)
        entry = (key, {})
        _MEMO[id(model)] = entry
    return entry[1]


def classifier_head(model: nn.Module, name: str | None = None) -> tuple[str, nn.Linear]:
    """The classifier head: the module ``name``, or else the last ``nn.Linear`` in module order."""
    if name is not None:
        modules = dict(model.named_modules())
        if name not in modules:
            raise GradNormError(f"no module named {name!r} in {type(model).__name__}")
        return name, modules[name]
    last = None
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            last = (n, m)
    if last is None:
        raise GradNormError(
            f"scope 'fc' needs a classifier head, but {type(model).__name__} has no nn.Linear; "
            "pass scope='full' or a list of module names"
        )
    return last


def scope_name(scope: Scope) -> str:
    """A printable name for a scope."""
    return scope if isinstance(scope, str) else ",".join(scope)


def resolve_scope(model: nn.Module, scope: Scope) -> dict[str, nn.Parameter]:
    """Trainable parameters covered by ``scope``, by qualified name, tied ones listed once."""
    memo = model_memo(model)
    key = ("scope", scope if isinstance(scope, str) else tuple(scope), tuple((id(p), p.requires_grad) for p in model.parameters()))
    if key not in memo:
        memo[key] = _resolve_scope(model, scope)
    return dict(memo[key])


def _resolve_scope(model: nn.Module, scope: Scope) -> dict[str, nn.Parameter]:
    if isinstance(scope, str) and scope == "full":
        prefixes = [""]
    elif isinstance(scope, str) and scope == "fc":
        prefixes = [classifier_head(model)[0]]
    elif isinstance(scope, str):
        raise GradNormError(f"unknown scope {scope!r}: use 'full', 'fc' or a list of module names")
    else:
        names = list(scope)
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing or not names:
            some = ", ".join(list(n for n in modules if n)[:12])
            raise GradNormError(
                f"scope names modules that {type(model).__name__} does not have: {missing or '[]'}; "
                f"modules include: {some}"
            )
        prefixes = names
    selected: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for n, p in model.named_parameters(remove_duplicate=False):
        if not p.requires_grad or id(p) in seen:
            continue
        if any(pre == "" or n == pre or n.startswith(pre + ".") for pre in prefixes):
            selected[n] = p
            seen.add(id(p))
    if not selected:
        raise GradNormError(
            f"{type(model).__name__} has no trainable parameters in scope {scope_name(scope)!r} "
            "(all are frozen or the scope is empty)"
        )
    return selected
