"""Exactness tests for gnsel's gradient-norm engine (black-box against the API).

Every engine result is compared with a naive float64 reference (``tests/naive.py``):
one backward pass per example on a float64 deep copy of the model in eval mode.

    s_i = || d l_i / d theta ||^2                       (per_sample_grad_sq_norms)
    GN  = mean_i s_i,  ||mean_i grad l_i||^2            (gradient_norm)

Tolerances: relative error <= 1e-6 for float64 models and <= 1e-4 for float32 models
(against the float64 reference of the same parameter values).
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import sys
import warnings
import zlib
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import naive  # noqa: E402

gnsel = pytest.importorskip("gnsel")
if not hasattr(gnsel, "per_sample_grad_sq_norms"):  # engine not written yet
    pytest.skip("gnsel.per_sample_grad_sq_norms not available yet", allow_module_level=True)

TOL = {torch.float64: 1e-6, torch.float32: 1e-4}
DTYPES = [pytest.param(torch.float64, id="f64"), pytest.param(torch.float32, id="f32")]
B = 5  # examples per case


def rel_err(actual, expected) -> float:
    """max_i |a_i - b_i| / max(|b_i|, tiny)."""
    a = torch.as_tensor(actual).detach().double().cpu().reshape(-1)
    b = torch.as_tensor(expected).detach().double().cpu().reshape(-1)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert torch.isfinite(a).all(), f"non-finite engine result {a}"
    return float(((a - b).abs() / b.abs().clamp_min(1e-30)).max())


def assert_close(actual, expected, dtype, what=""):
    err = rel_err(actual, expected)
    assert err <= TOL[dtype], (
        f"{what}: relative error {err:.3e} > {TOL[dtype]:.0e}\n"
        f"  engine: {torch.as_tensor(actual).detach().double().cpu().reshape(-1).tolist()}\n"
        f"  naive : {torch.as_tensor(expected).detach().double().cpu().reshape(-1).tolist()}"
    )


def quiet(fn, *args, **kwargs):
    """Call the engine with warnings silenced (the fallback path may warn)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# --------------------------------------------------------------------------------------
# Custom losses (reduction="none" semantics: shape (B,))
# --------------------------------------------------------------------------------------


def seq_cross_entropy(outputs, targets):
    """(B, T, V) logits, (B, T) targets -> mean over positions, shape (B,)."""
    return F.cross_entropy(outputs.transpose(1, 2), targets, reduction="none").mean(dim=1)


def smoothed_ce_plus_logit_penalty(outputs, targets):
    return (
        F.cross_entropy(outputs, targets, reduction="none", label_smoothing=0.1)
        + 0.05 * outputs.pow(2).sum(dim=1)
    )


# --------------------------------------------------------------------------------------
# Model cases (all defined here; gnsel.models is not used)
# --------------------------------------------------------------------------------------


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 16)
        self.act1 = nn.ReLU()
        self.drop = nn.Dropout(0.5)  # must be off in the measurement
        self.fc2 = nn.Linear(16, 12, bias=False)
        self.act2 = nn.Tanh()
        self.head = nn.Linear(12, 5)

    def forward(self, x):
        return self.head(self.act2(self.fc2(self.drop(self.act1(self.fc1(x))))))


class CNN2d(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2)
        self.conv3 = nn.Conv2d(8, 6, (3, 2), stride=(2, 1), padding=(1, 0), bias=False)
        self.head = nn.Linear(6 * 3 * 4, 4)

    def forward(self, x):  # (B, 3, 9, 9)
        x = F.relu(self.conv1(x))  # 5x5
        x = F.relu(self.conv2(x))  # 5x5
        x = torch.tanh(self.conv3(x))  # 3x4
        return self.head(x.flatten(1))


class DepthwiseSeparable(nn.Module):
    def __init__(self):
        super().__init__()
        self.dw = nn.Conv2d(4, 8, 3, padding=1, groups=4)  # channel multiplier 2
        self.pw = nn.Conv2d(8, 6, 1)
        self.dw2 = nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Linear(6 * 2 * 2, 3)

    def forward(self, x):  # (B, 4, 7, 7)
        x = F.relu(self.pw(F.relu(self.dw(x))))
        x = torch.tanh(self.dw2(x))
        return self.head(self.pool(x).flatten(1))


class Conv1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(4, 8, 5, stride=2, padding=2)
        self.c2 = nn.Conv1d(8, 8, 3, dilation=2, padding=2, groups=4)
        self.c3 = nn.Conv1d(8, 4, 2, stride=3, padding=1, bias=False)
        self.head = nn.Linear(4 * 4, 3)

    def forward(self, x):  # (B, 4, 21)
        x = F.relu(self.c1(x))  # L = 11
        x = F.relu(self.c2(x))  # L = 11
        x = torch.tanh(self.c3(x))  # L = 4
        return self.head(x.flatten(1))


class Conv3dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv3d(2, 4, 3, stride=2, padding=1)
        self.c2 = nn.Conv3d(4, 4, (1, 3, 3), padding=(0, 1, 1), groups=2)
        self.head = nn.Linear(4 * 27, 3)

    def forward(self, x):  # (B, 2, 6, 6, 6)
        x = F.relu(self.c1(x))  # 3x3x3
        x = torch.tanh(self.c2(x))
        return self.head(x.flatten(1))


class ResBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
        self.relu_out = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return self.relu_out(out)


class ResNetBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(8)
        self.relu0 = nn.ReLU(inplace=True)
        self.block = ResBlock(8, 12, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(12, 5)

    def forward(self, x):  # (B, 3, 8, 8)
        x = self.relu0(self.bn0(self.stem(x)))
        x = self.block(x)
        return self.head(self.pool(x).flatten(1))


class BN1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 6, 3)
        self.bn_seq = nn.BatchNorm1d(6)  # on (B, C, L)
        self.fc1 = nn.Linear(6 * 10, 16)
        self.bn_flat = nn.BatchNorm1d(16)  # on (B, C)
        self.head = nn.Linear(16, 4)

    def forward(self, x):  # (B, 3, 12)
        x = F.relu(self.bn_seq(self.conv(x)))
        x = F.relu(self.bn_flat(self.fc1(x.flatten(1))))
        return self.head(x)


