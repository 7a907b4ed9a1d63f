"""Ray Tune's HyperBand schedulers, with paused trials that no bracket will resume stopped instead of left,
and the finished trials of a restored search kept out of the brackets.

A HyperBand bracket pauses a trial at a milestone until the rest of the bracket gets there, and stops
the paused trials when it is done (``_Bracket.cleanup_full``) or when they lose a halving. Both only
stop a trial whose status is already ``PAUSED``; a trial still saving the checkpoint of its pause is
skipped, becomes ``PAUSED`` a moment later, and is then in no bracket's plan: Tune waits for it
forever (seen in gnsel's tests, 1 run in 4, at random: it depends on when the checkpoint lands). These
subclasses stop such a trial at the next scheduling step, which is what the bracket meant to do; a run
that never meets the race schedules exactly as with Ray's classes.

Tune saves no scheduler state: a restored search unpickles the scheduler of ``tuner.pkl``, as it was
before the first trial, and adds every restored trial to it (``TuneController.add_trial``), finished ones
included. In a bracket a finished trial never reaches the next milestone, so the bracket never halves and
its paused trials wait forever (``gnsel tune --resume`` hung after a kill). Finished trials therefore
join no bracket; the unfinished ones fill new brackets and go on from their checkpoints.

Importing this module imports Ray: the algorithms import it inside their ``live()``.
"""

from __future__ import annotations

from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import HyperBandForBOHB as _RayHyperBandForBOHB
from ray.tune.schedulers import HyperBandScheduler as _RayHyperBandScheduler

__all__ = ["HyperBandForBOHB", "HyperBandScheduler", "orphaned_trials"]


def orphaned_trials(scheduler: Any) -> list[Trial]:
    """Paused trials that no bracket of ``scheduler`` will resume: out of their bracket's live trials
    (they lost a halving), or in a bracket that is finished."""
    out = []
    for band in getattr(scheduler, "_hyperbands", []):
        for bracket in band:
            if bracket is None:
                continue
            live = set(bracket.current_trials())
            done = bracket.finished()
            for trial in getattr(bracket, "_all_trials", []):
                if trial.status == Trial.PAUSED and not trial.is_saving and (done or trial not in live):
                    out.append(trial)
    return out


class _StopOrphans:
    def choose_trial_to_run(self, tune_controller: Any, *args: Any, **kwargs: Any) -> Trial | None:
        """Stop the orphaned paused trials, then choose as Ray does."""
        for trial in orphaned_trials(self):
            tune_controller.stop_trial(trial)
        return super().choose_trial_to_run(tune_controller, *args, **kwargs)  # type: ignore[misc]


class _SkipFinished:
    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        """A finished trial (one a restored search brings back) joins no bracket; any other as with Ray."""
        if trial.status in (Trial.TERMINATED, Trial.ERROR):
            return
        super().on_trial_add(tune_controller, trial)  # type: ignore[misc]


class HyperBandScheduler(_SkipFinished, _StopOrphans, _RayHyperBandScheduler):
    """Ray's ``HyperBandScheduler``; orphaned paused trials are stopped, restored finished ones left out."""


class HyperBandForBOHB(_SkipFinished, _StopOrphans, _RayHyperBandForBOHB):
    """Ray's ``HyperBandForBOHB``; orphaned paused trials are stopped, restored finished ones left out."""
