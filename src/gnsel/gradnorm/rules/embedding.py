"""Rule for ``nn.Embedding``: a ghost norm over positions or a scatter, whichever is smaller."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..contrib import Contribution, Outer, _starts, chunk_size
from ..errors import UnsupportedLayerError
from .registry import register_rule


@register_rule(nn.Embedding)
def embedding_rule(module: nn.Embedding, inputs: tuple, grad: Tensor, names: list[str]) -> dict[str, Contribution]:
    """``dW_b = onehot(idx_b)^T g_b``: ghost ``sum_{t,s} [idx_t = idx_s] g_t.g_s`` or a scatter."""
    if module.scale_grad_by_freq:
        raise UnsupportedLayerError(
            "nn.Embedding(scale_grad_by_freq=True) scales gradients by token counts of the whole "
            "batch: per-example gradients are undefined"
        )
    if "weight" not in names:
        return {}
    idx = inputs[0].detach()
    b = idx.shape[0]
    t = math.prod(idx.shape[1:])  # explicit sizes: an empty batch makes reshape(b, -1) ambiguous
    idx = idx.reshape(b, t)
    g = grad.reshape(b, t, module.embedding_dim)
    if module.padding_idx is not None:
        g = g * (idx != module.padding_idx).unsqueeze(-1).to(g.dtype)
    v, d = module.weight.shape
    return {"weight": EmbeddingGrad(idx, g, v, d)}


class EmbeddingGrad(Outer):
    """Outer form with a one-hot ``L`` that is never built unless uses must be combined."""

    def __init__(self, idx: Tensor, g: Tensor, v: int, d: int):
        self.idx = idx

        def left(s: int, e: int) -> Tensor:
            return F.one_hot(idx[s:e], v).to(g.dtype)

        super().__init__(left, g, idx.shape[0], 1, idx.shape[1], v, d)

    def sq_norms(self) -> Tensor:
        b, t = self.idx.shape
        d, v = self.q, self.p
        g = self.R
        if t * t <= v:  # ghost over positions
            step = chunk_size(t * (t + d), b)
            out = []
            for s in _starts(b, step):
                i, gg = self.idx[s : s + step], g[s : s + step]
                same = (i.unsqueeze(2) == i.unsqueeze(1)).to(gg.dtype)
                out.append((same * torch.bmm(gg, gg.transpose(1, 2))).sum((1, 2)))
            return torch.cat(out)
        # scatter into (n, V, D) a chunk of examples at a time
        step = chunk_size(v * d, b)
        out = []
        for s in _starts(b, step):
            i, gg = self.idx[s : s + step], g[s : s + step]
            n = i.shape[0]
            acc = gg.new_zeros(n * v, d)
            flat = (i + torch.arange(n, device=i.device).unsqueeze(1) * v).reshape(-1)
            acc.index_add_(0, flat, gg.reshape(-1, d))
            out.append(acc.view(n, v * d).pow(2).sum(1))
        return torch.cat(out)
