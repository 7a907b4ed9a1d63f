"""The fc approximation (Goodfellow 2015): the gradient norm of the classifier head alone.

For cross-entropy on logits ``z = W h + b`` the per-example head gradient is ``(p - y) h^T`` and
``p - y``, so ``s_i = ||p_i - y_i||^2 * (||h_i||^2 + 1)``: one forward pass, no backward pass.
Other losses (or heads whose output is not the model's output) take the engine restricted to the
head, whose backward stops at the head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .engine import check_batch, check_finite, eval_mode, per_example_losses
from .losses import _cross_entropy


@dataclass
class HeadPass:
    """What the closed form needs: per-example squared norms and, optionally, the summed gradient."""

    sq: Tensor
    grad_sum: dict[str, Tensor] | None


def closed_form_applies(loss: object, head: nn.Linear) -> bool:
    """Only cross-entropy, by name or as gnsel's own function, has the closed form."""
    return (loss == "cross_entropy" or loss is _cross_entropy) and isinstance(head, nn.Linear)


def fc_closed_form(
    model: nn.Module,
    head_name: str,
    head: nn.Linear,
    params: dict[str, nn.Parameter],
    inputs: Tensor | tuple,
    targets: Tensor,
    want_grad_sum: bool = False,
) -> HeadPass | None:
    """Closed-form fc norms from a forward pass alone; None when the logits are not the head's output."""
    batch = check_batch(inputs, targets)
    seen: dict[str, Tensor] = {}

    def hook(mod: nn.Module, args: tuple, out: Tensor) -> None:
        seen["h"], seen["z"] = args[0], out
        seen["calls"] = seen.get("calls", 0) + 1

    handle = head.register_forward_hook(hook)
    try:
        with eval_mode(model), torch.no_grad():
            out = model(*inputs) if isinstance(inputs, (tuple, list)) else model(inputs)
    finally:
        handle.remove()
    if seen.get("calls") != 1 or out is not seen["z"] or out.dim() != 2 or seen["h"].dim() != 2:
        return None
    losses = per_example_losses(_cross_entropy, out, targets, batch, check=False)
    h = seen["h"]
    p = F.softmax(out, dim=1)
    if targets.dtype.is_floating_point:
        e = p - targets.to(p.dtype)
    else:
        e = p - F.one_hot(targets, p.shape[1]).to(p.dtype)
    in_scope = {id(v) for v in params.values()}
    w_on = id(head.weight) in in_scope
    b_on = head.bias is not None and id(head.bias) in in_scope
    factor = (h.pow(2).sum(1) if w_on else torch.zeros_like(e[:, 0])) + (1.0 if b_on else 0.0)
    sq = e.pow(2).sum(1) * factor
    grad_sum = None
    if want_grad_sum:
        grad_sum = {}
        names = {id(v): n for n, v in params.items()}
        if w_on:
            grad_sum[names[id(head.weight)]] = e.t() @ h
        if b_on:
            grad_sum[names[id(head.bias)]] = e.sum(0)
    check_finite(losses)
    return HeadPass(sq, grad_sum)
