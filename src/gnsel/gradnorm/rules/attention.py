"""Rule for ``nn.MultiheadAttention``: its projections are linear in their weights, so per-example
gradients are outer products of the projection inputs and the gradients of the projection outputs.

``nn.MultiheadAttention`` computes its projections inside ``F.multi_head_attention_forward`` (it
reads ``out_proj.weight`` directly, without calling ``out_proj``), so those gradients are not
visible from outside. The rule recomputes the attention of the saved inputs once, locally, with the
projection outputs as leaves, and takes one backward pass through the attention alone. Options the
recomputation does not reproduce (``add_bias_kv``, ``add_zero_attn``) go to the exact fallback.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..contrib import Contribution, Dense, Outer
from .registry import register_rule


def _merged_mask(
    attn_mask: Tensor | None, key_padding_mask: Tensor | None, is_causal: bool, b: int, h: int, l: int, s: int, dtype: torch.dtype
) -> Tensor | None:
    """Additive float mask of shape broadcastable to ``(B, H, L, S)``, as MHA would apply it."""
    mask = None

    def additive(m: Tensor) -> Tensor:
        if m.dtype == torch.bool:
            return torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill(m, float("-inf"))
        return m.to(dtype)

    if attn_mask is None and is_causal:
        attn_mask = torch.ones(l, s, dtype=torch.bool, device=None).triu(1)
    if attn_mask is not None:
        m = additive(attn_mask)
        mask = m.view(b, h, l, s) if m.dim() == 3 else m.view(1, 1, l, s)
    if key_padding_mask is not None:
        k = additive(key_padding_mask).view(b, 1, 1, s)
        mask = k if mask is None else mask + k
    return mask


def _attend(mod: nn.MultiheadAttention, qp: Tensor, kp: Tensor, vp: Tensor, mask: Tensor | None) -> Tensor:
    """Scaled dot-product attention of batch-first projections, heads merged back: (B, L, E)."""
    b, l, e = qp.shape
    s = kp.shape[1]
    h = mod.num_heads
    # explicit head sizes: an empty batch makes reshape(..., -1) ambiguous
    qh = qp.reshape(b, l, h, e // h).transpose(1, 2)
    kh = kp.reshape(b, s, h, kp.shape[2] // h).transpose(1, 2)
    vh = vp.reshape(b, s, h, vp.shape[2] // h).transpose(1, 2)
    out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask)
    return out.transpose(1, 2).reshape(b, l, h * vh.shape[3])


@register_rule(nn.MultiheadAttention, covers_children=True, needs_kwargs=True)
def mha_rule(module: nn.MultiheadAttention, inputs: tuple, grad: Tensor, names: list[str], kwargs: dict | None = None) -> dict[str, Contribution]:
    """In- and out-projection gradients per example from one local recomputation of the attention."""
    kwargs = dict(kwargs or {})
    query, key, value = (list(inputs) + [kwargs.pop(k, None) for k in ("query", "key", "value")[len(inputs) :]])[:3]
    if module.bias_k is not None or module.add_zero_attn or module.training and module.dropout > 0:
        raise NotImplementedError  # handled by the caller through the fallback
    key_padding_mask = kwargs.get("key_padding_mask")
    attn_mask = kwargs.get("attn_mask")
    is_causal = bool(kwargs.get("is_causal", False))
    if not module.batch_first:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        grad = grad.transpose(0, 1)
    same = query is key and key is value
    query, key, value = query.detach(), key.detach(), value.detach()
    b, l, e = query.shape
    s = key.shape[1]
    if module._qkv_same_embed_dim:
        wq, wk, wv = module.in_proj_weight.detach().chunk(3)
    else:
        wq, wk, wv = (w.detach() for w in (module.q_proj_weight, module.k_proj_weight, module.v_proj_weight))
    bq = bk = bv = None
    if module.in_proj_bias is not None:
        bq, bk, bv = module.in_proj_bias.detach().chunk(3)
    with torch.enable_grad():
        if same and module._qkv_same_embed_dim:  # one packed projection; its gradient is [gq gk gv]
            qkv = F.linear(query, module.in_proj_weight.detach(), None if bq is None else module.in_proj_bias.detach())
            qkv.requires_grad_()
            qp, kp, vp = qkv.chunk(3, dim=-1)
            leaves: tuple[Tensor, ...] = (qkv,)
        else:
            qp = F.linear(query, wq, bq).requires_grad_()
            kp = F.linear(key, wk, bk).requires_grad_()
            vp = F.linear(value, wv, bv).requires_grad_()
            leaves = (qp, kp, vp)
        mask = _merged_mask(attn_mask, key_padding_mask, is_causal, b, module.num_heads, l, s, qp.dtype)
        if mask is not None:
            mask = mask.to(qp.device)
        ctx = _attend(module, qp, kp, vp, mask)
        g_ctx = grad @ module.out_proj.weight.detach()
        grads = torch.autograd.grad(ctx, leaves, g_ctx)
    if len(grads) == 1:
        g_all = grads[0]
        gq, gk, gv = g_all.chunk(3, dim=-1)
    else:
        gq, gk, gv = grads
        g_all = None
    out: dict[str, Contribution] = {}
    if "in_proj_weight" in names:
        if same:
            g = g_all if g_all is not None else torch.cat([gq, gk, gv], dim=-1)
            out["in_proj_weight"] = Outer(g, query, b, 1, l, 3 * e, e)
        else:
            blocks = [torch.bmm(gg.transpose(1, 2), x) for gg, x in ((gq, query), (gk, key), (gv, value))]
            out["in_proj_weight"] = Dense(torch.cat([blk.flatten(1) for blk in blocks], dim=1))
    for name, gg, x in (("q_proj_weight", gq, query), ("k_proj_weight", gk, key), ("v_proj_weight", gv, value)):
        if name in names:
            out[name] = Outer(gg, x, b, 1, x.shape[1], gg.shape[2], x.shape[2])
    if "in_proj_bias" in names:
        g = g_all if g_all is not None else torch.cat([gq, gk, gv], dim=-1)
        out["in_proj_bias"] = Dense(g.sum(1))
    if "out_proj.weight" in names:
        out["out_proj.weight"] = Outer(grad, ctx.detach(), b, 1, l, grad.shape[2], ctx.shape[2])
    if "out_proj.bias" in names:
        out["out_proj.bias"] = Dense(grad.sum(1))
    return out

