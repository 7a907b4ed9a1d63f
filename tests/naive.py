"""Naive, obviously-correct reference for per-example squared gradient norms.

Everything here is deliberately slow and simple: the model is deep-copied to
float64, put in eval mode, and the loss of each example is differentiated on
its own with ``torch.autograd.grad``.  Parameters used in several places (tied
weights, a module called twice) appear once in the parameter list, so autograd
sums all their uses, which is the gradient of the loss with respect to that
parameter.

Nothing in this module imports ``gnsel``: it is an independent reference.
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

LossSpec = Union[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]
ScopeSpec = Union[str, Sequence[str]]


def per_example_loss(outputs: torch.Tensor, targets: torch.Tensor, loss: LossSpec) -> torch.Tensor:
    """Per-example losses, shape (B,)."""
    if loss == "cross_entropy":
        out = F.cross_entropy(outputs, targets, reduction="none")
    elif loss == "mse":
        diff = (outputs - targets.reshape(outputs.shape)) ** 2
        out = diff.reshape(diff.shape[0], -1).mean(dim=1)
    elif callable(loss):
        out = loss(outputs, targets)
    else:  # pragma: no cover - test bug
        raise ValueError(f"unknown loss {loss!r}")
    assert out.shape == (outputs.shape[0],), out.shape
    return out


def scope_param_names(model: nn.Module, scope: ScopeSpec) -> list[str]:
    """Names (as in ``model.named_parameters()``, duplicates removed) of the
    trainable parameters in ``scope``."""
    name_of = {id(p): n for n, p in model.named_parameters()}  # tied -> first name
    if scope == "full":
        params = [p for p in model.parameters() if p.requires_grad]
    elif scope == "fc":
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError("no nn.Linear")
        last = linears[-1]
        params = [p for p in (last.weight, last.bias) if p is not None and p.requires_grad]
    else:
        mods = dict(model.named_modules())
        params = []
        for name in scope:
            params.extend(p for p in mods[name].parameters() if p.requires_grad)
    seen, names = set(), []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            names.append(name_of[id(p)])
    return names


def _float64_copy(model: nn.Module) -> nn.Module:
    m = copy.deepcopy(model)
    m = m.double()
    m.eval()
    for p in m.parameters():
        p.grad = None
    return m


def _to64(x: torch.Tensor) -> torch.Tensor:
    return x.double() if x.is_floating_point() else x


def naive_per_example_grads(model, inputs, targets, loss: LossSpec = "cross_entropy",
                            scope: ScopeSpec = "full") -> torch.Tensor:
    """(B, P) matrix of flattened per-example gradients in float64."""
    names = scope_param_names(model, scope)
    m = _float64_copy(model)
    params64 = dict(m.named_parameters())
    params = [params64[n] for n in names]
    x, y = _to64(inputs.detach().cpu()), _to64(targets.detach().cpu())
    rows = []
    for i in range(x.shape[0]):
        out = m(x[i:i + 1])
        li = per_example_loss(out, y[i:i + 1], loss)
        grads = torch.autograd.grad(li.sum(), params, allow_unused=True)
        flat = [
            (torch.zeros_like(p) if g is None else g).reshape(-1)
            for g, p in zip(grads, params)
        ]
        rows.append(torch.cat(flat) if flat else torch.zeros(0, dtype=torch.float64))
    return torch.stack(rows)


def naive_sq_norms(model, inputs, targets, loss: LossSpec = "cross_entropy",
                   scope: ScopeSpec = "full") -> torch.Tensor:
    """s_i = ||d l_i / d theta||^2 (float64, shape (B,))."""
    g = naive_per_example_grads(model, inputs, targets, loss, scope)
    return (g ** 2).sum(dim=1)


def naive_stats(model, inputs, targets, loss: LossSpec = "cross_entropy",
                scope: ScopeSpec = "full") -> tuple[torch.Tensor, float, float]:
    """(s, mean_i s_i, ||mean_i grad l_i||^2) in float64."""
    g = naive_per_example_grads(model, inputs, targets, loss, scope)
    s = (g ** 2).sum(dim=1)
    return s, float(s.mean()), float((g.mean(dim=0) ** 2).sum())


def funcvmap_sq_norms(model, inputs, targets, loss: LossSpec = "cross_entropy",
                      scope: ScopeSpec = "full") -> torch.Tensor:
    """Second, independent reference: torch.func.vmap(grad) on a float64 copy."""
    from torch.func import functional_call, grad, vmap

    names = scope_param_names(model, scope)
    m = _float64_copy(model)
    all_params = {n: p.detach() for n, p in m.named_parameters(remove_duplicate=False)}
    buffers = {n: b.detach() for n, b in m.named_buffers()}
    # tied parameters: every alias must read the same (differentiated) tensor
    alias = {}
    for n, p in m.named_parameters(remove_duplicate=False):
        for n0, p0 in m.named_parameters():
            if p0 is p:
                alias[n] = n0
    fixed = {n: p for n, p in all_params.items() if alias[n] not in names}

    def loss_one(trainable, x, y):
        params = dict(fixed)
        for n in all_params:
            if alias[n] in trainable:
                params[n] = trainable[alias[n]]
        out = functional_call(m, (params, buffers), (x.unsqueeze(0),), tie_weights=False)
        return per_example_loss(out, y.unsqueeze(0), loss).sum()

    trainable = {n: dict(m.named_parameters())[n].detach() for n in names}
    x, y = _to64(inputs.detach().cpu()), _to64(targets.detach().cpu())
    grads = vmap(grad(loss_one), in_dims=(None, 0, 0))(trainable, x, y)
    return sum((g.reshape(g.shape[0], -1) ** 2).sum(dim=1) for g in grads.values())
