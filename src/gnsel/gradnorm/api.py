"""Public entry points: per-example squared gradient norms of a batch, and GN over a data set."""

from __future__ import annotations

import copy
import functools
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from .approx import closed_form_applies, fc_closed_form
from .engine import GradNormHooks, check_batch, check_finite, measuring, per_example_losses
from .errors import GradNormError
from .losses import LossFn, resolve_loss
from .scope import Scope, classifier_head, model_memo, resolve_scope, scope_name

T = TypeVar("T")
# How many examples gradient_norm measures per pass: the probe GN of every zoo run, trial and measure
# (results do not depend on it beyond float rounding).
GN_BATCH_SIZE = 256


@dataclass
class GradNorm:
    """GN of a model on data: ``mean_sq`` = mean_i ||grad l_i||^2, and what goes with it."""

    mean_sq: float
    mean_grad_sq: float
    n: int
    seconds: float
    scope: str
    sq_std: float = float("nan")

    @property
    def variance(self) -> float:
        """Gradient variance ``mean_i ||g_i - mean g||^2 = GN - ||mean g||^2``."""
        return self.mean_sq - self.mean_grad_sq

    @property
    def sem(self) -> float:
        """Standard error of ``mean_sq`` over examples."""
        return self.sq_std / math.sqrt(self.n) if self.n > 1 else float("nan")


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _to(x: Tensor | tuple, device: torch.device) -> Tensor | tuple:
    if isinstance(x, (tuple, list)):
        return type(x)(v.to(device).detach() for v in x)
    return x.to(device).detach()


def _head_is_tied(model: nn.Module, head: nn.Module) -> bool:
    own = {id(p) for p in head.parameters(recurse=False)}
    return any(
        m is not head and any(id(p) in own for p in m.parameters(recurse=False)) for m in model.modules()
    )


