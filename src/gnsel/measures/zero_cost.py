"""Zero-cost proxies (Abdelfattah et al. 2021), following github.com/mohsaied/zero-cost-nas (``foresight``).

All are computed at the given weights on one batch: the first ``zc_batch_size`` (64) probe examples.
As in the reference, each works on a copy of the model in *train* mode (BatchNorm normalises with the
batch statistics; ``bn=True``) except ``synflow`` (``bn=False``: BatchNorm layers become the identity),
and sums a per-weight score over the weights of the Linear and Conv layers (biases excluded):

* ``grad_norm`` = sum_l ||dL/dW_l||_F with L the mean cross-entropy of the batch: the sum of the
  per-layer gradient norms, *not squared* (unlike GN, which is a mean of squared per-example norms);
* ``snip``      = sum_l sum |W_l * dL/dW_l| (Lee et al. 2019; the reference gets it as the gradient of
  a multiplicative mask of ones, which is the same number);
* ``synflow``   = sum_l sum |W_l * dR/dW_l|, R = sum of the outputs of a float64 copy with every
  parameter and buffer replaced by its absolute value, BatchNorm bypassed, on one all-ones input
  (Tanaka et al. 2020);
* ``jacob_cov`` = -sum_i [log(v_i + k) + 1/(v_i + k)], k = 1e-5, v the eigenvalues of the correlation
  matrix of the per-example input Jacobians of the summed outputs (Mellor et al. 2021, v1);
* ``nwot``      = log|det K|, K_ij = sum over ReLU modules of N_A - Hamming(c_i, c_j), c_i the binary
  code ``input > 0`` of example i at that ReLU (Mellor et al. 2021, NASWOT).

Deviations: Conv1d/Conv3d layers count alongside Conv2d (the reference only knows Conv2d and Linear);
dropout is switched off in the copies (determinism); ``jacob_cov`` uses the symmetric eigensolver
``eigvalsh`` (clipping round-off negatives to 0) where the reference calls ``np.linalg.eig``; ``nwot``
accumulates K in float64 and uses the same batch size as the other proxies (NASWOT used 128).
Every proxy is designed so that a *higher* score ranks an architecture as more accurate after training.
"""

from __future__ import annotations

import copy
import types

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ._util import model_of, probe, require_float_inputs, weight_layers
from .registry import MeasureContext, MeasureError, register_measure

ABDELFATTAH = "Abdelfattah, Mehrotra, Dudziak & Lane 2021, Zero-Cost Proxies for Lightweight NAS"
SNIP = f"Lee, Ajanthan & Torr 2019, SNIP: Single-shot Network Pruning based on Connection Sensitivity; {ABDELFATTAH}"
SYNFLOW = (
    "Tanaka, Kunin, Yamins & Ganguli 2020, Pruning neural networks without any data by iteratively conserving "
    f"synaptic flow; {ABDELFATTAH}"
)
MELLOR = "Mellor, Turner, Storkey & Crowley 2021, Neural Architecture Search without Training"
ZC_BATCH_SIZE = 64
JACOB_K = 1e-5
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def _identity_forward(self: nn.Module, x: Tensor) -> Tensor:
    return x


def proxy_copy(model: nn.Module, *, bn: bool = True) -> nn.Module:
    """A train-mode copy of ``model`` (dropout off); with ``bn=False`` its BatchNorm layers pass inputs through."""
    net = copy.deepcopy(model).train()
    for m in net.modules():
        if isinstance(m, _DROPOUT):
            m.eval()
        if not bn and isinstance(m, _BatchNorm):
            m.forward = types.MethodType(_identity_forward, m)
    net.zero_grad(set_to_none=True)
    return net


def _batch(ctx: MeasureContext) -> tuple[Tensor, Tensor]:
    return probe(ctx, int(ctx.option("zc_batch_size", ZC_BATCH_SIZE)))


def _layer_sum(net: nn.Module, score) -> float:
    layers = weight_layers(net)
    if not layers:
        raise MeasureError("the model has no Linear or Conv layer")
    total = torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for _, layer in layers:
            if layer.weight.grad is not None:
                total += score(layer).double().cpu()
    return float(total)


def grad_norm_proxy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """sum_l ||dL/dW_l||_F, L = mean cross-entropy of ``(x, y)``, on a train-mode copy of ``model``."""
    net = proxy_copy(model, bn=True)
    F.cross_entropy(net(x), y).backward()
    return _layer_sum(net, lambda layer: layer.weight.grad.norm())


def snip_proxy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """sum_l sum |W_l * dL/dW_l| on a train-mode copy of ``model``."""
    net = proxy_copy(model, bn=True)
    F.cross_entropy(net(x), y).backward()
    return _layer_sum(net, lambda layer: (layer.weight * layer.weight.grad).abs().sum())


