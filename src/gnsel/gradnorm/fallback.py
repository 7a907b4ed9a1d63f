"""Exact per-example gradients of a module the registry has no rule for, through ``torch.func``.

The module alone is re-run functionally for each example (``vmap`` over ``vjp``) with the gradient
of its outputs that the main backward pass captured, so only that module's cost is repeated.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn
from torch.func import functional_call, vjp, vmap
from torch.utils._pytree import tree_flatten, tree_unflatten

from .contrib import Dense

_warned: set[type] = set()


def batch_dim(module: nn.Module) -> int:
    """Where the batch dimension of ``module``'s inputs and outputs is (``batch_first`` aware)."""
    bf = getattr(module, "batch_first", None)
    return 1 if bf is False else 0


def warn_fallback(module: nn.Module) -> None:
    """One warning per module type that goes through the slower ``torch.func`` path."""
    klass = type(module)
    if klass not in _warned:
        _warned.add(klass)
        warnings.warn(
            f"gnsel has no per-example gradient rule for {klass.__name__}; its per-example "
            "gradients are computed exactly with torch.func (vmap over vjp), which re-runs that "
            "module per example. Register a rule with gnsel.gradnorm.register_rule to make it fast.",
            UserWarning,
            stacklevel=3,
        )


def fallback_contributions(
    module: nn.Module,
    names: list[str],
    args: tuple,
    kwargs: dict,
    outputs: object,
    grads: dict[int, Tensor],
    batch: int,
) -> dict[str, Dense]:
    """Per-example gradients of ``module``'s parameters ``names`` (dotted, relative to it)."""
    bdim = batch_dim(module)
    params = dict(module.named_parameters())
    primals = tuple(params[n].detach() for n in names)

    def where(v: object) -> int | None:
        """The batch dimension of one tensor: the module's, else the first of the batch's size
        (an LSTM's hidden state is (layers, B, H) whatever batch_first says); None if unbatched."""
        if not isinstance(v, Tensor):
            return None
        if v.dim() > bdim and v.shape[bdim] == batch:
            return bdim
        return next((d for d in range(v.dim()) if v.shape[d] == batch), None)

    leaves, spec = tree_flatten((args, kwargs))
    dims = [where(v) for v in leaves]
    leaves = [v.detach() if isinstance(v, Tensor) else v for v in leaves]
    out_leaves, _ = tree_flatten(outputs)
    cot = []
    for k, o in enumerate(out_leaves):
        if isinstance(o, Tensor) and o.is_floating_point() and where(o) is not None:
            g = grads.get(k)
            cot.append(g if g is not None else torch.zeros_like(o))
        else:
            cot.append(None)
    tensor_out = [k for k, c in enumerate(cot) if c is not None]
    out_dims = [where(out_leaves[k]) for k in tensor_out]

    batched_vals = [v for v, d in zip(leaves, dims) if d is not None]
    batched_dims = [d for d in dims if d is not None]
    cot_vals = [cot[k] for k in tensor_out]

    def one(bvals: list[Tensor], cvals: list[Tensor]) -> tuple[Tensor, ...]:
        it = iter(bvals)
        full = [next(it).unsqueeze(d) if d is not None else v for v, d in zip(leaves, dims)]
        a, kw = tree_unflatten(full, spec)

        def f(*p: Tensor) -> tuple[Tensor, ...]:
            res = functional_call(module, dict(zip(names, p)), tuple(a), kw, strict=False)
            flat, _ = tree_flatten(res)
            return tuple(flat[k] for k in tensor_out)

        _, pull = vjp(f, *primals)
        return pull(tuple(c.unsqueeze(d) for c, d in zip(cvals, out_dims)))

    try:
        with warnings.catch_warnings():
            # vmap notes ops without a batching rule; they are still exact, only slower.
            warnings.filterwarnings("ignore", message=".*batching rule.*")
            per_ex = vmap(one, in_dims=(batched_dims, out_dims), randomness="same")(batched_vals, cot_vals)
    except RuntimeError:
        # Some fused kernels (the RNNs' _VF.lstm/gru) cannot be vmapped: the same module alone,
        # one example at a time, is still exact.
        rows = [
            one([v.select(d, b) for v, d in zip(batched_vals, batched_dims)],
                [c.select(d, b) for c, d in zip(cot_vals, out_dims)])
            for b in range(batch)
        ]  # fmt: skip
        per_ex = tuple(torch.stack(col) for col in zip(*rows))
    return {n: Dense(g) for n, g in zip(names, per_ex)}
