"""Training: the configuration (:class:`TrainConfig`), the one :class:`TrainingRun`, and :func:`train`.

:func:`train` runs a config to the end (zoo runs); a live search trial steps a :class:`TrainingRun`
itself, checkpointing it and changing its hyper-parameters (PBT); the study's cost part times the
same pieces (:func:`shuffled_batches`, :func:`training_loss`, :func:`make_optimizer`).
"""

from .batches import shuffled_batches, sliced_batches, steps_per_epoch
from .build import build
from .config import DATA_FIELDS, OPTIMIZERS, SCHEDULES, TrainConfig, canonical_json, config_hash, json_default
from .determinism import deterministic, rng_scope
from .divergence import DivergenceError
from .evaluate import EVAL_BATCH_SIZE, evaluate, evaluate_splits, training_loss
from .optim import lr_factor, make_optimizer, make_scheduler, rebase_lr
from .probe import GN_BATCH_SIZE, GN_KEYS, GN_SCOPES, measure_probe_gn, probe_indices, probe_set
from .run import ROW_KEYS, StateDict, TrainingRun, cpu_state
from .train import TrainResult, train

__all__ = [
    "DATA_FIELDS",
    "EVAL_BATCH_SIZE",
    "GN_BATCH_SIZE",
    "GN_KEYS",
    "GN_SCOPES",
    "OPTIMIZERS",
    "ROW_KEYS",
    "SCHEDULES",
    "DivergenceError",
    "StateDict",
    "TrainConfig",
    "TrainResult",
    "TrainingRun",
    "build",
    "canonical_json",
    "config_hash",
    "cpu_state",
    "deterministic",
    "evaluate",
    "evaluate_splits",
    "json_default",
    "lr_factor",
    "make_optimizer",
    "make_scheduler",
    "measure_probe_gn",
    "probe_indices",
    "probe_set",
    "rebase_lr",
    "rng_scope",
    "shuffled_batches",
    "sliced_batches",
    "steps_per_epoch",
    "train",
    "training_loss",
]