class BN3dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv3d(2, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm3d(4)
        self.c2 = nn.Conv3d(4, 4, 3, stride=2)
        self.bn2 = nn.BatchNorm3d(4)
        self.head = nn.Linear(4 * 8, 3)

    def forward(self, x):  # (B, 2, 5, 5, 5)
        x = F.relu(self.bn1(self.c1(x)))
        x = torch.tanh(self.bn2(self.c2(x)))  # 2x2x2
        return self.head(x.flatten(1))


class GroupNormCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.gn1 = nn.GroupNorm(2, 8)
        self.c2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.gn2 = nn.GroupNorm(8, 8)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Linear(8 * 4, 4)

    def forward(self, x):  # (B, 3, 8, 8)
        x = F.relu(self.gn1(self.c1(x)))
        x = F.relu(self.gn2(self.c2(x)))
        return self.head(self.pool(x).flatten(1))


class LayerNormMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_in = nn.LayerNorm((4, 6))  # over the last 2 dims
        self.fc1 = nn.Linear(24, 16)
        self.ln1 = nn.LayerNorm(16)
        self.fc2 = nn.Linear(16, 12)
        self.ln2 = nn.LayerNorm(12, bias=False)
        self.head = nn.Linear(12, 4)

    def forward(self, x):  # (B, 4, 6)
        x = self.ln_in(x).flatten(1)
        x = F.relu(self.ln1(self.fc1(x)))
        x = F.gelu(self.ln2(self.fc2(x)))
        return self.head(x)


class TinyTransformer(nn.Module):
    def __init__(self, norm_first=False, activation="relu"):
        super().__init__()
        self.tok = nn.Embedding(13, 16)
        self.pos = nn.Embedding(6, 16)
        self.encoder = nn.TransformerEncoderLayer(
            16, 2, dim_feedforward=32, dropout=0.0, batch_first=True,
            norm_first=norm_first, activation=activation,
        )
        self.head = nn.Linear(16, 3)

    def forward(self, x):  # (B, 6) int
        h = self.tok(x) + self.pos(torch.arange(x.shape[1], device=x.device))[None]
        h = self.encoder(h)
        return self.head(h.mean(dim=1))


class TiedLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(9, 8)
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, 9)
        self.head.weight = self.emb.weight  # tied input/output embedding

    def forward(self, x):  # (B, 5) int -> (B, 5, 9)
        return self.head(torch.tanh(self.mix(self.emb(x))))


class FrozenMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.block1 = nn.Sequential(nn.Linear(10, 16), nn.ReLU())
        self.block2 = nn.Sequential(nn.Linear(16, 16), nn.Tanh())
        self.head = nn.Linear(16, 4)
        for p in self.block1.parameters():
            p.requires_grad_(False)
        self.block2[0].bias.requires_grad_(False)  # partially frozen module

    def forward(self, x):
        return self.head(self.block2(self.block1(x)))


class LinearND(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin4 = nn.Linear(6, 5)  # applied to (B, 3, 4, 6)
        self.lin3 = nn.Linear(5, 7)  # applied to (B, 12, 5)
        self.head = nn.Linear(7, 3)

    def forward(self, x):  # (B, 3, 4, 6)
        h = F.relu(self.lin4(x))
        h = torch.tanh(self.lin3(h.reshape(h.shape[0], 12, 5)))
        return self.head(h.mean(dim=1))


class ReusedLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc_in = nn.Linear(6, 8)
        self.shared = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = F.relu(self.fc_in(x))
        h = F.relu(self.shared(h))
        h = torch.tanh(self.shared(h))  # same module, second use
        return self.head(h)


def make_scale_class():
    """A fresh parametrized leaf class the engine cannot have a rule for."""

    class Scale(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.weight = nn.Parameter(1.0 + 0.3 * torch.randn(c))
            self.shift = nn.Parameter(0.3 * torch.randn(c))

        def forward(self, x):
            return x * self.weight + self.shift

    return Scale


class CustomLeafNet(nn.Module):
    def __init__(self, scale_cls=None):
        super().__init__()
        scale_cls = scale_cls or make_scale_class()
        self.fc1 = nn.Linear(6, 8)
        self.scale = scale_cls(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(F.relu(self.scale(self.fc1(x))))


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.head = nn.Linear(16, 1)

    def forward(self, x):
        return self.head(torch.tanh(self.fc1(x)))


class ConvPaddingModes(nn.Module):
    """padding_mode reflect/circular/replicate and padding="same" (even kernel: asymmetric)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")
        self.c2 = nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular", groups=2)
        self.c3 = nn.Conv2d(4, 4, 4, padding="same")
        self.c4 = nn.Conv2d(4, 4, 3, padding="same", dilation=2, padding_mode="replicate")
        self.head = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):  # (B, 3, 6, 6)
        for c in (self.c1, self.c2, self.c3, self.c4):
            x = torch.tanh(c(x))
        return self.head(x.flatten(1))


class ConvTransposeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.t1 = nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1)
        self.t2 = nn.ConvTranspose2d(4, 4, 2, stride=2, groups=2, dilation=2, bias=False)
        self.head = nn.Linear(4, 3)

    def forward(self, x):  # (B, 3, 4, 4)
        return self.head(torch.tanh(self.t2(torch.tanh(self.t1(x)))).mean(dim=(2, 3)))


class EmbeddingPadding(nn.Module):
    """padding_idx row gets no gradient; repeated tokens in one example add up."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8, padding_idx=0)
        self.bag = nn.EmbeddingBag(10, 4, mode="mean")
        self.head = nn.Linear(12, 3)

    def forward(self, x):  # (B, 7) int
        return self.head(torch.cat([torch.tanh(self.emb(x)).mean(dim=1), self.bag(x)], dim=1))


def _tokens_with_repeats_and_padding():
    x = torch.randint(0, 4, (B, 7))
    x[:, 0] = 0
    x[:, 1] = x[:, 2]
    return x


class SharedWeightLinears(nn.Module):
    """Two Linear modules sharing one weight (different biases)."""

    def __init__(self):
        super().__init__()
        self.fc_in = nn.Linear(5, 8)
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)
        self.b.weight = self.a.weight
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.b(F.relu(self.a(self.fc_in(x))))))


class ViTLike(nn.Module):
    """Parameters held directly by the root module (cls token, positions)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(6, 8)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.pos = nn.Parameter(0.3 * torch.randn(1, 5, 8))
        self.ln = nn.LayerNorm(8)
        self.mlp = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):  # (B, 4, 6)
        h = self.proj(x)
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), h], dim=1) + self.pos
        h = h + torch.tanh(self.mlp(self.ln(h)))
        return self.head(h[:, 0])


class MHAKdimVdim(nn.Module):
    def __init__(self):
        super().__init__()
        self.att = nn.MultiheadAttention(8, 2, kdim=5, vdim=3, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):  # (B, 5, 16)
        q, k, v = x[..., :8], x[..., 8:13], x[..., 13:16]
        return self.head(self.att(q, k, v, need_weights=False)[0].mean(dim=1))


class FunctionalTiedLM(nn.Module):
    """GPT-style tying without a head module: logits = F.linear(h, emb.weight, out_bias)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(9, 8)
        self.mix = nn.Linear(8, 8)
        self.out_bias = nn.Parameter(0.1 * torch.randn(9))

    def forward(self, x):  # (B, 5) int -> (B, 5, 9)
        return F.linear(torch.tanh(self.mix(self.emb(x))), self.emb.weight, self.out_bias)


