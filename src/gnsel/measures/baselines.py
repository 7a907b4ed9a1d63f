"""Baselines: the stored validation/training metrics, the parameter count and a seeded random number.

* ``val_loss``, ``train_loss``: mean cross-entropy on the full validation / training split, as stored
  in ``ctx.row``; ``val_error`` = 1 - ``val_acc``. These are the usual yardsticks of model selection
  (a held-out split predicts test error directly).
* ``train_error`` = 1 - ``train_acc``: how far training got, the confound of every gap (a measure that
  ranks the gap no better than the training loss or error says nothing beyond "this model trained less").
* ``budget`` = ``sum_t lr_t^2 / n`` (``lr^2 * steps / n`` for a constant learning rate): the training
  budget of trajectory GN with every gradient norm set to 1, a number computed from the hyper-parameters
  alone; trajectory GN must beat it to say anything about the gradients.
* ``num_params``: the number of trainable parameters (tied ones once) -- the VC-dimension-style
  measure #20 "params" of Jiang et al. (2020).
* ``random``: a number in [0, 1) determined by ``ctx.seed`` and the run (the canonical JSON of
  ``ctx.config``): a control whose correlation with anything is chance.
"""

from __future__ import annotations

import hashlib
import math

from ..keys import canonical_json
from ._util import model_of, per_n, row_column, trainable_params
from .registry import MeasureContext, MissingNeedError, register_measure

JIANG = "Jiang, Neyshabur, Mobahi, Krishnan & Bengio 2020, Fantastic Generalization Measures and Where to Find Them"
LI = "Li, Luo & Qiao 2020, On Generalization Error Bounds of Noisy Gradient Methods for Non-Convex Learning"
HOLDOUT = (
    "Hastie, Tibshirani & Friedman 2009, The Elements of Statistical Learning (ch. 7, Model Assessment and Selection)"
)


def _row_value(ctx: MeasureContext, key: str) -> float:
    if key not in ctx.row or ctx.row[key] is None:
        raise MissingNeedError(f"ctx.row has no {key!r}")
    value = float(ctx.row[key])
    if not math.isfinite(value):
        raise MissingNeedError(f"ctx.row[{key!r}] is not finite ({value})")
    return value


@register_measure(
    "val_loss", citation=HOLDOUT, needs={"metrics"}, higher_means="higher test error", family="baseline",
    recorded_as=lambda rows: rows["val_loss"],
)  # fmt: skip
def val_loss(ctx: MeasureContext) -> float:
    """Validation cross-entropy stored for this epoch."""
    return _row_value(ctx, "val_loss")


@register_measure(
    "val_error", citation=HOLDOUT, needs={"metrics"}, higher_means="higher test error", family="baseline",
    recorded_as=lambda rows: 1.0 - rows["val_acc"],
)  # fmt: skip
def val_error(ctx: MeasureContext) -> float:
    """Validation error 1 - val_acc stored for this epoch."""
    return 1.0 - _row_value(ctx, "val_acc")


@register_measure(
    "train_loss", citation=HOLDOUT, needs={"metrics"}, higher_means="higher test error", family="baseline",
    recorded_as=lambda rows: rows["train_loss"],
)  # fmt: skip
def train_loss(ctx: MeasureContext) -> float:
    """Training cross-entropy (full training split) stored for this epoch."""
    return _row_value(ctx, "train_loss")


@register_measure(
    "train_error", citation=HOLDOUT, needs={"metrics"}, higher_means="higher test error", family="baseline",
    recorded_as=lambda rows: 1.0 - rows["train_acc"],
)  # fmt: skip
def train_error(ctx: MeasureContext) -> float:
    """Training error 1 - train_acc (full training split) stored for this epoch."""
    return 1.0 - _row_value(ctx, "train_acc")


@register_measure(
    "budget", citation=f"{LI}; the hyper-parameter-only part of its trajectory sum", needs={"metrics"},
    higher_means="larger gap", family="baseline",
    recorded_as=lambda rows: per_n(rows, row_column(rows, "lr_sq_sum")),
)  # fmt: skip
def budget(ctx: MeasureContext) -> float:
    """Training budget sum_t lr_t^2 / n (lr^2 * steps / n at a constant lr), from the stored row."""
    return _row_value(ctx, "lr_sq_sum") / _row_value(ctx, "n_train")


@register_measure("num_params", citation=JIANG, needs={"weights"}, higher_means="larger gap", family="baseline")
def num_params(ctx: MeasureContext) -> float:
    """Number of trainable parameters (Jiang et al. #20)."""
    return float(sum(p.numel() for p in trainable_params(model_of(ctx)).values()))


def random_value(seed: int, config: dict) -> float:
    """A uniform number in [0, 1) determined by ``seed`` and the canonical JSON of ``config``."""
    text = f"gnsel.measures.random:{int(seed)}:{canonical_json(config) if config else ''}"
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@register_measure(
    "random",
    citation="none, a chance-level control of gnsel (no external source)",
    needs=set(), higher_means="nothing", family="baseline",
)  # fmt: skip
def random(ctx: MeasureContext) -> float:
    """A seeded uniform random number in [0, 1) per (ctx.seed, run config): a chance-level control."""
    return random_value(ctx.seed, ctx.config)
