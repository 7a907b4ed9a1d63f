"""Training: one ``TrainConfig`` -> per-epoch rows of accuracy, loss, GN and trajectory GN.

    result = train(TrainConfig(dataset="digits", epochs=3), on_epoch=lambda e, row: print(e, row))

Row ``epoch`` 0 describes the model at initialisation; rows 1..epochs describe it after each epoch.
Every row is a flat dict of floats and ints:

* ``epoch``, ``lr`` (the learning rate of the epoch's last step; the initial one for epoch 0);
* ``train_/val_/test_loss`` and ``_acc``: mean cross-entropy and accuracy (in [0, 1]) on the full
  splits, in eval mode without gradients; ``gap_acc = train_acc - test_acc``,
  ``gap_loss = test_loss - train_loss``;
* ``gn_full``, ``gn_full_mean_grad_sq``, ``gn_fc``, ``gn_fc_mean_grad_sq``: :func:`gnsel.gradient_norm`
  on the fixed probe set (``probe_size`` training examples drawn with ``data_seed``, see
  :func:`probe_indices`), NaN when ``measure_gn`` is off;
* ``traj_gn``: trajectory GN, ``sum_t lr_t^2 * mean_i s_i(t)`` over the steps so far, with ``s_i(t)``
  the exact squared gradient norm of example ``i`` of step ``t``'s mini-batch at the pre-update
  weights (collected in the training step's own backward pass, BatchNorm statistics taken as
  constants); ``traj_gn_epoch`` is the epoch's increment; both NaN when ``trajectory_gn`` is off;
* ``steps`` (optimisation steps so far), ``lr_sq_sum`` (``sum_t lr_t^2`` over them: trajectory GN
  with every gradient norm set to 1, the training-budget part of the bound) and ``n_train`` (the size
  of the training split, the bound's ``n``);
* ``train_seconds`` (the epoch's optimisation steps, trajectory hooks included), ``measure_seconds``
  (the probe GN measurements) and ``eval_seconds``.

A run stops at the training protocol's criterion (``config.stop_loss``: the row's ``train_loss`` at
most that, Jiang et al. 2020) or after ``epochs`` epochs, whichever comes first; the result says which
(``converged``, ``stop_epoch``), and the last row is the stopping point.

Training batches are slices of the split tensors, moved to the device once, in an order drawn each
epoch from a ``torch.Generator`` seeded with ``seed``; a trailing batch of one example is skipped
(BatchNorm cannot train on it). On the CPU the same config gives identical numbers.

:func:`train` drives a :class:`~gnsel.training.run.TrainingRun` through all its epochs.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..gradnorm import resolve_device
from ..progress import SILENT, Progress
from .build import build
from .config import TrainConfig
from .determinism import deterministic, rng_scope
from .divergence import DivergenceError
from .probe import probe_indices, probe_set
from .run import ROW_KEYS, StateDict, TrainingRun, cpu_state

__all__ = [
    "DivergenceError",
    "ROW_KEYS",
    "TrainResult",
    "build",
    "probe_indices",
    "probe_set",
    "train",
]

EpochCallback = Callable[[int, dict[str, Any]], None]
CheckpointCallback = Callable[[int, StateDict], None]


@dataclass
class TrainResult:
    """What a run produced: the per-epoch rows and the initial and final weights (on the CPU)."""

    rows: list[dict[str, Any]]
    final_state: StateDict
    initial_state: StateDict
    seconds: float
    run_id: str = ""
    device: str = "cpu"
    converged: bool = False
    stop_epoch: int = 0
    probe_indices: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long), repr=False)

    @property
    def final(self) -> dict[str, Any]:
        """The last row (after the final epoch)."""
        return self.rows[-1]


def _describe(row: dict[str, Any]) -> str:
    """Short progress text for a row."""
    return f"loss {row['train_loss']:.3f}  train {row['train_acc']:.3f}  test {row['test_acc']:.3f}"


def train(
    config: TrainConfig,
    *,
    on_epoch: EpochCallback | None = None,
    on_checkpoint: CheckpointCallback | None = None,
    progress: Progress = SILENT,
    root: str | os.PathLike | None = None,
    download: bool = False,
) -> TrainResult:
    """Train per ``config``; rows for epochs 0..epochs (see the module docstring), reported through callbacks.

    ``on_epoch(epoch, row)`` is called when a row is complete; ``on_checkpoint(epoch, state_dict)`` with
    the CPU weights at initialisation (epoch 0) and at the stopping point (the criterion met, or ``epochs``). ``progress`` gets a bar over
    the epochs. ``root``/``download`` go to :func:`gnsel.data.load_dataset`. Raises :class:`DivergenceError`
    on a non-finite training loss.
    """
    config.validate()
    device = resolve_device(config.device)
    t_start = time.perf_counter()
    with deterministic(device), rng_scope(device):
        run = TrainingRun(config, root=root, download=download)
        initial = cpu_state(run.model)
        rows: list[dict[str, Any]] = []
        with progress.task("train", total=config.epochs) as bar:
            _emit(rows, run.row(), on_epoch)
            if on_checkpoint is not None:
                on_checkpoint(0, copy.deepcopy(initial))
            for row in run:
                _emit(rows, row, on_epoch)
                bar.advance(1, _describe(row))
        final = cpu_state(run.model)
    if on_checkpoint is not None:
        on_checkpoint(run.epoch, copy.deepcopy(final))
    return TrainResult(
        rows=rows, final_state=final, initial_state=initial, seconds=time.perf_counter() - t_start,
        run_id=config.run_id(), device=str(device), probe_indices=run.probe_indices,
        converged=run.converged, stop_epoch=run.epoch,
    )  # fmt: skip


def _emit(rows: list[dict[str, Any]], row: dict[str, Any], on_epoch: EpochCallback | None) -> None:
    """Append ``row`` and hand a copy of it to ``on_epoch``."""
    rows.append(row)
    if on_epoch is not None:
        on_epoch(row["epoch"], dict(row))