def synflow_proxy(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """sum_l sum |W_l * dR/dW_l|, R = sum f_{|theta|}(1) in float64 with BatchNorm bypassed."""
    net = proxy_copy(model, bn=False).double()
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    dev = next(net.parameters()).device
    net(torch.ones((1, *input_shape), dtype=torch.float64, device=dev)).sum().backward()
    return _layer_sum(net, lambda layer: (layer.weight * layer.weight.grad).abs().sum())


def jacob_cov_score(jacobians: np.ndarray, k: float = JACOB_K) -> float:
    """-sum_i [log(v_i + k) + 1/(v_i + k)] over the eigenvalues v of ``corrcoef(jacobians)`` (rows = examples)."""
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant row: NaN, reported just below
        corr = np.corrcoef(jacobians)
    if not np.all(np.isfinite(corr)):
        raise MeasureError("jacob_cov: an input Jacobian is constant, so its correlation is undefined")
    v = np.clip(np.linalg.eigvalsh(corr), 0.0, None)
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


def jacob_cov_proxy(model: nn.Module, x: Tensor) -> float:
    """jacob_cov of the per-example input Jacobians of the summed outputs, train-mode copy of ``model``."""
    net = proxy_copy(model, bn=True)
    xg = x.detach().clone().requires_grad_(True)
    out = net(xg)
    out.backward(torch.ones_like(out))
    return jacob_cov_score(xg.grad.detach().reshape(len(x), -1).double().cpu().numpy())


def _is_relu(m: nn.Module) -> bool:
    return "ReLU" in type(m).__name__  # the reference's test: ReLU, ReLU6, LeakyReLU, ...


@torch.no_grad()
def nwot_kernel(model: nn.Module, x: Tensor) -> np.ndarray:
    """K_ij = sum over ReLU modules of (N_A - Hamming distance) of the codes ``input > 0`` (float64)."""
    net = proxy_copy(model, bn=True)
    relus = [m for m in net.modules() if _is_relu(m)]
    if not relus:
        raise MeasureError("nwot needs nn.ReLU modules to hook (activations inside forward cannot be seen)")
    kernel = torch.zeros((len(x), len(x)), dtype=torch.float64)

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        code = (inputs[0].reshape(len(x), -1) > 0).double().cpu()
        kernel.add_(code @ code.T + (1.0 - code) @ (1.0 - code).T)

    handles = [m.register_forward_hook(hook) for m in relus]
    try:
        net(x)
    finally:
        for h in handles:
            h.remove()
    return kernel.numpy()


def nwot_proxy(model: nn.Module, x: Tensor) -> float:
    """log det K of :func:`nwot_kernel`; a singular K is a :class:`MeasureError` (the reference returns
    ``slogdet``'s log|det| whatever its sign: ``-inf``, or a meaningless number when round-off flips it)."""
    sign, logdet = np.linalg.slogdet(nwot_kernel(model, x))
    if sign <= 0 or not np.isfinite(logdet):  # K is positive semi-definite: sign -1 is round-off of det 0
        raise MeasureError(
            "nwot: the activation-pattern kernel is singular (e.g. two examples share their binary code at "
            "every ReLU), log det = -inf"
        )
    return float(logdet)


@register_measure(
    "grad_norm", citation=ABDELFATTAH, needs={"weights", "data"}, higher_means="lower test error", family="zero_cost"
)
def grad_norm(ctx: MeasureContext) -> float:
    """Sum over Linear/Conv layers of ||dL/dW||_F (not squared) for the mean loss of one batch."""
    x, y = _batch(ctx)
    return grad_norm_proxy(model_of(ctx), x, y)


@register_measure("snip", citation=SNIP, needs={"weights", "data"}, higher_means="lower test error", family="zero_cost")
def snip(ctx: MeasureContext) -> float:
    """SNIP saliency sum |W * dL/dW| over Linear/Conv weights on one batch."""
    x, y = _batch(ctx)
    return snip_proxy(model_of(ctx), x, y)


@register_measure(
    "synflow", citation=SYNFLOW, needs={"weights", "data"}, higher_means="lower test error", family="zero_cost"
)
def synflow(ctx: MeasureContext) -> float:
    """SynFlow sum |W * dR/dW|, R the output sum of the |theta| network on an all-ones input (data gives the shape)."""
    x, _ = probe(ctx, 1)
    require_float_inputs(x, "synflow")
    return synflow_proxy(model_of(ctx), tuple(x.shape[1:]))


@register_measure(
    "jacob_cov", citation=f"{MELLOR} (v1); {ABDELFATTAH}", needs={"weights", "data"},
    higher_means="lower test error", family="zero_cost",
)  # fmt: skip
def jacob_cov(ctx: MeasureContext) -> float:
    """Jacobian-covariance score of the input Jacobians on one batch."""
    x, _ = _batch(ctx)
    require_float_inputs(x, "jacob_cov")
    return jacob_cov_proxy(model_of(ctx), x)


@register_measure(
    "nwot", citation=f"{MELLOR}; {ABDELFATTAH}", needs={"weights", "data"},
    higher_means="lower test error", family="zero_cost",
)  # fmt: skip
def nwot(ctx: MeasureContext) -> float:
    """NASWOT: log-determinant of the ReLU activation-pattern kernel of one batch."""
    x, _ = _batch(ctx)
    return nwot_proxy(model_of(ctx), x)
