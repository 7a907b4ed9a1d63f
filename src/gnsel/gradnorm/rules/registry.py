"""The registry of per-layer rules, keyed by module type, in the spirit of Opacus' grad samplers.

A rule takes a layer, the input it saw in the forward pass, the gradient of the loss sum with
respect to its output, and the names of its own parameters that are in scope; it returns, for each
of those parameters, a description of the per-example gradient (see ``contrib``). Rules never form
parameter gradients through autograd, which is what keeps exact GN at about one training step.

A module uses the rule of its exact type, else that of its nearest registered base class; a user's
``register_rule`` for a type that already has one replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor, nn

from ...registry import Registry
from ..contrib import Contribution

Rule = Callable[[nn.Module, tuple, Tensor, list[str]], dict[str, Contribution]]


@dataclass(frozen=True)
class LayerRule:
    """A registered rule and how the engine calls it.

    ``covers_children``: the rule also measures parameters of the module's children that the
    module uses itself (``nn.MultiheadAttention`` reads ``out_proj.weight`` without calling
    ``out_proj``). ``needs_kwargs``: the rule takes the call's keyword arguments as a fifth argument.
    """

    fn: Rule
    covers_children: bool = False
    needs_kwargs: bool = False


RULES: Registry[LayerRule] = Registry("layer rule")


def register_rule(
    *types: type[nn.Module], covers_children: bool = False, needs_kwargs: bool = False
) -> Callable[[Rule], Rule]:
    """Register ``fn`` as the per-example gradient rule for modules of the given types.

    A type that already has a rule gets ``fn`` instead (users may override the built-in rules).
    The options may also be given as attributes of ``fn`` (``fn.needs_kwargs = True``).
    """

    def deco(fn: Rule) -> Rule:
        rule = LayerRule(
            fn,
            covers_children=covers_children or bool(getattr(fn, "covers_children", False)),
            needs_kwargs=needs_kwargs or bool(getattr(fn, "needs_kwargs", False)),
        )
        for t in types:
            RULES.register(t, rule, replace=True)
        return fn

    return deco


def lookup_rule(module: nn.Module) -> LayerRule | None:
    """The registered rule for ``module``'s exact type, else for its nearest registered base class."""
    for klass in type(module).__mro__:
        if klass in RULES:
            return RULES.get(klass)
        if klass is nn.Module:
            break
    return None


def find_rule(module: nn.Module) -> Rule | None:
    """The rule function for ``module`` (see :func:`lookup_rule`), or None: the ``torch.func`` fallback."""
    rule = lookup_rule(module)
    return None if rule is None else rule.fn


def registered_types() -> list[type[nn.Module]]:
    """Module types that have a rule (others use the ``torch.func`` fallback)."""
    return RULES.keys()
