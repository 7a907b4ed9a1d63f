"""Epoch-by-epoch training for searches: a resumable :class:`Trainer` and the Ray Tune function trainable.

``Trainer`` runs the loop of :func:`gnsel.train.train` one epoch at a time (the same steps, rows and
measurements: on the CPU its rows equal ``train``'s), and adds what a search needs:

* ``state_dict()`` / ``load_state_dict()``: weights, optimiser and schedule state, the shuffling
  generator and the trajectory-GN accumulator, so a run continues exactly where it stopped;
* ``set_hparams(lr=..., weight_decay=..., momentum=...)``: change the optimiser's hyper-parameters
  mid-run (PBT), the schedule continuing from the current step with the new base learning rate;
* ``gn_scopes``: which probe GN scopes to measure (``"fc"`` alone is cheap), their time reported as
  ``measure_seconds``.

:func:`tune_trial` is the function trainable: it builds the trial's ``TrainConfig`` from its config,
continues from ``ray.tune.get_checkpoint()`` when there is one (re-reading lr and weight decay from
the config, so a PBT exploit trains the donor's weights with the perturbed hyper-parameters), and
reports every epoch's row, the objective and a checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..config import TrainConfig
from ..gradnorm import gradient_norm, resolve_device
from ..train import GN_BATCH_SIZE, _deterministic, _Loop, build, lr_factor

__all__ = ["Trainer", "tune_trial", "CHECKPOINT_FILE", "META_FILE"]

CHECKPOINT_FILE = "trainer.pt"
META_FILE = "meta.json"
GN_KEYS = ("gn_full", "gn_full_mean_grad_sq", "gn_fc", "gn_fc_mean_grad_sq")


class Trainer:
    """One run of ``config``, advanced an epoch at a time; ``epoch`` is the number of epochs done."""

    def __init__(self, config: TrainConfig, *, gn_scopes: Sequence[str] = ("full", "fc"),
                 root: str | os.PathLike | None = None, download: bool = False):  # fmt: skip
        config.validate()
        self.config = config
        self.gn_scopes = tuple(s for s in ("full", "fc") if s in gn_scopes)
        self.device = resolve_device(config.device)
        with _deterministic(self.device):
            model, splits = build(config, root=root, download=download)
            model.to(self.device)
            self.loop = _Loop(config, model, splits, self.device)
        self.epoch = 0

    @property
    def model(self) -> torch.nn.Module:
        return self.loop.model

    # ------------------------------------------------------------------ epochs
    def row(self, epoch: int, traj_inc: float = 0.0, train_seconds: float = 0.0) -> dict[str, Any]:
        """The row of the current model (as :func:`gnsel.train.train` writes it), GN only for ``gn_scopes``."""
        with _deterministic(self.device):
            metrics, eval_seconds = self.loop.evaluate_all(epoch)
            gn, measure_seconds = self.measure()
        on = self.config.trajectory_gn
        return {
            "epoch": epoch,
            "lr": float(self.loop.last_lr),
            **metrics,
            **gn,
            "traj_gn": float(self.loop.traj) if on else math.nan,
            "traj_gn_epoch": traj_inc if on else math.nan,
            "train_seconds": train_seconds,
            "measure_seconds": measure_seconds,
            "eval_seconds": eval_seconds,
        }

    def measure(self) -> tuple[dict[str, float], float]:
        """Probe-set GN of the scopes asked for (NaN for the others); (values, seconds)."""
        out = {k: math.nan for k in GN_KEYS}
        if not self.config.measure_gn or not self.gn_scopes:
            return out, 0.0
        self.loop._sync()
        t0 = time.perf_counter()
        for scope in self.gn_scopes:
            gn = gradient_norm(self.model, self.loop.probe, scope=scope, batch_size=GN_BATCH_SIZE, device=self.device)
            out[f"gn_{scope}"], out[f"gn_{scope}_mean_grad_sq"] = gn.mean_sq, gn.mean_grad_sq
        self.loop._sync()
        return out, time.perf_counter() - t0

    def step_epoch(self) -> dict[str, Any]:
        """Train the next epoch and return its row; raises :class:`gnsel.train.DivergenceError`."""
        if self.epoch >= self.config.epochs:
            raise RuntimeError(f"all {self.config.epochs} epochs are done")
        epoch = self.epoch + 1
        with _deterministic(self.device):
            inc, seconds = self.loop.train_epoch(epoch)
        self.epoch = epoch
        return self.row(epoch, inc, seconds)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue: weights, optimiser, schedule, generator, trajectory GN (CPU copies)."""
        loop = self.loop
        return {
            "epoch": self.epoch,
            "model": {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()},
            "optimizer": _to_cpu(loop.optimizer.state_dict()),
            "scheduler": loop.scheduler.state_dict(),
            "generator": loop.gen.get_state(),
            "traj": loop.traj.detach().to("cpu", copy=True),
            "last_lr": float(loop.last_lr),
            "config": self.config.to_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` (the optimiser's hyper-parameters come with it: see :meth:`set_hparams`)."""
        loop = self.loop
        self.model.load_state_dict(state["model"])
        loop.optimizer.load_state_dict(state["optimizer"])
        loop.scheduler.load_state_dict(state["scheduler"])
        loop.gen.set_state(state["generator"])
        loop.traj = state["traj"].to(device=self.device, dtype=torch.float64).clone()
        loop.last_lr = float(state["last_lr"])
        self.epoch = int(state["epoch"])

    def set_hparams(self, *, lr: float | None = None, weight_decay: float | None = None,
                    momentum: float | None = None) -> None:  # fmt: skip
        """Set the optimiser's base lr (the schedule goes on from the current step), weight decay, momentum."""
        loop, changes = self.loop, {}
        groups = loop.optimizer.param_groups
        if lr is not None:
            changes["lr"] = float(lr)
            loop.scheduler.base_lrs = [float(lr)] * len(groups)
            factor = lr_factor(self.config.schedule, loop.scheduler.last_epoch, loop.steps_per_epoch, self.config.epochs)
            for g in groups:
                g["initial_lr"] = float(lr)
                g["lr"] = float(lr) * factor
            loop.scheduler._last_lr = [g["lr"] for g in groups]
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
            loop.config = self.config


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------ Ray Tune trainable
def objective_metrics(objective: Any, row: Mapping[str, Any]) -> dict[str, float]:
    """``objective`` (single) or ``objective_0``, ``objective_1``, ... (multi) from an epoch's row."""
    value = objective(row)
    if objective.multi:
        return {f"objective_{i}": float(v) for i, v in enumerate(value)}
    return {"objective": float(value)}


def gn_scopes_for(objective: Any) -> tuple[str, ...]:
    """The probe GN scopes an objective needs."""
    return tuple(s for s in ("full", "fc") if f"gn_{s}" in objective.metrics)


def tune_trial(config: dict[str, Any], *, space_spec: Mapping[str, Any], objective_text: str,
               overrides: Mapping[str, Any], threads: int = 1, capture_dir: str | None = None) -> None:  # fmt: skip
    """Ray Tune function trainable: one trial, reported (with a checkpoint) after every epoch."""
    from ray import tune

    from .objectives import parse_objective
    from .space import parse_space

    torch.set_num_threads(max(1, int(threads)))
    space = parse_space(space_spec)
    objective = parse_objective(objective_text)
    cfg = space.resolve(config, **overrides)
    trainer = Trainer(cfg, gn_scopes=gn_scopes_for(objective))
    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    run_id = cfg.run_id()
    provenance: dict[str, Any] = {}
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
            meta = json.loads((Path(d) / META_FILE).read_text())
        trainer.load_state_dict(state)
        # The checkpoint carries its optimiser's hyper-parameters; the trial's own config wins (PBT).
        trainer.set_hparams(lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
        if meta["run_id"] != run_id:  # another run's weights (PBT exploit): this run starts from them
            provenance = {"parent_trial_id": meta["trial_id"], "parent_run_id": meta["run_id"],
                          "start_epoch": int(state["epoch"])}  # fmt: skip
        else:  # this run's own checkpoint (a resumed or paused trial)
            provenance = dict(meta.get("provenance") or {})
        if capture_dir is not None:
            _capture(capture_dir, f"restore_{trial_id}_{run_id}_{int(state['epoch'])}", trainer, {
                "trial_id": trial_id, "run_id": run_id, "from_trial_id": meta["trial_id"],
                "from_run_id": meta["run_id"], "epoch": int(state["epoch"]), "config_lr": cfg.lr,
                "config_weight_decay": cfg.weight_decay, "checkpoint_lr": state["optimizer"]["param_groups"][0]["lr"],
                "optimizer_lr": trainer.loop.optimizer.param_groups[0]["lr"],
                "optimizer_weight_decay": trainer.loop.optimizer.param_groups[0]["weight_decay"],
            })  # fmt: skip
    while trainer.epoch < cfg.epochs:
        row = trainer.step_epoch()
        metrics = {**row, **objective_metrics(objective, row), "run_id": run_id, **provenance}
        with tempfile.TemporaryDirectory(prefix="gnsel-ckpt-") as d:
            torch.save(trainer.state_dict(), Path(d) / CHECKPOINT_FILE)
            (Path(d) / META_FILE).write_text(json.dumps({"trial_id": trial_id, "run_id": run_id, "epoch": trainer.epoch, "provenance": provenance}))
            if capture_dir is not None:
                _capture(capture_dir, f"save_{trial_id}_{run_id}_{trainer.epoch}", trainer, {
                    "trial_id": trial_id, "run_id": run_id, "epoch": trainer.epoch, "config_lr": cfg.lr,
                })  # fmt: skip
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def _capture(directory: str, name: str, trainer: Trainer, info: dict[str, Any]) -> None:
    """Test hook: keep the model weights and facts of a save or a restore under ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}, out / f"{name}.pt")
    (out / f"{name}.json").write_text(json.dumps(info))
