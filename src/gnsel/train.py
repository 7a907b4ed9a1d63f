"""The training loop: one ``TrainConfig`` -> per-epoch rows of accuracy, loss, GN and trajectory GN.

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
* ``train_seconds`` (the epoch's optimisation steps, trajectory hooks included), ``measure_seconds``
  (the probe GN measurements) and ``eval_seconds``.

Training batches are slices of the split tensors, moved to the device once, in an order drawn each
epoch from a ``torch.Generator`` seeded with ``seed``; a trailing batch of one example is skipped
(BatchNorm cannot train on it). On the CPU the same config gives identical numbers.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import TrainConfig
from .data import DatasetSplits, load_dataset
from .gradnorm import GradNormCollector, gradient_norm, resolve_device
from .models import create_model

__all__ = [
    "DivergenceError",
    "GN_BATCH_SIZE",
    "ROW_KEYS",
    "TrainResult",
    "build",
    "evaluate",
    "make_optimizer",
    "make_scheduler",
    "probe_indices",
    "probe_set",
    "train",
]

GN_BATCH_SIZE = 256  # batch size of the probe GN measurements
EVAL_BATCH_SIZE = 1024  # batch size of the no-grad evaluations (eval mode: results do not depend on it)
_CHECK_EVERY_CUDA = 32  # on CUDA, the finiteness of the training loss is synchronised every this many steps

ROW_KEYS: tuple[str, ...] = (
    "epoch", "lr",
    "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "gap_acc", "gap_loss",
    "gn_full", "gn_full_mean_grad_sq", "gn_fc", "gn_fc_mean_grad_sq",
    "traj_gn", "traj_gn_epoch",
    "train_seconds", "measure_seconds", "eval_seconds",
)  # fmt: skip

StateDict = dict[str, Tensor]
EpochCallback = Callable[[int, dict[str, Any]], None]
CheckpointCallback = Callable[[int, StateDict], None]


class DivergenceError(ValueError):
    """The training loss became non-finite; ``epoch`` and ``step`` (1-based within the epoch) say where."""

    def __init__(self, message: str, *, epoch: int, step: int | None = None):
        super().__init__(message)
        self.epoch = epoch
        self.step = step


@dataclass
class TrainResult:
    """What a run produced: the per-epoch rows and the initial and final weights (on the CPU)."""

    rows: list[dict[str, Any]]
    final_state: StateDict
    initial_state: StateDict
    seconds: float
    run_id: str = ""
    device: str = "cpu"
    probe_indices: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long), repr=False)

    @property
    def final(self) -> dict[str, Any]:
        """The last row (after the final epoch)."""
        return self.rows[-1]


# --------------------------------------------------------------------------------------- building
def build(config: TrainConfig, *, root: str | os.PathLike | None = None, download: bool = False
          ) -> tuple[nn.Module, DatasetSplits]:  # fmt: skip
    """Load the config's data splits, then seed torch with ``config.seed`` and create its model (on the CPU)."""
    splits = load_dataset(
        config.dataset, seed=config.data_seed, n_train=config.n_train, n_val=config.n_val,
        root=root, download=download, **config.dataset_kwargs,
    )  # fmt: skip
    torch.manual_seed(config.seed)
    model = create_model(
        config.model, num_classes=splits.num_classes, input_shape=splits.input_shape, **config.model_kwargs
    )
    return model, splits


def probe_indices(n: int, size: int, seed: int) -> Tensor:
    """The probe set: the first ``min(size, n)`` of a permutation of ``range(n)`` drawn from ``seed``."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[: min(size, n)]


def probe_set(splits: DatasetSplits, config: TrainConfig) -> tuple[Tensor, Tensor]:
    """(inputs, targets) of the fixed probe set: ``probe_size`` training examples drawn with ``data_seed``."""
    x, y = splits.train.tensors
    idx = probe_indices(len(y), config.probe_size, config.data_seed)
    return x[idx], y[idx]


def make_optimizer(config: TrainConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """SGD (with ``momentum``), Adam (L2 ``weight_decay``) or AdamW (decoupled ``weight_decay``)."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def lr_factor(schedule: str, step: int, steps_per_epoch: int, epochs: int) -> float:
    """Multiplier of the base lr at (0-based, global) ``step``: constant, cosine over all steps, or step decay.

    ``"step"`` multiplies by 0.1 from epoch ``int(0.5 * epochs)`` and again from ``int(0.75 * epochs)``
    (0-based epochs; never before the first epoch's end).
    """
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        total = max(1, steps_per_epoch * epochs)
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    if schedule == "step":
        epoch = step // max(1, steps_per_epoch)
        milestones = [max(1, int(f * epochs)) for f in (0.5, 0.75)]
        return 0.1 ** sum(epoch >= m for m in milestones)
    raise ValueError(f"unknown schedule {schedule!r}")


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
                   ) -> torch.optim.lr_scheduler.LambdaLR:  # fmt: skip
    """A per-step ``LambdaLR`` following :func:`lr_factor`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(config.schedule, step, steps_per_epoch, config.epochs)
    )


# --------------------------------------------------------------------------------------- batches
def _slices(x: Tensor, y: Tensor, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Consecutive batches of (x, y) in order."""
    for s in range(0, len(y), batch_size):
        yield x[s : s + batch_size], y[s : s + batch_size]


