"""Model registry (timm-style) and the built-in gnsel models.

>>> from gnsel.models import create_model, list_models, model_defaults
>>> model = create_model("resnet20", num_classes=10, input_shape=(3, 32, 32), width_mult=0.5)

Every model's classifier head is its last ``nn.Linear`` in ``model.modules()`` order and the
model returns exactly that layer's output (logits of shape (B, num_classes)).
"""

from __future__ import annotations

# Each model module registers its builders in ``registry.MODELS`` when imported; nothing else
# is taken from them here.
from . import cnn as _cnn  # noqa: F401  (registers "cnn1d", "lenet5")
from . import mlp as _mlp  # noqa: F401  (registers "mlp")
from . import mobilenet as _mobilenet  # noqa: F401  (registers "mobilenetv2")
from . import resnet as _resnet  # noqa: F401  (registers "resnet20", "resnet18")
from . import transformer as _transformer  # noqa: F401  (registers "transformer")
from . import vgg as _vgg  # noqa: F401  (registers "vgg11", "vgg16")
from .registry import (
    MODELS,
    check_model_kwarg,
    check_model_kwargs,
    classifier_head,
    create_model,
    list_models,
    model_defaults,
    register_model,
)

__all__ = [
    "MODELS", "register_model", "list_models", "create_model", "model_defaults", "check_model_kwarg",
    "check_model_kwargs", "classifier_head",
]  # fmt: skip
