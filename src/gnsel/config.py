"""Compatibility shim: ``TrainConfig`` lives in :mod:`gnsel.training.config` (removed after the issue #10 merge)."""

from .training.config import *  # noqa: F401,F403  # shim: removed after the merge
from .training.config import __all__  # noqa: F401
