"""The PGDL 2020 winning measure (Natekar & Sharma 2020): Davies-Bouldin index x (1 - label-wise mixup accuracy).

``db_mixup`` = DB(early features) * (1 - mixup accuracy), higher meaning a larger generalization gap:

* **early features**: the output of the first hidden layer on the probe training data -- the first
  Linear/Conv layer to run in the forward pass, taken after its nonlinearity (the first activation
  module to run after it; the layer's own output if none runs), because the Keras layers of the PGDL
  models carry their activation. Conv feature maps are max-pooled with a window of 4 (as in the
  authors' ``complexityDB``), then flattened.
* **DB**: the Davies-Bouldin index with the classes as clusters: S_k the mean Euclidean distance of the
  class-k features to their centroid c_k, R_kj = (S_k + S_j) / ||c_k - c_j||, DB = mean_k max_{j != k}
  R_kj (Davies & Bouldin 1979, as in scikit-learn). Option ``db_reduce="mean"`` gives the authors'
  code's variant, mean_k (1/K) sum_{j != k} R_kj.
* **label-wise mixup accuracy**: for each class, the midpoints (x_i + x_j) / 2 of all pairs among its
  first ``mixup_per_class`` (10) probe examples are classified (eval mode); the accuracy is the mean over
  classes of the fraction predicted as that class (the authors' ``complexityMixup`` with alpha = 0.5).

Deviations: no data augmentation (the authors augment images before both parts; gnsel's data sets are
not all images); the features come from the probe set in one pass rather than from averaged batches of
150; the mixup part is scored by accuracy (the default of the authors' ``veracityRatio``), whereas
their final ``complexityMixup`` passes ``version_loss='log'``, i.e. the mixup cross-entropy.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._util import WEIGHT_LAYERS, eval_mode, logits, model_of, probe, require_float_inputs
from .registry import MeasureContext, MeasureError, register_measure

NATEKAR = (
    "Natekar & Sharma 2020, Representation Based Complexity Measures for Predicting Generalization in Deep "
    "Learning; Davies & Bouldin 1979, A Cluster Separation Measure"
)
POOL = 4
MIXUP_PER_CLASS = 10


def davies_bouldin(features: np.ndarray | Tensor, labels: np.ndarray | Tensor, reduce: str = "max") -> float:
    """Davies-Bouldin index of ``features`` (N, D) clustered by ``labels``; ``reduce`` "max" or "mean"."""
    X = np.asarray(features.detach().cpu() if isinstance(features, Tensor) else features, dtype=np.float64)
    y = np.asarray(labels.detach().cpu() if isinstance(labels, Tensor) else labels)
    X = X.reshape(len(X), -1)
    classes = np.unique(y)
    if len(classes) < 2:
        raise MeasureError("the Davies-Bouldin index needs examples of at least 2 classes")
    centroids = np.stack([X[y == c].mean(0) for c in classes])
    spread = np.array([np.linalg.norm(X[y == c] - centroids[k], axis=1).mean() for k, c in enumerate(classes)])
    dist = np.linalg.norm(centroids[:, None, :] - centroids[None, :, :], axis=2)
    off = ~np.eye(len(classes), dtype=bool)
    if np.any(dist[off] == 0):
        raise MeasureError("two class centroids coincide: the Davies-Bouldin index is infinite")
    ratio = np.zeros_like(dist)
    ratio[off] = (spread[:, None] + spread[None, :])[off] / dist[off]
    if reduce == "max":
        return float(ratio.max(1).mean())
    if reduce == "mean":
        return float(ratio.mean(1).mean())
    raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")


@torch.no_grad()
def early_features(model: nn.Module, x: Tensor, pool: int = POOL) -> Tensor:
    """Flattened output of the first hidden layer (after its activation), conv maps max-pooled by ``pool``."""
    order: list[tuple[nn.Module, Tensor]] = []

    def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if isinstance(output, Tensor):
            order.append((module, output))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with eval_mode(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    first = next((i for i, (m, _) in enumerate(order) if isinstance(m, WEIGHT_LAYERS)), None)
    if first is None:
        raise MeasureError("no Linear/Conv layer ran in the forward pass")
    feats = order[first][1]
    for m, out in order[first + 1 :]:
        if isinstance(m, WEIGHT_LAYERS):
            break
        if type(m).__module__ == "torch.nn.modules.activation":
            feats = out
            break
    if feats.dim() == 3 and feats.shape[-1] >= 2:  # (B, C, L)
        feats = F.max_pool1d(feats, min(pool, feats.shape[-1]))
    elif feats.dim() == 4 and min(feats.shape[-2:]) >= 2:  # (B, C, H, W)
        feats = F.max_pool2d(feats, min(pool, *feats.shape[-2:]))
    return feats.reshape(len(x), -1)


@torch.no_grad()
def labelwise_mixup_accuracy(model: nn.Module, x: Tensor, y: Tensor, per_class: int = MIXUP_PER_CLASS) -> float:
    """Mean over classes of the accuracy on midpoints of same-class pairs (first ``per_class`` of each class)."""
    require_float_inputs(x, "label-wise mixup")
    accs = []
    for c in torch.unique(y).tolist():
        xc = x[y == c][:per_class]
        if len(xc) < 2:
            continue
        i, j = torch.triu_indices(len(xc), len(xc), offset=1, device=x.device)
        mixed = 0.5 * (xc[i] + xc[j])
        accs.append(float((logits(model, mixed).argmax(1) == c).double().mean()))
    if not accs:
        raise MeasureError("label-wise mixup needs a class with at least 2 probe examples")
    return float(np.mean(accs))


@register_measure(
    "db_mixup", citation=NATEKAR, needs={"weights", "data"}, higher_means="larger gap", family="representation"
)
def db_mixup(ctx: MeasureContext) -> float:
    """Davies-Bouldin index of first-hidden-layer features x (1 - label-wise mixup accuracy)."""
    model = model_of(ctx)
    x, y = probe(ctx)
    require_float_inputs(x, "db_mixup")
    db = davies_bouldin(early_features(model, x), y, reduce=str(ctx.option("db_reduce", "max")))
    acc = labelwise_mixup_accuracy(model, x, y, int(ctx.option("mixup_per_class", MIXUP_PER_CLASS)))
    value = db * (1.0 - acc)
    if not math.isfinite(value):
        raise MeasureError(f"non-finite Davies-Bouldin index {db}")
    return value
