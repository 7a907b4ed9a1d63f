"""gnsel: can the gradient norm of a trained model guide model selection, and at what cost?"""

from .gradnorm import (
    GradNorm,
    GradNormCollector,
    GradNormError,
    NonFiniteLossError,
    UnsupportedLayerError,
    gradient_norm,
    per_sample_grad_sq_norms,
    register_rule,
)

__version__ = "0.3.0"

__all__ = [
    "GradNorm",
    "GradNormCollector",
    "GradNormError",
    "NonFiniteLossError",
    "UnsupportedLayerError",
    "gradient_norm",
    "per_sample_grad_sq_norms",
    "register_rule",
    "__version__",
]
