"""Per-layer rules: the registry (``registry``) and one module per family of layers.

Importing this package registers the built-in rules, in this order: Linear, Conv1d/2d/3d,
BatchNorm1d/2d/3d, LayerNorm, GroupNorm, RMSNorm, Embedding, MultiheadAttention.
"""

# Registration order is the listing order of ``registered_types()``: keep these in this order.
from . import linear  # noqa: F401  (registers nn.Linear)
from . import conv  # noqa: F401  (registers nn.Conv1d/2d/3d)
from . import norm  # noqa: F401  (registers BatchNorm1d/2d/3d, LayerNorm, GroupNorm, RMSNorm)
from . import embedding  # noqa: F401  (registers nn.Embedding)
from . import attention  # noqa: F401  (registers nn.MultiheadAttention)
from .norm import batch_statistics
from .registry import RULES, LayerRule, Rule, find_rule, lookup_rule, register_rule, registered_types

__all__ = [
    "RULES",
    "LayerRule",
    "Rule",
    "batch_statistics",
    "find_rule",
    "lookup_rule",
    "register_rule",
    "registered_types",
]