def _needs_autograd(fn: Callable[..., T]) -> Callable[..., T]:
    """Run ``fn`` with autograd on (also inside ``torch.no_grad()``); refuse inference mode."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> T:
        if torch.is_inference_mode_enabled():
            raise GradNormError("gradient norms need autograd: call gnsel outside torch.inference_mode()")
        with torch.enable_grad():
            return fn(*args, **kwargs)

    return wrapper


@_needs_autograd
def _batch_norms(
    model: nn.Module,
    inputs: Tensor | tuple,
    targets: Tensor,
    loss: str | LossFn,
    scope: Scope,
    want_grad_sum: bool,
) -> tuple[Tensor, dict[str, Tensor] | None]:
    """Per-example squared norms of one batch, and optionally the summed gradient over it."""
    params = resolve_scope(model, scope)
    loss_fn = resolve_loss(loss)
    device = _device_of(model)
    inputs, targets = _to(inputs, device), targets.to(device)
    batch = check_batch(inputs, targets)
    if isinstance(scope, str) and scope == "fc":
        memo = model_memo(model)
        if "head" not in memo:
            head_name, head = classifier_head(model)
            memo["head"] = (head_name, head, _head_is_tied(model, head))
        head_name, head, tied = memo["head"]
        if closed_form_applies(loss, head) and not tied:
            res = fc_closed_form(model, head_name, head, params, inputs, targets, want_grad_sum)
            if res is not None:
                return res.sq, res.grad_sum
    hooks = GradNormHooks(model, params, batch)
    with measuring(model, params), hooks:
        out = model(*inputs) if isinstance(inputs, (tuple, list)) else model(inputs)
        losses = per_example_losses(loss_fn, out, targets, batch, check=False)
        hooks.prepare()
        if not losses.requires_grad:
            check_finite(losses)
            return hooks.sq_norms(), ({n: torch.zeros_like(p) for n, p in params.items()} if want_grad_sum else None)
        wrt = list(params.values()) if want_grad_sum else hooks.anchors()
        grads = torch.autograd.grad(losses.sum(), wrt, allow_unused=True) if wrt else ()
        sq = hooks.sq_norms()
        check_finite(losses)
    grad_sum = None
    if want_grad_sum:
        grad_sum = {n: (g if g is not None else torch.zeros_like(p)) for (n, p), g in zip(params.items(), grads)}
    return sq.detach(), grad_sum


def per_sample_grad_sq_norms(
    model: nn.Module,
    inputs: Tensor | tuple,
    targets: Tensor,
    *,
    loss: str | LossFn = "cross_entropy",
    scope: Scope = "full",
) -> Tensor:
    """``s_i = ||grad_theta l_i||^2`` for each example, exact, in one forward and one backward pass.

    ``loss`` is ``"cross_entropy"``, ``"mse"`` or a callable returning one loss per example;
    ``scope`` is ``"full"`` (all trainable parameters), ``"fc"`` (the classifier head, closed form
    for cross-entropy) or a list of module names. The model is measured in eval mode; its modes,
    parameters and ``.grad`` are left as they were. An empty batch gives an empty tensor, shape ``(0,)``.
    """
    sq, _ = _batch_norms(model, inputs, targets, loss, scope, want_grad_sum=False)
    return sq


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` means CUDA when available, else the CPU; a CUDA device this machine lacks is a GradNormError."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise GradNormError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GradNormError(f"device {device!r}: CUDA is not available on this machine; use 'cpu' or 'auto'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= (n := torch.cuda.device_count()):
        raise GradNormError(f"device {device!r}: this machine has {n} CUDA device(s), cuda:0 to cuda:{n - 1}")
    return dev


def _batches(data: object, batch_size: int) -> Iterator[tuple[object, Tensor]]:
    if isinstance(data, DataLoader):
        for batch in data:
            yield batch[0], batch[1]
        return
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[1], Tensor):
        x, y = data
        n = y.shape[0]
        check_batch(x, y)
        for s in range(0, n, batch_size):
            if isinstance(x, (tuple, list)):
                yield type(x)(v[s : s + batch_size] for v in x), y[s : s + batch_size]
            else:
                yield x[s : s + batch_size], y[s : s + batch_size]
        return
    if isinstance(data, Dataset):
        yield from _batches(DataLoader(data, batch_size=batch_size, shuffle=False), batch_size)
        return
    raise GradNormError(
        f"data must be a DataLoader, a Dataset or an (inputs, targets) pair, got {type(data).__name__}"
    )


def _take(x: object, k: int) -> object:
    return type(x)(v[:k] for v in x) if isinstance(x, (tuple, list)) else x[:k]


def gradient_norm(
    model: nn.Module,
    data: DataLoader | Dataset | tuple,
    *,
    scope: Scope = "full",
    batch_size: int = GN_BATCH_SIZE,
    max_samples: int | None = None,
    device: str | torch.device = "auto",
    loss: str | LossFn = "cross_entropy",
) -> GradNorm:
    """GN of ``model`` on ``data``: the mean per-example squared gradient norm, with the norm of the
    mean gradient and the time taken. A model on another device than ``device`` is measured as a copy.
    Empty batches count for nothing; data with no example at all raises ``GradNormError`` (a mean over no
    examples is undefined, so no NaN result is returned).
    """
    if batch_size < 1:
        raise GradNormError(f"batch_size must be positive, got {batch_size}")
    if max_samples is not None and max_samples < 1:
        raise GradNormError(f"max_samples must be positive or None, got {max_samples}")
    dev = resolve_device(device)
    params_here = resolve_scope(model, scope)  # validate before any work
    if _device_of(model) != dev:
        model = copy.deepcopy(model).to(dev)
    t0 = time.perf_counter()
    total = torch.zeros((), dtype=torch.float64)
    total_sq = torch.zeros((), dtype=torch.float64)
    grad_sum: dict[str, Tensor] | None = None
    n = 0
    for x, y in _batches(data, batch_size):
        if max_samples is not None:
            left = max_samples - n
            if left <= 0:
                break
            if y.shape[0] > left:
                x, y = _take(x, left), y[:left]
        sq, g = _batch_norms(model, x, y, loss, scope, want_grad_sum=True)
        sq64 = sq.to(torch.float64).cpu()
        total += sq64.sum()
        total_sq += sq64.pow(2).sum()
        n += y.shape[0]
        if grad_sum is None:
            grad_sum = {k: v.to(torch.float64) for k, v in g.items()}
        else:
            for k, v in g.items():
                grad_sum[k] += v.to(torch.float64)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    if n == 0:
        raise GradNormError("no examples to measure: the data is empty")
    mean_sq = float(total / n)
    mean_grad_sq = float(sum(((v / n).pow(2).sum() for v in grad_sum.values()), torch.zeros((), dtype=torch.float64)))
    var = max(0.0, float(total_sq / n) - mean_sq**2)
    std = math.sqrt(var * n / (n - 1)) if n > 1 else float("nan")
    del params_here
    return GradNorm(mean_sq, mean_grad_sq, n, seconds, scope_name(scope), std)