class DirectParamUse(nn.Module):
    """A module's weight is also read directly by its parent (outside the module's call)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        h = torch.tanh(self.fc(x))
        return self.head(h @ self.fc.weight.T)


class PosEmbeddingTEqB(nn.Module):
    """Learned positions pos(arange(T)) with sequence length T equal to the batch size."""

    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(7, 6)
        self.pos = nn.Embedding(B, 6)
        self.mix = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):  # (B, T=B) int
        h = self.tok(x) + self.pos(torch.arange(x.shape[1], device=x.device))[None]
        return self.head(torch.tanh(self.mix(h)).mean(dim=1))


class ConvOnly(nn.Module):  # no nn.Linear at all
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 5, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(self.c2(F.relu(self.c1(x)))).flatten(1)


def _cls(k):
    return lambda: torch.randint(0, k, (B,))


# name -> (model factory, input factory, target factory, loss)
CASES: dict[str, tuple[Callable, Callable, Callable, Any]] = {
    "mlp": (MLP, lambda: torch.randn(B, 10), _cls(5), "cross_entropy"),
    "cnn2d": (CNN2d, lambda: torch.randn(B, 3, 9, 9), _cls(4), "cross_entropy"),
    "depthwise_sep": (DepthwiseSeparable, lambda: torch.randn(B, 4, 7, 7), _cls(3), "cross_entropy"),
    "conv1d": (Conv1dNet, lambda: torch.randn(B, 4, 21), _cls(3), "cross_entropy"),
    "conv3d": (Conv3dNet, lambda: torch.randn(B, 2, 6, 6, 6), _cls(3), "cross_entropy"),
    "resnet_bn": (ResNetBN, lambda: torch.randn(B, 3, 8, 8), _cls(5), "cross_entropy"),
    "bn1d": (BN1dNet, lambda: torch.randn(B, 3, 12), _cls(4), "cross_entropy"),
    "bn3d": (BN3dNet, lambda: torch.randn(B, 2, 5, 5, 5), _cls(3), "cross_entropy"),
    "groupnorm": (GroupNormCNN, lambda: torch.randn(B, 3, 8, 8), _cls(4), "cross_entropy"),
    "layernorm": (LayerNormMLP, lambda: torch.randn(B, 4, 6), _cls(4), "cross_entropy"),
    "transformer": (TinyTransformer, lambda: torch.randint(0, 13, (B, 6)), _cls(3), "cross_entropy"),
    "transformer_prenorm_gelu": (
        lambda: TinyTransformer(norm_first=True, activation="gelu"),
        lambda: torch.randint(0, 13, (B, 6)), _cls(3), "cross_entropy",
    ),
    "tied_embedding": (TiedLM, lambda: torch.randint(0, 9, (B, 5)),
                       lambda: torch.randint(0, 9, (B, 5)), seq_cross_entropy),
    "frozen": (FrozenMLP, lambda: torch.randn(B, 10), _cls(4), "cross_entropy"),
    "linear_nd": (LinearND, lambda: torch.randn(B, 3, 4, 6), _cls(3), "cross_entropy"),
    "reused_module": (ReusedLinear, lambda: torch.randn(B, 6), _cls(3), "cross_entropy"),
    "custom_leaf": (CustomLeafNet, lambda: torch.randn(B, 6), _cls(3), "cross_entropy"),
    "mse_regression": (Regressor, lambda: torch.randn(B, 6), lambda: torch.randn(B, 1), "mse"),
    "custom_loss": (MLP, lambda: torch.randn(B, 10), _cls(5), smoothed_ce_plus_logit_penalty),
    "conv_padding_modes": (ConvPaddingModes, lambda: torch.randn(B, 3, 6, 6), _cls(3), "cross_entropy"),
    "conv_transpose": (ConvTransposeNet, lambda: torch.randn(B, 3, 4, 4), _cls(3), "cross_entropy"),
    "embedding_padding_idx": (EmbeddingPadding, _tokens_with_repeats_and_padding, _cls(3), "cross_entropy"),
    "shared_weight_two_linears": (SharedWeightLinears, lambda: torch.randn(B, 5), _cls(3), "cross_entropy"),
    "vit_root_params": (ViTLike, lambda: torch.randn(B, 4, 6), _cls(3), "cross_entropy"),
    "mha_kdim_vdim": (MHAKdimVdim, lambda: torch.randn(B, 5, 16), _cls(3), "cross_entropy"),
    "functional_tied_logits": (FunctionalTiedLM, lambda: torch.randint(0, 9, (B, 5)),
                               lambda: torch.randint(0, 9, (B, 5)), seq_cross_entropy),
    "direct_param_use": (DirectParamUse, lambda: torch.randn(B, 6), _cls(3), "cross_entropy"),
    "pos_embedding_T_eq_B": (PosEmbeddingTEqB, lambda: torch.randint(0, 7, (B, B)), _cls(3), "cross_entropy"),
}
CASE_NAMES = list(CASES)
CE_CASES = [n for n in CASE_NAMES if CASES[n][3] == "cross_entropy"]


def randomize_norms(model: nn.Module) -> None:
    """Make BatchNorm running stats and norm affine parameters non-trivial."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(0.5 * torch.randn_like(m.running_mean))
                m.running_var.copy_(0.5 + 1.5 * torch.rand_like(m.running_var))
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)):
                if getattr(m, "weight", None) is not None:
                    m.weight.copy_(1.0 + 0.3 * torch.randn_like(m.weight))
                if getattr(m, "bias", None) is not None:
                    m.bias.copy_(0.3 * torch.randn_like(m.bias))


@dataclass
class Case:
    name: str
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    loss: Any
    dtype: torch.dtype


def make(name: str, dtype=torch.float64, model_factory=None) -> Case:
    """Build case ``name`` deterministically. The float32 and float64 versions hold the
    same values (float64 = exact upcast of float32), so they share one reference."""
    torch.manual_seed(zlib.crc32(name.encode()))
    factory, xf, yf, loss = CASES[name]
    model = (model_factory or factory)()
    randomize_norms(model)
    x, y = xf(), yf()
    model = model.to(dtype)  # starts in train mode: the engine must switch to eval
    if x.is_floating_point():
        x = x.to(dtype)
    if y.is_floating_point():
        y = y.to(dtype)
    return Case(name, model, x, y, loss, dtype)