def _shuffled(x: Tensor, y: Tensor, batch_size: int, gen: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch of shuffled batches (order from ``gen``); a trailing batch of one example is skipped."""
    n = len(y)
    perm = torch.randperm(n, generator=gen).to(y.device)
    for s in range(0, n, batch_size):
        idx = perm[s : s + batch_size]
        if len(idx) == 1 and n > 1:
            return
        yield x[idx], y[idx]


def _steps_per_epoch(n: int, batch_size: int) -> int:
    """Number of batches :func:`_shuffled` yields for ``n`` examples."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest > 1 or (rest == 1 and n == 1) else 0)


def _loss(logits: Tensor, targets: Tensor) -> Tensor:
    """The training loss: mean cross-entropy."""
    return F.cross_entropy(logits, targets)


# --------------------------------------------------------------------------------------- evaluation
def evaluate(model: nn.Module, loader: Iterable, device: str | torch.device) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` over ``loader``'s (x, y) batches, in eval mode, no grad.

    The model's train/eval mode is restored afterwards; an empty loader gives (nan, nan).
    """
    dev = resolve_device(device)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    correct = torch.zeros((), dtype=torch.long, device=dev)
    n = 0
    try:
        with torch.no_grad():
            for batch in loader:
                x, y = batch[0].to(dev), batch[1].to(dev)
                out = model(x)
                loss_sum += F.cross_entropy(out, y, reduction="sum").double()
                correct += (out.argmax(dim=1) == y).sum()
                n += len(y)
    finally:
        model.train(was_training)
    if n == 0:
        return math.nan, math.nan
    return float(loss_sum) / n, float(correct) / n


# --------------------------------------------------------------------------------------- the loop
class _FiniteCheck:
    """Watches the training losses; raises :class:`DivergenceError` on the first non-finite one.

    On CUDA the losses are checked in chunks, so the host waits for the device only now and then.
    """

    def __init__(self, device: torch.device):
        self.every = _CHECK_EVERY_CUDA if device.type == "cuda" else 1
        self.pending: list[tuple[Tensor, int, int]] = []  # (loss, epoch, step)

    def add(self, loss: Tensor, epoch: int, step: int) -> None:
        """Record one step's loss; check when the chunk is full."""
        self.pending.append((loss.detach(), epoch, step))
        if len(self.pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        """Check the recorded losses now."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        losses = torch.stack([p[0] for p in pending])
        bad = ~torch.isfinite(losses)
        if bool(bad.any()):
            k = int(bad.nonzero()[0, 0])
            _, epoch, step = pending[k]
            raise DivergenceError(
                f"training diverged: non-finite training loss {float(losses[k])} at epoch {epoch}, step {step}",
                epoch=epoch, step=step,
            )  # fmt: skip


class _Loop:
    """The state of one run: model, optimiser, schedule, data on the device, trajectory GN so far."""

    def __init__(self, config: TrainConfig, model: nn.Module, splits: DatasetSplits, device: torch.device):
        self.config, self.model, self.device = config, model, device
        self.data = {
            name: tuple(t.to(device) for t in getattr(splits, name).tensors) for name in ("train", "val", "test")
        }
        self.probe = tuple(t.to(device) for t in probe_set(splits, config))
        self.steps_per_epoch = _steps_per_epoch(len(splits.train), config.batch_size)
        self.optimizer = make_optimizer(config, model.parameters())
        self.scheduler = make_scheduler(config, self.optimizer, self.steps_per_epoch)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.collector = (
            GradNormCollector(model, scope="full", batch_stats="constant") if config.trajectory_gn else None
        )
        self.traj = torch.zeros((), dtype=torch.float64, device=device)
        self.last_lr = config.lr
        self.check = _FiniteCheck(device)

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

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """Run epoch ``epoch`` (1-based); return (its trajectory-GN increment, seconds)."""
        self._sync()
        t0 = time.perf_counter()
        self.model.train()
        traj = torch.zeros((), dtype=torch.float64, device=self.device)
        x, y = self.data["train"]
        for step, (xb, yb) in enumerate(_shuffled(x, y, self.config.batch_size, self.gen), start=1):
            self._step(xb, yb, epoch, step, traj)
        self.check.flush()
        self.traj += traj
        inc = float(traj)
        self._sync()
        return inc, time.perf_counter() - t0

    def evaluate_all(self, epoch: int) -> tuple[dict[str, float], float]:
        """Loss and accuracy on train/val/test; (metrics, seconds). A non-finite train loss is divergence."""
        t0 = time.perf_counter()
        out: dict[str, float] = {}
        for name, (x, y) in self.data.items():
            loss, acc = evaluate(self.model, _slices(x, y, EVAL_BATCH_SIZE), self.device)
            out[f"{name}_loss"], out[f"{name}_acc"] = loss, acc
        if epoch > 0 and not math.isfinite(out["train_loss"]):
            raise DivergenceError(
                f"training diverged: non-finite training loss {out['train_loss']} after epoch {epoch}", epoch=epoch
            )
        out["gap_acc"] = out["train_acc"] - out["test_acc"]
        out["gap_loss"] = out["test_loss"] - out["train_loss"]
        self._sync()
        return out, time.perf_counter() - t0

    def measure(self) -> tuple[dict[str, float], float]:
        """GN (full and fc scope) on the probe set; (values, seconds). NaN when ``measure_gn`` is off."""
        if not self.config.measure_gn:
            return {k: math.nan for k in ("gn_full", "gn_full_mean_grad_sq", "gn_fc", "gn_fc_mean_grad_sq")}, 0.0
        t0 = time.perf_counter()
        out: dict[str, float] = {}
        for scope in ("full", "fc"):
            gn = gradient_norm(self.model, self.probe, scope=scope, batch_size=GN_BATCH_SIZE, device=self.device)
            out[f"gn_{scope}"], out[f"gn_{scope}_mean_grad_sq"] = gn.mean_sq, gn.mean_grad_sq
        return out, time.perf_counter() - t0

    def row(self, epoch: int, traj_inc: float, train_seconds: float) -> dict[str, Any]:
        """Evaluate and measure the current model; the complete row for ``epoch``."""
        metrics, eval_seconds = self.evaluate_all(epoch)
        gn, measure_seconds = self.measure()
        on = self.config.trajectory_gn
        return {
            "epoch": epoch,
            "lr": float(self.last_lr),
            **metrics,
            **gn,
            "traj_gn": float(self.traj) if on else math.nan,
            "traj_gn_epoch": traj_inc if on else math.nan,
            "train_seconds": train_seconds,
            "measure_seconds": measure_seconds,
            "eval_seconds": eval_seconds,
        }


def _cpu_state(model: nn.Module) -> StateDict:
    """A detached CPU copy of ``model.state_dict()`` (never aliasing the live weights)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


@contextlib.contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic algorithms (warn-only) and no cuDNN autotuning for the duration; settings restored."""
    old = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    old_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (new handles)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old[0], warn_only=old[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old_cudnn


def _rng_scope(device: torch.device) -> contextlib.AbstractContextManager:
    """Fork the global torch RNGs (CPU and the training GPU), so a run leaves the caller's RNG state alone."""
    devices = [device] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def _progress(enabled: bool, epochs: int):
    """A Rich progress bar over the epochs (a no-op display when ``enabled`` is False)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]train[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.description}"), disable=not enabled, transient=False,
    )  # fmt: skip


def _describe(row: dict[str, Any]) -> str:
    """Short progress text for a row."""
    return f"loss {row['train_loss']:.3f}  train {row['train_acc']:.3f}  test {row['test_acc']:.3f}"


def train(
    config: TrainConfig,
    *,
    on_epoch: EpochCallback | None = None,
    on_checkpoint: CheckpointCallback | None = None,
    progress: bool = False,
    root: str | os.PathLike | None = None,
    download: bool = False,
) -> TrainResult:
    """Train per ``config``; rows for epochs 0..epochs (see the module docstring), reported through callbacks.

    ``on_epoch(epoch, row)`` is called when a row is complete; ``on_checkpoint(epoch, state_dict)`` with
    the CPU weights at initialisation (epoch 0) and after the final epoch. ``root``/``download`` go to
    :func:`gnsel.data.load_dataset`. Raises :class:`DivergenceError` on a non-finite training loss.
    """
    config.validate()
    device = resolve_device(config.device)
    t_start = time.perf_counter()
    with _deterministic(device), _rng_scope(device):
        model, splits = build(config, root=root, download=download)
        model.to(device)
        loop = _Loop(config, model, splits, device)
        initial = _cpu_state(model)
        rows: list[dict[str, Any]] = []
        with _progress(progress, config.epochs) as bar:
            task = bar.add_task("", total=config.epochs)
            _emit(rows, loop.row(0, 0.0, 0.0), on_epoch)
            if on_checkpoint is not None:
                on_checkpoint(0, copy.deepcopy(initial))
            for epoch in range(1, config.epochs + 1):
                inc, seconds = loop.train_epoch(epoch)
                _emit(rows, loop.row(epoch, inc, seconds), on_epoch)
                bar.update(task, advance=1, description=_describe(rows[-1]))
        final = _cpu_state(model)
    if on_checkpoint is not None:
        on_checkpoint(config.epochs, copy.deepcopy(final))
    return TrainResult(
        rows=rows, final_state=final, initial_state=initial, seconds=time.perf_counter() - t_start,
        run_id=config.run_id(), device=str(device), probe_indices=probe_indices(
            len(splits.train), config.probe_size, config.data_seed),
    )  # fmt: skip


def _emit(rows: list[dict[str, Any]], row: dict[str, Any], on_epoch: EpochCallback | None) -> None:
    """Append ``row`` and hand a copy of it to ``on_epoch``."""
    rows.append(row)
    if on_epoch is not None:
        on_epoch(row["epoch"], dict(row))
