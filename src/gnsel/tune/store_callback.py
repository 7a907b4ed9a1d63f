"""The Ray Tune callback that records a live search in the gnsel store, from the driver.

One run per trial configuration (a trial that PBT restarts with a new configuration becomes a new
run, its parent recorded in ``extra``), each epoch as it is reported, a failed trial (divergence or
any error) marked failed with its reason while the search goes on.

It also keeps gnsel's copies of Tune's experiment state (:class:`~gnsel.tune.resume.StateSnapshots`, at the
end of each step in which a trial changed) and, in a resumed search, checks at the first step that Tune
holds every trial of the state it was restored from (:func:`expect_trials`): Tune starts an experiment
afresh, with one trial, when it cannot load its state, and that must not pass for a resume.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ray.tune import Callback  # heavy: ray (this module is imported only where a search runs)

from ..store import Store
from ..training import ROW_KEYS
from .resume import ResumeError, StateSnapshots
from .selection import COST_KEYS, error_text
from .space import SearchSpace, load_space

__all__ = ["StoreCallback", "expect_trials"]

_PROVENANCE = ("parent_trial_id", "parent_run_id", "start_epoch")
_LOST_CHECKPOINT = "Could not recover from checkpoint"  # ray.tune.trainable.Trainable.restore
_EXPECTED: dict[str, Any] = {}  # the resume in progress in this driver: {"path": ..., "trials": ...}


def expect_trials(path: str | None, trial_ids: set[str] | None = None) -> None:
    """The trials Tune must hold at the first step of the resumed search at ``path`` (None: clear)."""
    _EXPECTED.clear()
    if path is not None and trial_ids:
        _EXPECTED.update(path=path, trials=frozenset(trial_ids))


def _row_keys() -> list[str]:
    """The keys of a reported result that go into the store's epoch rows."""
    return [k for k in ROW_KEYS if k != "epoch"] + ["objective"] + [f"objective_{i}" for i in range(16)]


class StoreCallback(Callback):
    """Writes every trial of a search into the gnsel store, from the driver (one writer, no races)."""

    def __init__(self, store_path: str, space_spec: Mapping[str, Any], overrides: Mapping[str, Any],
                 info: Mapping[str, Any]):  # fmt: skip
        self.store_path, self.space_spec = store_path, dict(space_spec)
        self.overrides, self.info = dict(overrides), dict(info)
        self.row_keys = set(_row_keys())
        self._reset()

    def _reset(self) -> None:
        self._runs: dict[str, str] = {}  # trial id -> its current run id
        self._meta: dict[str, dict[str, Any]] = {}  # run id -> extra
        self._store: Store | None = None
        self._space: SearchSpace | None = None
        self._snapshots: StateSnapshots | None = StateSnapshots()
        self._checked = False

    def __getstate__(self) -> dict[str, Any]:  # pickled into tuner.pkl: settings only
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def _ready(self) -> tuple[Store, SearchSpace]:
        if self._store is None:
            self._store, self._space = Store(self.store_path), load_space(self.space_spec)
        return self._store, self._space

    def _open(self, trial: Any, config: Mapping[str, Any]) -> str:
        """The trial's run for ``config``: registered and claimed the first time it is seen."""
        store, space = self._ready()
        cfg = space.resolve(config, **self.overrides)
        rid = cfg.run_id()
        previous = self._runs.get(trial.trial_id)
        if previous == rid:
            return rid
        if previous is not None:  # PBT restarted the trial with a new configuration
            self._finish(previous, ended="pbt_exploit", replaced_by=rid)
        status = store.run_status(rid)
        if status is None:
            store.register_run(cfg.to_dict())
        if status in (None, "pending", "failed"):
            # A failed trial resumed from its checkpoint keeps the epochs it had (claiming clears them).
            kept = store.epochs_frame([rid]) if status == "failed" and trial.checkpoint is not None else None
            store.claim_run(rid)
            if kept is not None and len(kept):
                store.add_epochs(rid, [{k: v for k, v in row.items() if k == "epoch" or not math.isnan(v)}
                                       for row in kept.drop(columns=["run_id"]).to_dict("records")])
        # 'running': a trial resumed after an interruption (its earlier epochs are kept);
        # 'done': the same configuration trained before (identical on the CPU), rows rewritten alike.
        self._runs[trial.trial_id] = rid
        self._meta[rid] = {**self.info, "trial_id": trial.trial_id}
        return rid

    def _finish(self, rid: str, **more: Any) -> None:
        store, _ = self._ready()
        rows = store.epochs_frame([rid])
        seconds = float(sum(rows[k].fillna(0).sum() for k in COST_KEYS if k in rows.columns))
        last = int(rows["epoch"].max()) if len(rows) else 0
        store.finish_run(rid, seconds, {**self._meta.get(rid, {}), "epochs": last, **more})

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if self._checked:
            return
        self._checked = True
        expected = _EXPECTED.get("trials")
        if expected:
            missing = expected - {t.trial_id for t in trials}
            if missing:
                self._snapshots = None  # what Tune holds now is not the search: copy none of it
                path = _EXPECTED["path"]
                raise ResumeError(
                    f"Tune did not restore the search at {path} ({len(missing)} of its {len(expected)} trials are "
                    f"missing; see its log above) and nothing was run; delete {path} to start the search afresh "
                    "(the store keeps its trials), or choose another --name"
                )

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self._snapshots is not None:
            self._snapshots.on_step(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._snapshots is not None:
            self._snapshots.publish()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.trial_id not in self._runs:
            self._open(trial, trial.config)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        store, _ = self._ready()
        rid = self._open(trial, result.get("config", trial.config))
        self._meta[rid].update({k: result[k] for k in _PROVENANCE if k in result})
        row = {k: v for k, v in result.items() if k in self.row_keys}
        store.add_epochs(rid, [(int(result["epoch"]), row)])

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        rid = self._runs.pop(trial.trial_id, None)
        if rid is None:  # completed without a result in this driver (e.g. resumed at its last epoch)
            rid = self._open(trial, (trial.last_result or {}).get("config", trial.config))
            self._runs.pop(trial.trial_id, None)
        last = (trial.last_result or {}).get("epoch")
        epochs = int(self.overrides.get("epochs", 0))
        self._finish(rid, stopped_early=bool(last is not None and int(last) < epochs))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        store, _ = self._ready()
        rid = self._runs.pop(trial.trial_id, None) or self._open(trial, trial.config)
        self._runs.pop(trial.trial_id, None)
        if store.run_status(rid) == "done" and _LOST_CHECKPOINT in error_text(trial):
            return  # it finished before a kill; only its checkpoint is gone: a finished trial stays finished
        store.fail_run(rid, f"{error_text(trial)}\n[trial {trial.trial_id} of search {self.info.get('search')}]")