@functools.lru_cache(maxsize=None)
def reference(name: str, scope: str | tuple = "full", n: int | None = None):
    """Naive float64 (s, mean_sq, mean_grad_sq) of case ``name`` on its first n examples.

    ``scope`` is "full"/"fc" as a string, or a tuple of module names (a module may be named "fc")."""
    c = make(name, torch.float64)
    sc = scope if isinstance(scope, str) else list(scope)
    x, y = (c.x, c.y) if n is None else (c.x[:n], c.y[:n])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own notes (e.g. padding="same", even kernel)
        return naive.naive_stats(c.model, x, y, c.loss, sc)


def ref_key(scope):
    return (scope,) if isinstance(scope, str) else tuple(scope)


def gn_kwargs(loss):
    """gradient_norm has no ``loss`` argument in the documented API; pass it only if the
    engine accepts one, otherwise non-cross-entropy cases are skipped."""
    if loss == "cross_entropy":
        return {}
    if "loss" in inspect.signature(gnsel.gradient_norm).parameters:
        return {"loss": loss}
    pytest.skip("gradient_norm takes no loss= argument")


# --------------------------------------------------------------------------------------
# State snapshots: params, grads, buffers, modes, hooks
# --------------------------------------------------------------------------------------


def _hook_counts(m: nn.Module):
    return tuple(
        len(getattr(m, attr, {}) or {})
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                     "_backward_pre_hooks", "_state_dict_hooks", "_load_state_dict_pre_hooks")
    )


