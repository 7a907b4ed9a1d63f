"""PAC-Bayesian flatness (Jiang et al. 2020, #53 "pacbayes.flatness" and #61 "pacbayes.mag.flatness").

``pacbayes_flatness`` = 1 / sigma'^2, sigma' the largest standard deviation of isotropic Gaussian noise
``u ~ N(0, sigma'^2 I)`` on all trainable parameters such that the expected training accuracy drops by
at most ``target_drop`` (default 0.1):  acc(w) - E_u[acc(w + u)] <= target_drop.

``pacbayes_mag_flatness`` = 1 / alpha'^2 with magnitude-aware noise, ``u_i ~ N(0, alpha'^2 w_i^2 +
eps^2)`` (eps = 1e-3), i.e. standard deviation ``sqrt(alpha'^2 w_i^2 + eps^2)`` per parameter.

A sharper minimum tolerates less noise, so both measures grow with sharpness. The search:

* accuracy is measured in eval mode on the probe training data (``ctx.train_data``);
* the expectation is a Monte-Carlo mean over ``flatness_mc_samples`` (5) noise draws ``u = std * z_k``
  with the *same* standard-normal draws ``z_k`` for every candidate sigma (common random numbers,
  generated on the CPU from ``ctx.seed``), so the estimated drop is a smooth, deterministic function
  of sigma and the search is reproducible on any device;
* sigma is bracketed from ``flatness_sigma0`` (0.1) by factors of 4, then bisected geometrically
  ``flatness_iterations`` (10) times; the largest sigma that met the target is returned (its relative
  precision is 4^(1/1024), about 0.14%).

Deviations from the reference implementation (Dziugaite et al. 2020, adapted from Jiang et al.'s code):
that code passes the *variance* (sigma^2, or sigma^2 w^2 + eps^2) where ``torch.normal`` expects a
standard deviation, bisects linearly on [0, 2] with a tolerance stop and fresh noise per step, and
folds BatchNorm into the convolutions first; here standard deviations are used as defined, the search
is geometric and unbounded above, and the parameters are perturbed as they are (BatchNorm affine
parameters included, running statistics not).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from ._util import accuracy, model_of, probe
from .registry import MeasureContext, MeasureError, register_measure

JIANG = "Jiang, Neyshabur, Mobahi, Krishnan & Bengio 2020, Fantastic Generalization Measures and Where to Find Them"
MAG_EPS = 1e-3
_SEED_OFFSET = 10348628753  # keeps these draws apart from other uses of ctx.seed


class _Perturber:
    """Evaluates the mean accuracy of ``model`` under noise ``std(sigma) * z_k``, k < samples."""

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, *, samples: int, seed: int, magnitude_eps: float | None):
        self.model = copy.deepcopy(model).eval()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if not self.params:
            raise MeasureError("the model has no trainable parameters to perturb")
        self.base = [p.detach().clone() for p in self.params]
        self.x, self.y = x, y
        self.samples, self.seed, self.eps = samples, seed, magnitude_eps
        self.acc0 = accuracy(self.model, x, y)
        self.evaluations = 0

    @torch.no_grad()
    def mean_accuracy(self, sigma: float) -> float:
        accs = []
        for k in range(self.samples):
            gen = torch.Generator().manual_seed(_SEED_OFFSET + 1000 * int(self.seed) + k)
            for p, w in zip(self.params, self.base):
                z = torch.randn(w.shape, generator=gen, dtype=torch.float64).to(device=w.device, dtype=w.dtype)
                std = sigma if self.eps is None else torch.sqrt(sigma**2 * w.pow(2) + self.eps**2)
                p.copy_(w + std * z)
            accs.append(accuracy(self.model, self.x, self.y))
        for p, w in zip(self.params, self.base):
            p.copy_(w)
        self.evaluations += 1
        return sum(accs) / len(accs)

    def drop(self, sigma: float) -> float:
        return self.acc0 - self.mean_accuracy(sigma)


def pacbayes_sigma(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    magnitude_eps: float | None = None,
    target_drop: float = 0.1,
    mc_samples: int = 5,
    iterations: int = 10,
    sigma0: float = 0.1,
    seed: int = 0,
    max_bracket_steps: int = 20,
) -> float:
    """The largest noise scale sigma whose expected accuracy drop on ``(x, y)`` is at most ``target_drop``.

    Isotropic noise has standard deviation sigma; with ``magnitude_eps`` it is ``sqrt(sigma^2 w^2 +
    eps^2)`` per parameter. See the module docstring for the search. ``model`` is not modified.
    """
    if not 0 < target_drop < 1:
        raise ValueError(f"target_drop must be in (0, 1), got {target_drop}")
    if mc_samples < 1 or iterations < 0 or not sigma0 > 0:
        raise ValueError("mc_samples must be >= 1, iterations >= 0 and sigma0 > 0")
    pert = _Perturber(model, x, y, samples=mc_samples, seed=seed, magnitude_eps=magnitude_eps)
    if pert.acc0 <= target_drop:
        raise MeasureError(
            f"the training accuracy {pert.acc0:.3f} cannot drop by {target_drop}: flatness is undefined"
        )
    lo, hi = 0.0, sigma0
    if pert.drop(hi) <= target_drop:  # expand upwards
        for _ in range(max_bracket_steps):
            lo, hi = hi, hi * 4.0
            if pert.drop(hi) > target_drop:
                break
        else:
            raise MeasureError(f"the accuracy never dropped by {target_drop} up to noise scale {hi:.3g}")
    else:  # shrink downwards
        for _ in range(max_bracket_steps):
            lo = hi / 4.0
            if pert.drop(lo) <= target_drop:
                break
            hi = lo
        else:
            raise MeasureError(f"the accuracy drops by more than {target_drop} even at noise scale {lo:.3g}")
    for _ in range(iterations):
        mid = math.sqrt(lo * hi)
        if pert.drop(mid) > target_drop:
            hi = mid
        else:
            lo = mid
    return lo


def _sigma(ctx: MeasureContext, magnitude_eps: float | None) -> float:
    x, y = probe(ctx)
    return pacbayes_sigma(
        model_of(ctx), x, y, magnitude_eps=magnitude_eps,
        target_drop=float(ctx.option("target_drop", 0.1)),
        mc_samples=int(ctx.option("flatness_mc_samples", 5)),
        iterations=int(ctx.option("flatness_iterations", 10)),
        sigma0=float(ctx.option("flatness_sigma0", 0.1)),
        seed=ctx.seed,
    )  # fmt: skip


@register_measure(
    "pacbayes_flatness", citation=JIANG, needs={"weights", "data"}, higher_means="larger gap", family="flatness"
)
def pacbayes_flatness(ctx: MeasureContext) -> float:
    """1/sigma^2, sigma the largest isotropic noise std keeping the train-accuracy drop <= target_drop."""
    return 1.0 / _sigma(ctx, None) ** 2


@register_measure(
    "pacbayes_mag_flatness", citation=JIANG, needs={"weights", "data"}, higher_means="larger gap", family="flatness"
)
def pacbayes_mag_flatness(ctx: MeasureContext) -> float:
    """1/alpha^2 for magnitude-aware noise of std sqrt(alpha^2 w^2 + 1e-6) keeping the drop <= target_drop."""
    return 1.0 / _sigma(ctx, float(ctx.option("mag_eps", MAG_EPS))) ** 2
