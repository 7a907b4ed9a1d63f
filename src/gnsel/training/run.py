"""The one training run: :class:`TrainingRun`, a ``TrainConfig`` advanced an epoch at a time.

:func:`gnsel.training.train` drives it through all epochs; live search trials
(:func:`gnsel.tune.trainable.tune_trial`) step it, checkpoint it (:meth:`TrainingRun.state_dict`),
continue it elsewhere (:meth:`TrainingRun.load_state_dict`) and change its hyper-parameters mid-run
(:meth:`TrainingRun.set_hparams`, for PBT). The rows it yields are described in
:mod:`gnsel.training.train`; on the CPU the same config gives identical numbers however it is driven.

Every call that builds, trains or measures runs under :func:`~gnsel.training.determinism.deterministic`.
Building seeds the global torch RNG with ``config.seed`` (see :func:`~gnsel.training.build.build`) and
does not restore it: :func:`~gnsel.training.train` forks the RNG around the whole run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..gradnorm import GradNormCollector, resolve_device
from .batches import shuffled_batches, steps_per_epoch
from .build import build
from .config import TrainConfig
from .determinism import deterministic
from .divergence import DivergenceError, FiniteCheck
from .evaluate import evaluate_splits, training_loss
from .optim import lr_factor, make_optimizer, make_scheduler, rebase_lr
from .probe import GN_KEYS, GN_SCOPES, measure_probe_gn, probe_indices, probe_set

__all__ = ["ROW_KEYS", "StateDict", "TrainingRun", "cpu_state"]

ROW_KEYS: tuple[str, ...] = (
    "epoch", "lr",
    "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "gap_acc", "gap_loss",
    *GN_KEYS,
    "traj_gn", "traj_gn_epoch", "steps", "lr_sq_sum", "n_train",
    "train_seconds", "measure_seconds", "eval_seconds",
)  # fmt: skip

StateDict = dict[str, Tensor]

_loss = training_loss  # the loss of a training step, looked up at every step (a test replaces it)


def cpu_state(model: nn.Module) -> StateDict:
    """A detached CPU copy of ``model.state_dict()`` (never aliasing the live weights)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _to_cpu(obj: Any) -> Any:
    """A CPU copy of the tensors in a nested dict/list (an optimiser's state)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


class TrainingRun:
    """One run of ``config``: model, optimiser, schedule, data on the device, trajectory GN so far.

    ``epoch`` is the number of epochs done; ``gn_scopes`` are the probe GN scopes each row measures
    (the others are NaN; ``"fc"`` alone is cheap). ``root``/``download`` go to :func:`gnsel.data.load_dataset`.
    """

    def __init__(self, config: TrainConfig, *, gn_scopes: Sequence[str] = GN_SCOPES,
                 root: str | os.PathLike | None = None, download: bool = False):  # fmt: skip
        config.validate()
        self.config = config
        self.gn_scopes = tuple(s for s in GN_SCOPES if s in gn_scopes)
        self.device = device = resolve_device(config.device)
        with deterministic(device):
            model, splits = build(config, root=root, download=download)
            self.model: nn.Module = model.to(device)
            self.data = {
                name: tuple(t.to(device) for t in getattr(splits, name).tensors) for name in ("train", "val", "test")
            }
            self.probe = tuple(t.to(device) for t in probe_set(splits, config))
            self.probe_indices = probe_indices(len(splits.train), config.probe_size, config.data_seed)
            self.steps_per_epoch = steps_per_epoch(len(splits.train), config.batch_size)
            self.optimizer = make_optimizer(config, model.parameters())
            self.scheduler = make_scheduler(config, self.optimizer, self.steps_per_epoch)
            self.gen = torch.Generator().manual_seed(config.seed)
            self.collector = (
                GradNormCollector(model, scope="full", batch_stats="constant") if config.trajectory_gn else None
            )
            self.traj = torch.zeros((), dtype=torch.float64, device=device)
            self.n_train = len(splits.train)
            self.steps = 0
            self.lr_sq_sum = 0.0
            self.train_loss = math.nan  # of the last evaluated row: the stopping criterion reads it
            self.last_lr = config.lr
            self.check = FiniteCheck(device)
        self.epoch = 0

    # ------------------------------------------------------------------ epochs
    @property
    def converged(self) -> bool:
        """Whether the last evaluated training loss met the criterion ``config.stop_loss`` (False without one)."""
        stop = self.config.stop_loss
        return stop is not None and math.isfinite(self.train_loss) and self.train_loss <= stop

    @property
    def done(self) -> bool:
        """Whether the run has stopped: it converged, or it trained the maximum number of epochs."""
        return self.converged or self.epoch >= self.config.epochs

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Train until the run stops (criterion met or ``epochs`` done), yielding each epoch's row.

        The criterion is read from the last row this run evaluated (:meth:`row`, which ``train`` calls at
        epoch 0 too); a driver that wants a fixed budget (a live search trial) calls :meth:`step_epoch`.
        """
        while not self.done:
            yield self.step_epoch()

    def step_epoch(self) -> dict[str, Any]:
        """Train the next epoch and return its row; raises :class:`DivergenceError`."""
        inc, seconds = self.train_epoch()
        return self.row(traj_inc=inc, train_seconds=seconds)

    def train_epoch(self) -> tuple[float, float]:
        """Train the next epoch; (its trajectory-GN increment, seconds). Raises :class:`DivergenceError`."""
        if self.epoch >= self.config.epochs:
            raise RuntimeError(f"all {self.config.epochs} epochs are done")
        epoch = self.epoch + 1
        with deterministic(self.device):
            self._sync()
            t0 = time.perf_counter()
            self.model.train()
            traj = torch.zeros((), dtype=torch.float64, device=self.device)
            x, y = self.data["train"]
            for step, (xb, yb) in enumerate(shuffled_batches(x, y, self.config.batch_size, self.gen), start=1):
                self._step(xb, yb, epoch, step, traj)
            self.check.flush()
            self.traj += traj
            inc = float(traj)
            self._sync()
            seconds = time.perf_counter() - t0
        self.epoch = epoch
        return inc, seconds

    def row(self, *, traj_inc: float = 0.0, train_seconds: float = 0.0) -> dict[str, Any]:
        """Evaluate and measure the current model: the row of epoch ``self.epoch`` (keys :data:`ROW_KEYS`)."""
        with deterministic(self.device):
            metrics, eval_seconds = self._evaluate()
            gn, measure_seconds = self._measure()
        on = self.config.trajectory_gn
        return {
            "epoch": self.epoch,
            "lr": float(self.last_lr),
            **metrics,
            **gn,
            "traj_gn": float(self.traj) if on else math.nan,
            "traj_gn_epoch": traj_inc if on else math.nan,
            "steps": self.steps,
            "lr_sq_sum": self.lr_sq_sum,
            "n_train": self.n_train,
            "train_seconds": train_seconds,
            "measure_seconds": measure_seconds,
            "eval_seconds": eval_seconds,
        }

    def _sync(self) -> None:
        """Wait for the device, so that wall-clock times are right."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _step(self, x: Tensor, y: Tensor, epoch: int, step: int, traj: Tensor) -> None:
        """One optimisation step; adds ``lr^2 * mean_i s_i`` to ``traj`` when collecting trajectory GN."""
        lr = self.optimizer.param_groups[0]["lr"]
        if self.collector is not None:
            with self.collector.batch(len(y)):
                loss = _loss(self.model(x), y)
                sq = self.collector.backward(loss, reduction="mean")
            traj.add_(torch.mean(sq, dtype=torch.float64), alpha=lr * lr)
        else:
            loss = _loss(self.model(x), y)
            loss.backward()
        self.check.add(loss, epoch, step)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.last_lr = lr
        self.steps += 1
        self.lr_sq_sum += lr * lr

    def _evaluate(self) -> tuple[dict[str, float], float]:
        """Loss and accuracy on train/val/test, and the gaps; (metrics, seconds). Non-finite train loss: divergence."""
        t0 = time.perf_counter()
        out = evaluate_splits(self.model, self.data, self.device)
        epoch = self.epoch
        if epoch > 0 and not math.isfinite(out["train_loss"]):
            raise DivergenceError(
                f"training diverged: non-finite training loss {out['train_loss']} after epoch {epoch}", epoch=epoch
            )
        out["gap_acc"] = out["train_acc"] - out["test_acc"]
        out["gap_loss"] = out["test_loss"] - out["train_loss"]
        self.train_loss = float(out["train_loss"])
        self._sync()
        return out, time.perf_counter() - t0

    def _measure(self) -> tuple[dict[str, float], float]:
        """Probe-set GN of ``gn_scopes`` (NaN for the others, all NaN when ``measure_gn`` is off); (values, seconds)."""
        if not self.config.measure_gn or not self.gn_scopes:
            return {k: math.nan for k in GN_KEYS}, 0.0
        self._sync()
        t0 = time.perf_counter()
        out = measure_probe_gn(self.model, self.probe, self.gn_scopes, self.device)
        self._sync()
        return out, time.perf_counter() - t0

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue: weights, optimiser, schedule, generator, trajectory GN (CPU copies)."""
        return {
            "epoch": self.epoch,
            "model": cpu_state(self.model),
            "optimizer": _to_cpu(self.optimizer.state_dict()),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.gen.get_state(),
            "traj": self.traj.detach().to("cpu", copy=True),
            "last_lr": float(self.last_lr),
            "steps": self.steps,
            "lr_sq_sum": self.lr_sq_sum,
            "train_loss": self.train_loss,
            "config": self.config.to_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` (the optimiser's hyper-parameters come with it: see :meth:`set_hparams`)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.gen.set_state(state["generator"])
        self.traj = state["traj"].to(device=self.device, dtype=torch.float64).clone()
        self.last_lr = float(state["last_lr"])
        self.epoch = int(state["epoch"])
        self.steps = int(state.get("steps", 0))
        self.lr_sq_sum = float(state.get("lr_sq_sum", 0.0))
        self.train_loss = float(state.get("train_loss", math.nan))

    def set_hparams(self, *, lr: float | None = None, weight_decay: float | None = None,
                    momentum: float | None = None) -> None:  # fmt: skip
        """Set the optimiser's base lr (the schedule goes on from the current step), weight decay, momentum."""
        changes: dict[str, float] = {}
        groups = self.optimizer.param_groups
        if lr is not None:
            changes["lr"] = float(lr)
            cfg = self.config
            factor = lr_factor(cfg.schedule, self.scheduler.last_epoch, self.steps_per_epoch, cfg.epochs)
            rebase_lr(self.scheduler, float(lr), factor)
        if weight_decay is not None:
            changes["weight_decay"] = float(weight_decay)
            for g in groups:
                g["weight_decay"] = float(weight_decay)
        if momentum is not None:
            changes["momentum"] = float(momentum)
            for g in groups:
                if "momentum" in g:
                    g["momentum"] = float(momentum)
        if changes:
            self.config = dataclasses.replace(self.config, **changes)
