"""Compatibility shim: the training loop lives in :mod:`gnsel.training` (removed after the issue #10 merge)."""

from .training import *  # noqa: F401,F403  # shim: removed after the merge
from .training import __all__  # noqa: F401
from .training.batches import shuffled_batches as _shuffled  # noqa: F401  (old private names, for unmerged callers)
from .training.batches import sliced_batches as _slices  # noqa: F401
from .training.batches import steps_per_epoch as _steps_per_epoch  # noqa: F401
from .training.determinism import deterministic as _deterministic  # noqa: F401
from .training.determinism import rng_scope as _rng_scope  # noqa: F401
from .training.evaluate import training_loss as _loss  # noqa: F401
from .training.run import cpu_state as _cpu_state  # noqa: F401
