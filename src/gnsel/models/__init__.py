"""Model registry (timm-style) and the built-in gnsel models.

>>> from gnsel.models import create_model, list_models, model_defaults
>>> model = create_model("resnet20", num_classes=10, input_shape=(3, 32, 32), width_mult=0.5)

Every model's classifier head is its last ``nn.Linear`` in ``model.modules()`` order and the
model returns exactly that layer's output (logits of shape (B, num_classes)).
"""

from __future__ import annotations

# Importing the model modules registers their builders.
from . import cnn, mlp, mobilenet, resnet, transformer, vgg  # noqa: F401
from .registry import (
    classifier_head,
    create_model,
    list_models,
    model_defaults,
    register_model,
)

__all__ = [
    "register_model",
    "list_models",
    "create_model",
    "model_defaults",
    "classifier_head",
]
