"""Exact per-example gradient norms (GN) in one forward and one backward pass, and the fc approximation."""

from .api import GN_BATCH_SIZE, GradNorm, gradient_norm, per_sample_grad_sq_norms, resolve_device
from .collector import GradNormCollector
from .engine import GradNormHooks
from .errors import GradNormError, NonFiniteLossError, UnsupportedLayerError
from .losses import LOSSES, resolve_loss
from .rules import find_rule, register_rule, registered_types  # importing rules registers the built-ins
from .scope import classifier_head, resolve_scope

__all__ = [
    "GN_BATCH_SIZE",
    "GradNorm",
    "GradNormError",
    "GradNormCollector",
    "GradNormHooks",
    "LOSSES",
    "NonFiniteLossError",
    "UnsupportedLayerError",
    "classifier_head",
    "find_rule",
    "gradient_norm",
    "per_sample_grad_sq_norms",
    "register_rule",
    "registered_types",
    "resolve_device",
    "resolve_loss",
    "resolve_scope",
]
