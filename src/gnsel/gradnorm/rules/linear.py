"""Rule for ``nn.Linear``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..contrib import Contribution, Dense, Outer, Precomputed
from .registry import register_rule


@register_rule(nn.Linear)
def linear_rule(module: nn.Linear, inputs: tuple, grad: Tensor, names: list[str]) -> dict[str, Contribution]:
    """``dW_b = sum_t g_bt a_bt^T``: product of norms for 2-D input, ghost or materialised otherwise."""
    a = inputs[0].detach()
    b = a.shape[0]
    if a.dim() == 2:  # the common case: two row norms, no chunking
        gg = torch.linalg.vector_norm(grad, dim=1).square()
        out2: dict[str, Contribution] = {}
        if "weight" in names:
            aa = torch.linalg.vector_norm(a, dim=1).square()
            out2["weight"] = Precomputed(gg * aa, Outer(grad.unsqueeze(1), a.unsqueeze(1), b, 1, 1, grad.shape[1], a.shape[1]))
        if "bias" in names:
            out2["bias"] = Precomputed(gg, Dense(grad))
        return out2
    a = a.flatten(1, -2)  # (B, T, in): flatten, not reshape(b, -1, ...), which an empty batch makes ambiguous
    g = grad.flatten(1, -2)
    out: dict[str, Contribution] = {}
    if "weight" in names:
        out["weight"] = Outer(g, a, b, 1, a.shape[1], g.shape[2], a.shape[2])
    if "bias" in names:
        out["bias"] = Dense(g.sum(1))
    return out
