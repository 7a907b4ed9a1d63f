"""Empty batches in the gradient-norm engine: every layer rule, the ``torch.func`` fallback, the scopes,
``GradNormCollector`` and ``gradient_norm``.

The convention (as Opacus' ``_norm_sample`` of an empty batch): a batch of 0 examples gives per-example
squared norms of shape ``(0,)``, in the parameters' dtype, instead of a reshape error. ``gradient_norm`` over
data without a single example raises a one-line ``GradNormError`` (a mean over no examples is undefined), and
empty batches among others change nothing. Batch 1 is checked against the naive reference as a sanity check.
"""

from __future__ import annotations

import os
import sys
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import naive  # noqa: E402

from gnsel.gradnorm import GradNormCollector, GradNormError, find_rule, gradient_norm, per_sample_grad_sq_norms  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

K = 3  # classes


class Head(nn.Module):
    """``body`` then a Linear classifier on the flattened (or position-averaged) features."""

    def __init__(self, body: nn.Module, features: int, pool: bool = False):
        super().__init__()
        self.body, self.pool, self.head = body, pool, nn.Linear(features, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        if isinstance(h, tuple):  # MultiheadAttention
            h = h[0]
        return self.head(h.mean(1) if self.pool else h.flatten(1))


class SelfAttention(nn.Module):
    def __init__(self, batch_first: bool):
        super().__init__()
        self.batch_first = batch_first
        self.attn = nn.MultiheadAttention(4, 2, batch_first=batch_first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.batch_first:
            x = x.transpose(0, 1)
        out = self.attn(x, x, x, need_weights=False)[0]
        return out if self.batch_first else out.transpose(0, 1)


class Bilinear(nn.Module):
    """A layer without a rule: measured exactly through the ``torch.func`` fallback."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 4) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.w) * x


def _bn(layer: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    layer.running_mean.uniform_(-0.5, 0.5)
    layer.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-0.5, 0.5)
    return layer


def _tokens(b: int) -> torch.Tensor:
    return torch.randint(0, 10, (b, 6))


# name: (model factory, input factory for a batch of b)
CASES = {
    "linear_2d": (lambda: Head(nn.Linear(4, 5), 5), lambda b: torch.randn(b, 4)),
    "linear_3d": (lambda: Head(nn.Linear(4, 5), 5, pool=True), lambda b: torch.randn(b, 6, 4)),
    "linear_4d": (lambda: Head(nn.Linear(4, 5), 3 * 2 * 5), lambda b: torch.randn(b, 3, 2, 4)),
    "conv1d_dilated": (lambda: Head(nn.Conv1d(2, 4, 3, dilation=2, padding=1), 4 * 6), lambda b: torch.randn(b, 2, 8)),
    "conv2d_groups": (lambda: Head(nn.Conv2d(4, 4, 3, groups=2, stride=2), 4 * 2 * 2), lambda b: torch.randn(b, 4, 5, 5)),
    "conv2d_depthwise_dilated": (lambda: Head(nn.Conv2d(2, 2, 2, groups=2, dilation=2), 2 * 3 * 3), lambda b: torch.randn(b, 2, 5, 5)),
    "conv3d": (lambda: Head(nn.Conv3d(2, 2, 2, groups=2), 2 * 8), lambda b: torch.randn(b, 2, 3, 3, 3)),
    "batchnorm1d_2d": (lambda: Head(_bn(nn.BatchNorm1d(4)), 4), lambda b: torch.randn(b, 4)),
    "batchnorm1d_3d": (lambda: Head(_bn(nn.BatchNorm1d(2)), 2 * 5), lambda b: torch.randn(b, 2, 5)),
    "batchnorm2d": (lambda: Head(_bn(nn.BatchNorm2d(2)), 2 * 9), lambda b: torch.randn(b, 2, 3, 3)),
    "batchnorm3d": (lambda: Head(_bn(nn.BatchNorm3d(2)), 2 * 8), lambda b: torch.randn(b, 2, 2, 2, 2)),
    "layernorm": (lambda: Head(nn.LayerNorm(4), 5 * 4), lambda b: torch.randn(b, 5, 4)),
    "groupnorm": (lambda: Head(nn.GroupNorm(2, 4), 4 * 9), lambda b: torch.randn(b, 4, 3, 3)),
    "rmsnorm": (lambda: Head(nn.RMSNorm(4), 4), lambda b: torch.randn(b, 4)),
    "embedding": (lambda: Head(nn.Embedding(10, 4, padding_idx=0), 4, pool=True), _tokens),
    "mha_batch_first": (lambda: Head(SelfAttention(True), 4, pool=True), lambda b: torch.randn(b, 5, 4)),
    "mha_seq_first": (lambda: Head(SelfAttention(False), 4, pool=True), lambda b: torch.randn(b, 5, 4)),
    "fallback": (lambda: Head(Bilinear(), 4), lambda b: torch.randn(b, 4)),
}


def _case(name: str, b: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    make_model, make_x = CASES[name]
    return make_model(), make_x(b), torch.randint(0, K, (b,))


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fallback warns that it is slower
        return fn(*args, **kwargs)


@pytest.mark.parametrize("scope", ["full", "fc", "body"])
@pytest.mark.parametrize("name", list(CASES))
def test_empty_batch_gives_empty_norms(name: str, scope: str) -> None:
    model, x, y = _case(name, 0)
    sq = _quiet(per_sample_grad_sq_norms, model, x, y, scope=[scope] if scope == "body" else scope)
    assert sq.shape == (0,) and sq.dtype == torch.float32


@pytest.mark.parametrize("name", list(CASES))
def test_batch_of_one_matches_the_naive_reference(name: str) -> None:
    model, x, y = _case(name, 1)
    for scope in ("full", ["body"]):
        sq = _quiet(per_sample_grad_sq_norms, model, x, y, scope=scope)
        ref = naive.naive_sq_norms(model, x, y, scope=scope)
        assert sq.shape == (1,)
        torch.testing.assert_close(sq.double(), ref, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", list(CASES))
def test_collector_on_an_empty_batch(name: str) -> None:
    model, _, _ = _case(name, 0)
    collector = GradNormCollector(model, batch_stats="constant")  # train mode: BN on batch statistics
    try:
        for b in (0, 2, 0):  # an empty batch, then a full one through the same hooks, then empty again
            x, y = CASES[name][1](b), torch.randint(0, K, (b,))
            with collector.batch(b):
                loss = F.cross_entropy(model(x), y, reduction="sum")
                sq = _quiet(collector.backward, loss, reduction="sum")
            assert sq.shape == (b,) and torch.isfinite(sq).all()
            model.zero_grad(set_to_none=True)
    finally:
        collector.close()


def _rule_inputs(module: nn.Module, x: torch.Tensor) -> tuple[tuple, torch.Tensor, dict]:
    """The input a rule sees and the gradient of the output (ones), by running ``module`` on ``x``."""
    if isinstance(module, nn.MultiheadAttention):
        kwargs = {"need_weights": False}
        out = module(x, x, x, **kwargs)[0]
        return (x, x, x), torch.ones_like(out), kwargs
    return (x,), torch.ones_like(module(x)), {}


RULE_LAYERS = {
    "Linear 2-D": (lambda: nn.Linear(4, 3), (4,)),
    "Linear 4-D": (lambda: nn.Linear(4, 3), (2, 5, 4)),
    "Conv1d": (lambda: nn.Conv1d(2, 4, 3, dilation=2), (2, 9)),
    "Conv2d groups": (lambda: nn.Conv2d(4, 6, 3, groups=2, padding=1), (4, 5, 5)),
    "Conv3d": (lambda: nn.Conv3d(2, 2, 2, dilation=(1, 2, 1)), (2, 3, 4, 3)),
    "BatchNorm1d": (lambda: nn.BatchNorm1d(3).eval(), (3,)),
    "BatchNorm2d": (lambda: nn.BatchNorm2d(3).eval(), (3, 4, 4)),
    "BatchNorm3d": (lambda: nn.BatchNorm3d(3).eval(), (3, 2, 2, 2)),
    "LayerNorm": (lambda: nn.LayerNorm((2, 4)), (5, 2, 4)),
    "GroupNorm": (lambda: nn.GroupNorm(2, 4), (4, 3)),
    "RMSNorm": (lambda: nn.RMSNorm(4), (6, 4)),
    "Embedding 2-D": (lambda: nn.Embedding(10, 4), None),
    "Embedding 1-D": (lambda: nn.Embedding(10, 4), ()),
    "MultiheadAttention": (lambda: nn.MultiheadAttention(4, 2, batch_first=True), (5, 4)),
}


@pytest.mark.parametrize("name", list(RULE_LAYERS))
def test_every_rule_on_an_empty_batch(name: str) -> None:
    """Each registered rule, called directly, turns an empty batch into squared norms of shape (0,)."""
    make, shape = RULE_LAYERS[name]
    module = make()
    if name.startswith("Embedding"):
        x = torch.randint(0, 10, (0, 6) if shape is None else (0,))
    else:
        x = torch.randn(0, *shape)
    args, grad, kwargs = _rule_inputs(module, x)
    rule = find_rule(module)
    assert rule is not None, f"no rule registered for {type(module).__name__}"
    names = [n for n, _ in module.named_parameters()]
    with torch.no_grad():
        contribs = rule(module, args, grad, names, kwargs) if kwargs else rule(module, args, grad, names)
    assert contribs, "the rule measured nothing"
    for n, c in contribs.items():
        sq = c.sq_norms()
        assert sq.shape == (0,), (n, sq.shape)
        assert c.dense().shape[0] == 0


def _loader(sizes: list[int]) -> DataLoader:
    """Batches of the given sizes, empty ones included, over the same 8 examples."""
    torch.manual_seed(1)
    x, y = torch.randn(8, 4), torch.randint(0, K, (8,))
    batches, start = [], 0
    for s in sizes:
        batches.append((x[start : start + s], y[start : start + s]))
        start += s
    return DataLoader(batches, batch_size=None)


def test_gradient_norm_ignores_empty_batches() -> None:
    torch.manual_seed(0)
    model = Head(nn.Linear(4, 5), 5)
    with_empty = gradient_norm(model, _loader([3, 0, 5, 0]), device="cpu")
    without = gradient_norm(model, _loader([3, 5]), device="cpu")
    assert with_empty.n == without.n == 8
    assert with_empty.mean_sq == pytest.approx(without.mean_sq, rel=1e-12)
    assert with_empty.mean_grad_sq == pytest.approx(without.mean_grad_sq, rel=1e-12)


@pytest.mark.parametrize("data", ["empty_batches", "empty_pair", "no_batches"])
def test_gradient_norm_without_examples_raises_one_line(data: str) -> None:
    torch.manual_seed(0)
    model = Head(nn.Linear(4, 5), 5)
    source = {
        "empty_batches": _loader([0, 0]),
        "empty_pair": (torch.randn(0, 4), torch.zeros(0, dtype=torch.long)),
        "no_batches": DataLoader(TensorDataset(torch.randn(0, 4), torch.zeros(0, dtype=torch.long)), batch_size=4),
    }[data]
    with pytest.raises(GradNormError, match="no examples to measure") as err:
        gradient_norm(model, source, device="cpu")
    assert "\n" not in str(err.value)