def _global_hook_counts():
    mod = nn.modules.module
    return tuple(
        len(getattr(mod, attr, {}) or {})
        for attr in ("_global_forward_hooks", "_global_forward_pre_hooks",
                     "_global_backward_hooks", "_global_backward_pre_hooks")
    )


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality that treats NaN == NaN."""
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    if a.is_floating_point():
        return bool(torch.equal(a.isnan(), b.isnan())
                    and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0)))
    return bool(torch.equal(a, b))


def snapshot(model: nn.Module, *tensors):
    return {
        "params": [
            (n, p, p.detach().clone(), p.requires_grad, p.dtype, p.device,
             None if p.grad is None else p.grad.detach().clone())
            for n, p in model.named_parameters(remove_duplicate=False)
        ],
        "buffers": [(n, b, b.detach().clone()) for n, b in model.named_buffers()],
        "training": [(n, m.training) for n, m in model.named_modules()],
        "modules": [(n, m) for n, m in model.named_modules()],
        "hooks": [(n, _hook_counts(m)) for n, m in model.named_modules()],
        "global_hooks": _global_hook_counts(),
        "grad_enabled": torch.is_grad_enabled(),
        "tensors": [(t, t.detach().clone(), t.requires_grad) for t in tensors],
    }


def assert_state_unchanged(model: nn.Module, snap, *tensors):
    now = list(model.named_parameters(remove_duplicate=False))
    assert [n for n, _ in now] == [n for n, *_ in snap["params"]], "parameter set changed"
    for (n, p_now), (_, p, val, rg, dt, dev, g) in zip(now, snap["params"]):
        assert p_now is p, f"parameter object {n} replaced"
        assert p.dtype == dt and p.device == dev, f"{n}: dtype/device changed"
        assert same(p.detach(), val), f"{n}: parameter value changed"
        assert p.requires_grad == rg, f"{n}: requires_grad changed"
        if g is None:
            assert p.grad is None, f"{n}: a .grad was created"
        else:
            assert p.grad is not None, f"{n}: pre-existing .grad was cleared"
            assert same(p.grad, g), f"{n}: pre-existing .grad changed"
    bufs = list(model.named_buffers())
    assert [n for n, _ in bufs] == [n for n, *_ in snap["buffers"]], "buffer set changed"
    for (n, b_now), (_, b, val) in zip(bufs, snap["buffers"]):
        assert same(b_now, val), f"buffer {n} changed (e.g. BatchNorm stats updated)"
    assert [(n, m.training) for n, m in model.named_modules()] == snap["training"], (
        "train/eval modes not restored"
    )
    assert [(n, m) for n, m in model.named_modules()] == snap["modules"], "modules replaced"
    assert [(n, _hook_counts(m)) for n, m in model.named_modules()] == snap["hooks"], (
        "hooks left on modules"
    )
    assert _global_hook_counts() == snap["global_hooks"], "global module hooks left behind"
    assert torch.is_grad_enabled() == snap["grad_enabled"], "grad mode changed"
    for t, val, rg in snap["tensors"]:
        assert same(t, val), "input/target tensor modified in place"
        assert t.requires_grad == rg


def set_some_grads(model: nn.Module, seed=0):
    """Give every other parameter a random .grad, leave the rest None."""
    g = torch.Generator().manual_seed(seed)
    for i, p in enumerate(model.parameters()):
        if i % 2 == 0:
            p.grad = torch.randn(p.shape, generator=g).to(p.dtype)
        else:
            p.grad = None


# --------------------------------------------------------------------------------------
# 0. The reference itself: naive loop == torch.func vmap(grad)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,scope", [
    ("mlp", "full"), ("cnn2d", "full"), ("resnet_bn", "full"), ("tied_embedding", "full"),
    ("tied_embedding", ["head"]), ("frozen", "full"), ("custom_leaf", "full"),
    ("mse_regression", "full"), ("reused_module", ["shared"]), ("mlp", "fc"),
    ("functional_tied_logits", "full"), ("functional_tied_logits", ["emb"]),
    ("direct_param_use", "full"), ("pos_embedding_T_eq_B", "full"),
    ("shared_weight_two_linears", ["b"]), ("vit_root_params", "full"),
])
def test_naive_reference_matches_torch_func(name, scope):
    c = make(name, torch.float64)
    a = naive.naive_sq_norms(c.model, c.x, c.y, c.loss, scope)
    b = naive.funcvmap_sq_norms(c.model, c.x, c.y, c.loss, scope)
    assert (a > 0).all()
    assert rel_err(a, b) <= 1e-10


def test_naive_reference_sanity():
    # single example: ||mean grad||^2 == mean ||grad||^2
    c = make("mlp")
    s, msq, mgsq = naive.naive_stats(c.model, c.x[:1], c.y[:1])
    assert msq == pytest.approx(mgsq, rel=1e-12)
    # the float64 copy keeps the tie
    m = naive._float64_copy(make("tied_embedding", torch.float32).model)
    assert m.head.weight is m.emb.weight
    # the tied parameter is counted once, with the gradient of both uses
    names = naive.scope_param_names(make("tied_embedding").model, "full")
    assert names == ["emb.weight", "mix.weight", "mix.bias", "head.bias"]
    assert naive.scope_param_names(make("frozen").model, "full") == [
        "block2.0.weight", "head.weight", "head.bias"]


# --------------------------------------------------------------------------------------
# 1. per_sample_grad_sq_norms == naive, every case, float64 and float32
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASE_NAMES)
def test_per_sample_matches_naive(name, dtype):
    c = make(name, dtype)
    s_ref, _, _ = reference(name)
    assert (s_ref > 0).all()
    snap = snapshot(c.model, c.x, c.y)
    s = quiet(gnsel.per_sample_grad_sq_norms, c.model, c.x, c.y, loss=c.loss, scope="full")
    assert isinstance(s, torch.Tensor) and s.ndim == 1 and s.shape[0] == B, getattr(s, "shape", s)
    assert_close(s, s_ref, dtype, f"{name} per-example squared norms")
    assert_state_unchanged(c.model, snap, c.x, c.y)


def test_default_arguments_are_cross_entropy_full():
    c = make("mlp")
    s = gnsel.per_sample_grad_sq_norms(c.model, c.x, c.y)
    assert_close(s, reference("mlp")[0], torch.float64, "defaults")


@pytest.mark.parametrize("name", ["mlp", "cnn2d", "resnet_bn", "transformer", "tied_embedding",
                                  "linear_nd", "mse_regression", "custom_leaf"])
def test_batch_of_one(name):
    c = make(name)
    s = quiet(gnsel.per_sample_grad_sq_norms, c.model, c.x[3:4], c.y[3:4], loss=c.loss)
    assert s.shape == (1,)
    assert_close(s, reference(name)[0][3:4], torch.float64, f"{name} batch of one")


def test_repeated_calls_agree():
    c = make("resnet_bn")
    a = gnsel.per_sample_grad_sq_norms(c.model, c.x, c.y)
    b = gnsel.per_sample_grad_sq_norms(c.model, c.x, c.y)
    assert torch.equal(a, b)


def test_custom_leaf_warns_and_is_exact():
    """A leaf the engine has no rule for goes through the torch.func fallback: still exact,
    and the user is warned (warning class not over-specified)."""
    fresh = make("custom_leaf", model_factory=lambda: CustomLeafNet(make_scale_class()))
    with pytest.warns(Warning):
        s = gnsel.per_sample_grad_sq_norms(fresh.model, fresh.x, fresh.y)
    assert_close(s, reference("custom_leaf")[0], torch.float64, "custom leaf")


# --------------------------------------------------------------------------------------
# 2. gradient_norm == naive (several batches, max_samples)
# --------------------------------------------------------------------------------------


GN_VARIANTS = [
    pytest.param(dict(), B, id="default-bs"),
    pytest.param(dict(batch_size=2), B, id="bs2"),
    pytest.param(dict(batch_size=2, max_samples=3), 3, id="bs2-max3"),
    pytest.param(dict(batch_size=3, max_samples=4), 4, id="bs3-max4"),
]


@pytest.mark.parametrize("kw,n", GN_VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASE_NAMES)
def test_gradient_norm_pair_matches_naive(name, dtype, kw, n):
    c = make(name, dtype)
    extra = gn_kwargs(c.loss)
    _, msq, mgsq = reference(name, n=None if n == B else n)
    snap = snapshot(c.model, c.x, c.y)
    r = quiet(gnsel.gradient_norm, c.model, (c.x, c.y), device="cpu", **kw, **extra)
    assert int(r.n) == n
    assert r.scope == "full"
    assert float(r.seconds) >= 0.0
    assert_close(float(r.mean_sq), msq, dtype, f"{name} mean_sq")
    assert_close(float(r.mean_grad_sq), mgsq, dtype, f"{name} mean_grad_sq")
    assert float(r.variance) == pytest.approx(float(r.mean_sq) - float(r.mean_grad_sq),
                                              rel=1e-9, abs=1e-12)
    assert_state_unchanged(c.model, snap, c.x, c.y)


def test_gradient_norm_default_batch_size_larger_than_n():
    c = make("cnn2d")
    _, msq, mgsq = reference("cnn2d")
    r = gnsel.gradient_norm(c.model, (c.x, c.y))
    assert int(r.n) == B
    assert_close(float(r.mean_sq), msq, torch.float64, "mean_sq")
    assert_close(float(r.mean_grad_sq), mgsq, torch.float64, "mean_grad_sq")


def test_gradient_norm_max_samples_larger_than_n():
    c = make("mlp")
    _, msq, _ = reference("mlp")
    r = gnsel.gradient_norm(c.model, (c.x, c.y), batch_size=2, max_samples=100)
    assert int(r.n) == B
    assert_close(float(r.mean_sq), msq, torch.float64, "mean_sq")


# --------------------------------------------------------------------------------------
# 3. Scopes: "fc" and lists of module names
# --------------------------------------------------------------------------------------


FC_CASES = ["mlp", "cnn2d", "resnet_bn", "conv1d", "frozen", "transformer", "custom_leaf",
            "mse_regression", "custom_loss", "conv_padding_modes", "vit_root_params"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FC_CASES)
def test_scope_fc(name, dtype):
    c = make(name, dtype)
    s_ref = reference(name, "fc")[0]
    full_ref = reference(name)[0]
    assert (s_ref < full_ref).all()  # the test is not vacuous
    snap = snapshot(c.model, c.x, c.y)
    s = quiet(gnsel.per_sample_grad_sq_norms, c.model, c.x, c.y, loss=c.loss, scope="fc")
    assert_close(s, s_ref, dtype, f"{name} scope=fc")
    assert_state_unchanged(c.model, snap, c.x, c.y)


@pytest.mark.parametrize("name", ["cnn2d", "resnet_bn"])
def test_gradient_norm_scope_fc(name):
    c = make(name)
    _, msq, mgsq = reference(name, "fc")
    r = gnsel.gradient_norm(c.model, (c.x, c.y), scope="fc", batch_size=2)
    assert r.scope == "fc"
    assert_close(float(r.mean_sq), msq, torch.float64, "mean_sq fc")
    assert_close(float(r.mean_grad_sq), mgsq, torch.float64, "mean_grad_sq fc")


MODULE_SCOPES = [
    ("mlp", ["fc1", "head"]),
    ("cnn2d", ["conv2"]),
    ("resnet_bn", ["block.conv1", "block.bn2", "bn0"]),
    ("resnet_bn", ["block", "block.conv1", "head"]),  # overlapping names: params count once
    ("resnet_bn", ["block.shortcut"]),
    ("depthwise_sep", ["dw", "pw"]),
    ("layernorm", ["ln_in", "ln2"]),
    ("groupnorm", ["gn1", "c2"]),
    ("bn1d", ["bn_seq", "bn_flat"]),
    ("transformer", ["encoder.self_attn", "tok"]),
    ("transformer", ["encoder.linear1", "encoder.norm2", "pos"]),
    ("tied_embedding", ["emb"]),  # emb.weight gets the gradient of both uses
    ("tied_embedding", ["head"]),  # head.weight IS emb.weight: same full gradient
    ("tied_embedding", ["mix"]),
    ("reused_module", ["shared"]),
    ("linear_nd", ["lin4", "lin3"]),
    ("custom_leaf", ["scale"]),
    ("mse_regression", ["fc1"]),
    ("frozen", ["block2", "head"]),
    ("conv_padding_modes", ["c3", "c4"]),
    ("embedding_padding_idx", ["emb", "bag"]),
    ("shared_weight_two_linears", ["b"]),  # b.weight IS a.weight: gradient of both uses
    ("vit_root_params", ["proj", "ln"]),
    ("mha_kdim_vdim", ["att"]),
    ("functional_tied_logits", ["emb"]),  # emb.weight is also the output projection
    ("direct_param_use", ["fc"]),  # fc.weight is also read directly by the parent
    ("pos_embedding_T_eq_B", ["pos"]),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,scope", MODULE_SCOPES,
                         ids=[f"{n}-{'+'.join(s)}" for n, s in MODULE_SCOPES])
def test_scope_module_names(name, scope, dtype):
    c = make(name, dtype)
    s_ref = reference(name, tuple(scope))[0]
    assert (s_ref > 0).all()
    snap = snapshot(c.model, c.x, c.y)
    s = quiet(gnsel.per_sample_grad_sq_norms, c.model, c.x, c.y, loss=c.loss, scope=list(scope))
    assert_close(s, s_ref, dtype, f"{name} scope={scope}")
    assert_state_unchanged(c.model, snap, c.x, c.y)


def test_gradient_norm_scope_module_names():
    c = make("resnet_bn")
    scope = ["block.conv1", "block.bn2", "bn0"]
    _, msq, mgsq = reference("resnet_bn", tuple(scope))
    r = gnsel.gradient_norm(c.model, (c.x, c.y), scope=scope, batch_size=2, max_samples=None)
    assert_close(float(r.mean_sq), msq, torch.float64, "mean_sq")
    assert_close(float(r.mean_grad_sq), mgsq, torch.float64, "mean_grad_sq")


def test_scopes_partition_adds_up():
    """Disjoint module scopes covering all params sum to the full norm."""
    c = make("resnet_bn")
    parts = [["stem", "bn0"], ["block"], ["head"]]
    total = sum(quiet(gnsel.per_sample_grad_sq_norms, c.model, c.x, c.y, scope=p).double()
                for p in parts)
    assert_close(total, reference("resnet_bn")[0], torch.float64, "sum of scopes")


# --------------------------------------------------------------------------------------
# 4. Model state: modes, params, grads
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "resnet_bn", "bn1d", "transformer", "tied_embedding",
                                  "frozen", "custom_leaf"])
@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
def test_state_restored(name, mode):
    c = make(name)
    model = c.model
    if mode == "train":
        model.train()
    elif mode == "eval":
        model.eval()
    else:  # mixed: alternate modes over the modules
        model.train()
        for i, m in enumerate(model.modules()):
            m.training = bool(i % 2)
    set_some_grads(model)
    snap = snapshot(model, c.x, c.y)
    s = quiet(gnsel.per_sample_grad_sq_norms, model, c.x, c.y, loss=c.loss)
    assert_close(s, reference(name)[0], torch.float64, f"{name} ({mode})")
    assert_state_unchanged(model, snap, c.x, c.y)
    if name == "tied_embedding":
        assert model.head.weight is model.emb.weight
    if c.loss == "cross_entropy":
        r = quiet(gnsel.gradient_norm, model, (c.x, c.y), batch_size=2)
        assert_close(float(r.mean_sq), reference(name)[1], torch.float64, "mean_sq")
        assert_state_unchanged(model, snap, c.x, c.y)


def test_no_grad_created_on_fresh_model():
    c = make("resnet_bn")
    assert all(p.grad is None for p in c.model.parameters())
    quiet(gnsel.per_sample_grad_sq_norms, c.model, c.x, c.y)
    quiet(gnsel.gradient_norm, c.model, (c.x, c.y), batch_size=2)
    assert all(p.grad is None for p in c.model.parameters())


def test_inputs_requiring_grad_are_left_alone():
    c = make("cnn2d")
    x = c.x.clone().requires_grad_(True)
    snap = snapshot(c.model, x, c.y)
    s = gnsel.per_sample_grad_sq_norms(c.model, x, c.y)
    assert_close(s, reference("cnn2d")[0], torch.float64, "x.requires_grad")
    assert x.grad is None
    assert_state_unchanged(c.model, snap, x, c.y)


# --------------------------------------------------------------------------------------
# 5. Errors (and the model is untouched after each)
# --------------------------------------------------------------------------------------


def scalar_loss(outputs, targets):
    return F.cross_entropy(outputs, targets)


def elementwise_loss(outputs, targets):  # (B, K): no per-example reduction
    return F.cross_entropy(outputs, targets, reduction="none")[:, None] * outputs.softmax(1)


def column_loss(outputs, targets):  # (B, 1)
    return F.cross_entropy(outputs, targets, reduction="none")[:, None]


def inf_for_example_1(outputs, targets):
    l = F.cross_entropy(outputs, targets, reduction="none")
    mask = torch.ones_like(l)
    mask[1] = 0.0
    return l - torch.log(mask)  # +inf at example 1


def _freeze_all(model):
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _nan_at_3(x):
    x = x.clone()
    x[3] = float("nan")
    return x


ERROR_CASES = {
    # id: (case, model transform, (x, y) transform, kwargs, message regex)
    "targets_batch_mismatch": ("mlp", None, lambda x, y: (x, y[:4]), {},
                               r"batch|size|match|length|number"),
    "targets_too_many": ("cnn2d", None, lambda x, y: (x, torch.cat([y, y[:1]])), {},
                         r"batch|size|match|length|number"),
    "loss_returns_scalar": ("mlp", None, None, {"loss": scalar_loss},
                            r"shape|scalar|per[- _]?(example|sample)|reduction|dim|\(B,?\)"),
    "loss_returns_BxK": ("mlp", None, None, {"loss": elementwise_loss},
                         r"shape|per[- _]?(example|sample)|reduction|dim|\(B,?\)"),
    "loss_returns_Bx1": ("mlp", None, None, {"loss": column_loss},
                         r"shape|per[- _]?(example|sample)|reduction|dim|\(B,?\)"),
    "fc_without_linear": ("cnn2d", lambda m: ConvOnly().double(), None, {"scope": "fc"},
                          r"linear|fc|head|classifier"),
    "no_trainable_params": ("mlp", _freeze_all, None, {},
                            r"trainable|requires_grad|param"),
    "no_trainable_params_fc": ("mlp", _freeze_all, None, {"scope": "fc"},
                               r"trainable|requires_grad|param|empty|scope"),
    "nonfinite_input": ("resnet_bn", None, lambda x, y: (_nan_at_3(x), y), {},
                        r"finite|nan|inf"),
    "nonfinite_loss_callable": ("mlp", None, None, {"loss": inf_for_example_1},
                                r"finite|nan|inf"),
    "unknown_module_in_scope": ("mlp", None, None, {"scope": ["fc1", "nope"]},
                                r"nope|module|scope|name"),
}


def _error_setup(case_id):
    name, mt, dt, kw, rx = ERROR_CASES[case_id]
    c = make(name)
    model = mt(c.model) if mt else c.model
    x, y = dt(c.x, c.y) if dt else (c.x, c.y)
    model.train()
    list(model.modules())[-1].eval()  # mixed modes
    set_some_grads(model, seed=1)
    return model, x, y, kw, rx


@pytest.mark.parametrize("case_id", list(ERROR_CASES))
def test_per_sample_errors(case_id):
    model, x, y, kw, rx = _error_setup(case_id)
    snap = snapshot(model, x, y)
    with pytest.raises(Exception) as ei:
        quiet(gnsel.per_sample_grad_sq_norms, model, x, y, **kw)
    assert re.search(rx, str(ei.value), re.I), f"unhelpful message: {ei.value!r}"
    assert_state_unchanged(model, snap, x, y)


@pytest.mark.parametrize("case_id", ["targets_batch_mismatch", "fc_without_linear",
                                     "no_trainable_params", "nonfinite_input",
                                     "unknown_module_in_scope"])
def test_gradient_norm_errors(case_id):
    model, x, y, kw, rx = _error_setup(case_id)
    snap = snapshot(model, x, y)
    with pytest.raises(Exception) as ei:
        quiet(gnsel.gradient_norm, model, (x, y), batch_size=2, **kw)
    assert re.search(rx, str(ei.value), re.I), f"unhelpful message: {ei.value!r}"
    assert_state_unchanged(model, snap, x, y)


def test_nonfinite_in_later_batch_of_dataloader_raises():
    c = make("mlp")
    loader = DataLoader(TensorDataset(_nan_at_3(c.x), c.y), batch_size=2, shuffle=False)
    snap = snapshot(c.model)
    with pytest.raises(Exception) as ei:
        quiet(gnsel.gradient_norm, c.model, loader)
    assert re.search(r"finite|nan|inf", str(ei.value), re.I), repr(ei.value)
    assert_state_unchanged(c.model, snap)


def test_engine_still_exact_after_an_error():
    c = make("resnet_bn")
    with pytest.raises(Exception):
        quiet(gnsel.per_sample_grad_sq_norms, c.model, _nan_at_3(c.x), c.y)
    with pytest.raises(Exception):
        quiet(gnsel.per_sample_grad_sq_norms, c.model, c.x, c.y, loss=scalar_loss)
    s = gnsel.per_sample_grad_sq_norms(c.model, c.x, c.y)
    assert_close(s, reference("resnet_bn")[0], torch.float64, "after errors")


# --------------------------------------------------------------------------------------
# 6. gradient_norm inputs: DataLoader, devices
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("loader_bs,kw,n", [
    pytest.param(2, {}, B, id="loader-bs2"),
    pytest.param(2, {"max_samples": 3}, 3, id="loader-bs2-max3"),
    pytest.param(4, {"batch_size": 2}, B, id="loader-bs4-arg-bs2"),
    pytest.param(1, {"batch_size": 4, "max_samples": 4}, 4, id="loader-bs1-max4"),
])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["mlp", "resnet_bn", "transformer"])
def test_gradient_norm_dataloader(name, dtype, loader_bs, kw, n):
    c = make(name, dtype)
    _, msq, mgsq = reference(name, n=None if n == B else n)
    loader = DataLoader(TensorDataset(c.x, c.y), batch_size=loader_bs, shuffle=False)
    snap = snapshot(c.model, c.x, c.y)
    r = quiet(gnsel.gradient_norm, c.model, loader, **kw)
    assert int(r.n) == n
    assert_close(float(r.mean_sq), msq, dtype, "mean_sq")
    assert_close(float(r.mean_grad_sq), mgsq, dtype, "mean_grad_sq")
    assert_state_unchanged(c.model, snap, c.x, c.y)


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_gradient_norm_device(device):
    c = make("resnet_bn")
    _, msq, mgsq = reference("resnet_bn")
    snap = snapshot(c.model, c.x, c.y)
    r = gnsel.gradient_norm(c.model, (c.x, c.y), batch_size=2, device=device)
    assert int(r.n) == B
    assert_close(float(r.mean_sq), msq, torch.float64, f"mean_sq device={device}")
    assert_close(float(r.mean_grad_sq), mgsq, torch.float64, f"mean_grad_sq device={device}")
    assert_state_unchanged(c.model, snap, c.x, c.y)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", CASE_NAMES)
def test_cuda_float64_matches_naive(name):
    """float64 on the GPU: same tolerance as on the CPU (no TF32 in float64)."""
    c = make(name)
    model = c.model.cuda()
    x, y = c.x.cuda(), c.y.cuda()
    snap = snapshot(model, x, y)
    s = quiet(gnsel.per_sample_grad_sq_norms, model, x, y, loss=c.loss)
    assert_close(s, reference(name)[0], torch.float64, f"{name} cuda")
    assert_state_unchanged(model, snap, x, y)
    if c.loss == "cross_entropy":
        r = quiet(gnsel.gradient_norm, model, (x, y), batch_size=2, device="cuda")
        assert_close(float(r.mean_sq), reference(name)[1], torch.float64, "mean_sq cuda")
        assert_close(float(r.mean_grad_sq), reference(name)[2], torch.float64, "mgsq cuda")


# --------------------------------------------------------------------------------------
# 7. Beyond the documented contract: the engine may refuse (raise), but must never return
#    a silently wrong number.
# --------------------------------------------------------------------------------------


class RNNNet(nn.Module):
    def __init__(self, kind, batch_first, use_hidden):
        super().__init__()
        self.batch_first, self.use_hidden = batch_first, use_hidden
        self.rnn = getattr(nn, kind)(4, 6, batch_first=batch_first)
        self.head = nn.Linear(6, 3)

    def forward(self, x):  # (B, 5, 4)
        out, h = self.rnn(x if self.batch_first else x.transpose(0, 1))
        if self.use_hidden:
            h = h[0] if isinstance(h, tuple) else h
            return self.head(h[-1])
        return self.head(out[:, -1] if self.batch_first else out[-1])


def _exact_or_raises(fn, model, x, y, ref, what):
    snap = snapshot(model, x, y)
    try:
        s = quiet(fn)
    except Exception:  # refusing is acceptable here
        assert_state_unchanged(model, snap, x, y)
        return
    assert_close(s, ref, torch.float64, what)
    assert_state_unchanged(model, snap, x, y)


@pytest.mark.parametrize("kind,batch_first,use_hidden", [
    ("LSTM", True, False), ("LSTM", False, False), ("LSTM", True, True), ("GRU", True, False),
    ("GRU", False, True), ("RNN", True, False),
], ids=["lstm-batch_first", "lstm-seq_first", "lstm-h_n", "gru-batch_first", "gru-seq_first-h_n", "rnn"])
def test_recurrent_exact(kind, batch_first, use_hidden):
    """RNNs have no rule; their fused kernels cannot be vmapped, so the fallback loops over examples."""
    torch.manual_seed(7)
    model = RNNNet(kind, batch_first, use_hidden).double()
    x, y = torch.randn(B, 5, 4, dtype=torch.float64), torch.randint(0, 3, (B,))
    ref = naive.naive_sq_norms(model, x, y)
    snap = snapshot(model, x, y)
    assert_close(quiet(gnsel.per_sample_grad_sq_norms, model, x, y), ref, torch.float64, kind)
    assert_state_unchanged(model, snap, x, y)


@pytest.mark.parametrize("ctx", [torch.no_grad, torch.inference_mode, torch.enable_grad],
                         ids=["no_grad", "inference_mode", "enable_grad"])
def test_grad_mode_context_exact_or_refused(ctx):
    """Called inside ``torch.no_grad()`` / ``torch.inference_mode()`` (as in evaluation code)."""
    c = make("mlp")
    ref = reference("mlp")[0]
    with ctx():
        _exact_or_raises(lambda: gnsel.per_sample_grad_sq_norms(c.model, c.x, c.y),
                         c.model, c.x, c.y, ref, f"inside {ctx.__name__}")
        _exact_or_raises(lambda: gnsel.gradient_norm(c.model, (c.x, c.y), batch_size=2).mean_sq,
                         c.model, c.x, c.y, reference("mlp")[1], f"gradient_norm inside {ctx.__name__}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["mlp", "layernorm", "transformer", "tied_embedding",
                                  "linear_nd", "reused_module", "custom_leaf"])
def test_cuda_float32_matches_naive(name):
    """float32 on the GPU, models without convolutions (cuDNN may use TF32 for convs)."""
    c = make(name, torch.float32)
    model = c.model.cuda()
    x, y = c.x.cuda(), c.y.cuda()
    s = quiet(gnsel.per_sample_grad_sq_norms, model, x, y, loss=c.loss)
    assert_close(s, reference(name)[0], torch.float32, f"{name} cuda f32")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device_auto_with_cpu_model():
    """device="auto" on a CUDA machine with a CPU model and CPU data: exact, model untouched."""
    c = make("resnet_bn")
    snap = snapshot(c.model, c.x, c.y)
    r = quiet(gnsel.gradient_norm, c.model, (c.x, c.y), batch_size=2, device="auto")
    assert_close(float(r.mean_sq), reference("resnet_bn")[1], torch.float64, "auto mean_sq")
    assert_close(float(r.mean_grad_sq), reference("resnet_bn")[2], torch.float64, "auto mgsq")
    assert_state_unchanged(c.model, snap, c.x, c.y)


# --------------------------------------------------------------------------------------
# Chunking: the per-example norms do not depend on how many examples a chunk holds
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CASE_NAMES)
def test_norms_do_not_depend_on_the_chunk_budget(name, monkeypatch):
    from gnsel.gradnorm import contrib

    c = make(name, torch.float64)
    s_ref, _, _ = reference(name)
    for budget in (1, 1 << 30):  # one example per chunk / the whole batch in one chunk
        monkeypatch.setattr(contrib, "CHUNK_ELEMENTS", budget)
        s = quiet(gnsel.per_sample_grad_sq_norms, c.model, c.x, c.y, loss=c.loss, scope="full")
        assert_close(s, s_ref, torch.float64, f"{name} with chunk budget {budget}")


def test_chunk_budget_follows_the_device():
    from gnsel.gradnorm.contrib import ACCELERATOR_CHUNK_ELEMENTS, CHUNK_ELEMENTS, chunk_budget, chunk_size

    per_example = 1 << 16
    assert chunk_size(per_example, 10_000) == CHUNK_ELEMENTS // per_example
    with chunk_budget("cuda"):  # no GPU needed: only the device type is read
        assert chunk_size(per_example, 10_000) == ACCELERATOR_CHUNK_ELEMENTS // per_example
        with chunk_budget(torch.device("cpu")):
            assert chunk_size(per_example, 10_000) == CHUNK_ELEMENTS // per_example
        assert chunk_size(per_example, 10_000) == ACCELERATOR_CHUNK_ELEMENTS // per_example
    assert chunk_size(per_example, 10_000) == CHUNK_ELEMENTS // per_example
    assert chunk_size(10**9, 7) == 1 and chunk_size(1, 7) == 7


def test_conv_autotune_skips_the_ghost_norm_where_it_cannot_win(monkeypatch):
    """Depthwise convs on large maps: the ghost norm's T x T Gram matrices are orders of magnitude slower (timing
    it once took minutes on MobileNetV2 at 32x32), so it is not a candidate there; on small maps it still is."""
    import gnsel.gradnorm.rules.conv as conv

    tried = []
    real = conv.autotuned

    def spy(key, candidates):
        tried.append(set(candidates))
        return real(key, candidates)

    monkeypatch.setattr(conv, "autotuned", spy)
    for channels, size in ((16, 32), (64, 2)):
        m = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, groups=channels), nn.Flatten(),
                          nn.Linear(channels * size * size, 3))  # fmt: skip
        x, y = torch.randn(4, channels, size, size), torch.tensor([0, 1, 2, 0])
        s = gnsel.per_sample_grad_sq_norms(m, x, y)
        ref = naive.naive_sq_norms(m, x, y).to(s.dtype)
        assert torch.allclose(s, ref, rtol=1e-4, atol=1e-8)
    assert "ghost" not in tried[0] and "ghost" in tried[1]
