"""The Ray Tune function trainable: one live search trial, a :class:`gnsel.training.TrainingRun` stepped
an epoch at a time.

:func:`tune_trial` builds the trial's ``TrainConfig`` from its config, continues from
``ray.tune.get_checkpoint()`` when there is one (re-reading lr and weight decay from the config, so a
PBT exploit trains the donor's weights with the perturbed hyper-parameters), and reports every
epoch's row, the objective and a checkpoint. It measures only the probe GN scopes the objective needs.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from ..training import TrainingRun
from .objectives import parse_objective
from .space import parse_space

__all__ = ["tune_trial", "CHECKPOINT_FILE", "META_FILE"]

CHECKPOINT_FILE = "trainer.pt"
META_FILE = "meta.json"

# ------------------------------------------------------------------------------ Ray Tune trainable
def objective_metrics(objective: Any, row: Mapping[str, Any]) -> dict[str, float]:
    """``objective`` (single) or ``objective_0``, ``objective_1``, ... (multi) from an epoch's row."""
    value = objective(row)
    if objective.multi:
        return {f"objective_{i}": float(v) for i, v in enumerate(value)}
    return {"objective": float(value)}


def tune_trial(config: dict[str, Any], *, space_spec: Mapping[str, Any], objective_text: str,
               overrides: Mapping[str, Any], threads: int = 1, capture_dir: str | None = None) -> None:  # fmt: skip
    """Ray Tune function trainable: one trial, reported (with a checkpoint) after every epoch."""
    from ray import tune  # heavy: ray (the trainable runs in a Ray worker)

    torch.set_num_threads(max(1, int(threads)))
    space = parse_space(space_spec)
    objective = parse_objective(objective_text)
    cfg = space.resolve(config, **overrides)
    trainer = TrainingRun(cfg, gn_scopes=objective.gn_scopes)
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
                "optimizer_lr": trainer.optimizer.param_groups[0]["lr"],
                "optimizer_weight_decay": trainer.optimizer.param_groups[0]["weight_decay"],
            })  # fmt: skip
    while trainer.epoch < cfg.epochs:  # the scheduler grants the budget: no stopping criterion in a live trial
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


def _capture(directory: str, name: str, trainer: TrainingRun, info: dict[str, Any]) -> None:
    """Test hook: keep the model weights and facts of a save or a restore under ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}, out / f"{name}.pt")
    (out / f"{name}.json").write_text(json.dumps(info))
