"""Live hyper-parameter searches on Ray Tune, recorded in the gnsel store, and the selection report.

:func:`run_search` searches a :class:`~gnsel.tune.space.SearchSpace` for one objective with one
algorithm:

============  =====================================================================================
grid          every point of the (finite) space once: one ``grid_search`` over deduplicated points
random        ``BasicVariantGenerator`` (seeded) with ``num_samples = trials``
tpe           ``OptunaSearch`` (TPE, seeded; a define-by-run space with the architecture conditions;
              multi-objective with metric and mode lists)
hyperband     random search + ``HyperBandScheduler`` over epochs
asha          random search + ``ASHAScheduler`` over epochs
bohb          ``TuneBOHB`` (ConfigSpace with conditions) + ``HyperBandForBOHB``
pbt           random initial population + ``PopulationBasedTraining`` perturbing lr and weight decay,
              exchanging real checkpoints (weights, optimiser, schedule, trajectory GN)
============  =====================================================================================

(each algorithm is a module of :mod:`gnsel.tune.algorithms`, which returns its Tune plan).

Every trial reports each epoch (``ray.tune.report`` with a checkpoint): the epoch's row (losses,
accuracies, GN on the probe set when the objective uses it, ``measure_seconds`` its cost) and the
objective (``objective``, or ``objective_0``, ``objective_1``, ... for a list). A callback on the
driver (:class:`~gnsel.tune.store_callback.StoreCallback`) writes every trial into the gnsel store:
one run per trial configuration (a trial that PBT restarts with a new configuration becomes a new
run, its parent recorded in ``extra``), each epoch as it is reported, a failed trial (divergence or
any error) marked failed with its reason while the search goes on.

Results live under ``storage/name``; ``resume=True`` continues an interrupted search with
``Tuner.restore(path, trainable, resume_errored=True)``, sound after ``kill -9`` at any moment
(:mod:`gnsel.tune.resume`): gnsel's own files are written atomically in ``storage/name/gnsel/``,
where Tune never copies; Tune saves its state at every step of its loop (``TUNE_GLOBAL_CHECKPOINT_S=0``
unless set) and at the end of every step in which a trial changed gnsel copies that state, consistent
and fsynced, into a snapshot there; a resume puts the snapshot in place of Tune's own copies (which a
kill may have torn), keeps two checkpoints per trial beyond what the algorithm needs (so the one a
snapshot names still exists), checks that Tune really restored every trial, and refuses with one line
(naming the folder and how to start afresh) when no sound state is left. A resumed search so holds
every trial once: finished trials stay finished (the store has them; a trial Tune could not restore
from a lost checkpoint but the store has finished counts as finished), an unfinished trial continues
from its last checkpoint (an epoch whose checkpoint Tune had not yet registered runs again, and counts
once). Errored trials resume from their last checkpoint too (a diverged one diverges again within an
epoch).

What the search selects is :func:`gnsel.tune.selection.select` over its trials: among the trials at
one budget (the largest epoch any usable trial reached; a trial a scheduler stopped earlier is no
candidate), the least objective or the knee of the Pareto front.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..store import Store
from .algorithms import LiveSettings, check_search
from .objectives import parse_objective
from .resume import SEARCH_FILE as _SEARCH_NAME
from .resume import (
    GNSEL_DIR, LEGACY_SEARCH_FILE, ResumeError, load_trials, read_search, restore_state, snapshot_dir, write_search,
)  # fmt: skip
from .selection import Selection, TrialRecord, select
from .space import SearchSpace, load_space

__all__ = [
    "SEARCH_FILE", "ResumeError", "SearchResult", "quiet_ray_noise", "ray_session", "run_search", "search_name",
]  # fmt: skip

SEARCH_FILE = f"{GNSEL_DIR}/{_SEARCH_NAME}"  # the search's settings, relative to its experiment folder
_FORMAT = 2  # searches whose driver keeps snapshots of Tune's state (gnsel.tune.resume)
_TUNE_ENV = {
    # Tune saves its state at every step of its loop, into its local staging folder: the snapshot gnsel takes
    # at the end of a step in which a trial changed is then that step's state (a resume loses nothing finished)
    "TUNE_GLOBAL_CHECKPOINT_S": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",  # ... which is on purpose
    "RAY_AIR_NEW_OUTPUT": "0",  # verbose=0 means quiet
}
_SPARE_CHECKPOINTS = 2  # kept per trial beyond the algorithm's need: the one the last snapshot names still exists


class _RayNoise(logging.Filter):
    """Drops three of Ray's log records that report nothing wrong, so that a search that succeeds looks like one.

    * ``ray/_private/authentication/authentication_token_setup.py`` (``_warn_token_auth_enabled``): a new local
      cluster with ``RAY_AUTH_MODE`` unset gets token authentication, and Ray warns that it did. gnsel keeps
      that default. (Setting the variable would not do: Ray reads it once, when ``ray._raylet`` is imported.)
    * ``ray/train/_internal/syncer.py`` (``_BackgroundSyncer._launch_sync_process``) and
      ``ray/tune/execution/experiment_state.py`` (``sync_up_experiment_state``, ``wait_for_sync``): Tune
      copies its staging folder to the experiment folder from a thread while the next step saves its state
      there; a searcher writes ``.<uuid>-tmp-<name>`` and renames it (``Searcher.save_to_dir``,
      ``tune.utils.util._atomic_save``), and a copy that listed the temp file fails with ``FileNotFoundError``
      and a traceback. The next step copies again, and a resume restores from gnsel's snapshots, not from
      these copies. Only that error is dropped: any other failure of a copy is still logged.
    """

    LOGGERS = ("ray._private.authentication.authentication_token_setup", "ray.train._internal.syncer",
               "ray.tune.execution.experiment_state")  # fmt: skip

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if msg.startswith("Token authentication is enabled for this Ray cluster"):
            return False
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, FileNotFoundError) and "-tmp-" in str(exc):
            return False
        return not (msg.startswith("Last sync command failed") and "FileNotFoundError" in msg and "-tmp-" in msg)


_NOISE = _RayNoise()


def quiet_ray_noise() -> None:
    """Install :class:`_RayNoise` on Ray's loggers (once; harmless to repeat)."""
    for name in _RayNoise.LOGGERS:
        logger = logging.getLogger(name)
        if _NOISE not in logger.filters:
            logger.addFilter(_NOISE)


def search_name(algorithm: str, objective: str) -> str:
    """Default experiment name: ``<algorithm>-<objective as a slug>``."""
    words = objective.lower().replace("<=", " le ").replace(">=", " ge ").replace("|", " st ").replace("&", " and ")
    slug = re.sub(r"[^a-z0-9]+", "_", words).strip("_")
    return f"{algorithm}-{slug}"


def __getattr__(name: str) -> Any:
    # Searches started by gnsel 0.2.0 pickled their callback as gnsel.tune.live.StoreCallback in tuner.pkl;
    # this name lets `--resume` restore them.
    if name == "StoreCallback":
        from .store_callback import StoreCallback  # heavy: ray (only when an old search is restored)

        return StoreCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------------ searching
@dataclass
class SearchResult:
    """A finished (or interrupted) search: where it is, its trials and its selection."""

    name: str
    path: Path
    algorithm: str
    objective: str
    records: list[TrialRecord]
    selection: Selection
    wall_seconds: float
    interrupted: bool = False


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if old[k] is None:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)


def run_search(
    space: SearchSpace | str | os.PathLike | Mapping[str, Any],
    *,
    algorithm: str,
    objective: str,
    trials: int = 8,
    epochs: int | None = None,
    time_budget: float | None = None,
    storage: str | os.PathLike = "gnsel-out/tune",
    store: str | os.PathLike = "gnsel-out/tune.sqlite",
    name: str | None = None,
    address: str | None = None,
    resume: bool = False,
    seed: int = 0,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    max_concurrent: int | None = None,
    pbt: Mapping[str, Any] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    callbacks: Sequence[Any] = (),
    capture_dir: str | os.PathLike | None = None,
    verbose: int = 0,
) -> SearchResult:
    """Run (or with ``resume`` continue) one search; every check happens before Ray starts.

    ``storage`` holds Tune's results and the trials' checkpoints: on a cluster (``address``) it must be
    a path every node reaches (a shared file system); the store is written by this driver alone.

    ``options`` holds each algorithm's own options by name; ``pbt`` is ``options["pbt"]``: ``interval``
    (epochs between perturbations; default ``epochs // 4``), ``quantile_fraction`` (0.25) and ``synch``
    (False). ``capture_dir`` is a test hook: the trainable keeps the weights of every checkpoint it
    saves and restores there.
    """
    sp = space if isinstance(space, SearchSpace) else load_space(space)
    obj = parse_objective(objective)
    alg = check_search(sp, algorithm, obj)
    if trials < 1:
        raise ValueError(f"trials must be a positive integer, got {trials}")
    epochs = int(epochs if epochs is not None else sp.fixed.get("epochs", 20))
    if epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs}")
    if time_budget is not None and time_budget <= 0:
        raise ValueError(f"time budget must be positive seconds, got {time_budget}")
    if cpus_per_trial <= 0:
        raise ValueError(f"cpus per trial must be positive, got {cpus_per_trial}")
    overrides = {
        "epochs": epochs,
        "measure_gn": bool(sp.fixed.get("measure_gn", False)) or bool(obj.gn_scopes),
        "trajectory_gn": bool(sp.fixed.get("trajectory_gn", False)) or obj.trajectory_gn,
    }
    sp.resolve({n: p.candidates()[0] for n, p in sp.params.items()}, **overrides).validate()
    name = name or search_name(algorithm, obj.text)
    storage = Path(storage).expanduser().resolve()
    path = storage / name
    settings = {"space": sp.spec, "algorithm": algorithm, "objective": obj.text, "trials": trials,
                "epochs": epochs, "seed": seed}  # fmt: skip
    saved = _check_experiment(path, settings, resume)
    store_path = str(Path(store).expanduser().resolve())
    Store(store_path).close()  # create it (and fail) before Ray starts
    restore_ids: set[str] | None = None
    if resume and ((path / "tuner.pkl").exists() or snapshot_dir(path).exists()):
        if saved is not None:
            write_search(path, saved)  # a legacy search file moves where Tune does not copy it
        snapshots = saved is not None and int(saved.get("format", 1)) >= _FORMAT
        restore_ids = restore_state(path, snapshots=snapshots)  # ResumeError: one line, nothing started

    from ray import tune  # heavy: ray

    from .store_callback import StoreCallback, expect_trials  # heavy: ray (a ray.tune.Callback)

    quiet_ray_noise()
    opts = {**(options or {}), **({"pbt": pbt} if pbt is not None else {})}
    t0 = time.perf_counter()
    with ray_session(address):
        trainable = tune.with_resources(
            tune.with_parameters(
                _trial_entry, space_spec=sp.spec, objective_text=obj.text, overrides=overrides,
                threads=max(1, int(cpus_per_trial)), capture_dir=None if capture_dir is None else str(capture_dir),
            ),
            {"cpu": cpus_per_trial, "gpu": gpus_per_trial},
        )  # fmt: skip
        callback = StoreCallback(
            store_path, sp.spec, overrides, {"search": name, "algorithm": algorithm, "objective": obj.text,
                                             "experiment": str(path)},
        )  # fmt: skip
        with _env(**_TUNE_ENV):
            if restore_ids is not None:
                tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
                expect_trials(str(path), restore_ids)  # Tune must hold them all, not start afresh
            else:
                path.mkdir(parents=True, exist_ok=True)
                write_search(path, {**settings, "format": _FORMAT})
                plan = alg.live(sp, obj, LiveSettings(trials, epochs, seed, dict(opts.get(algorithm) or {})))
                assert plan is not None  # check_search returns algorithms with a live path
                if max_concurrent:
                    plan.tune_config["max_concurrent_trials"] = max_concurrent
                tuner = tune.Tuner(
                    trainable,
                    param_space=plan.param_space,
                    tune_config=tune.TuneConfig(
                        **plan.tune_config, time_budget_s=time_budget, reuse_actors=True,
                    ),
                    run_config=tune.RunConfig(
                        name=name, storage_path=str(storage), callbacks=[callback, *callbacks], verbose=verbose,
                        failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
                        checkpoint_config=tune.CheckpointConfig(
                            num_to_keep=plan.keep_checkpoints + _SPARE_CHECKPOINTS),
                    ),
                )  # fmt: skip
            try:
                tuner.fit()
            finally:
                expect_trials(None)
    wall = _add_wall(path, time.perf_counter() - t0)  # all sessions of the search (first run and resumes)
    records = load_trials(path, sp, store_path)
    selection = select(records, obj, algorithm=algorithm, search=name, wall_seconds=wall)
    interrupted = any(r.status in ("PENDING", "RUNNING") for r in records)
    return SearchResult(name, path, algorithm, obj.text, records, selection, wall, interrupted)


@contextlib.contextmanager
def ray_session(address: str | None = None, **init: Any) -> Iterator[None]:
    """Ray for the duration: the running instance, a cluster at ``address``, or a new local one (shut down after)."""
    import ray  # heavy: ray

    quiet_ray_noise()
    if ray.is_initialized():
        yield
        return
    if address:
        ray.init(address=address, log_to_driver=False, **init)
    else:
        ray.init(include_dashboard=False, log_to_driver=False, **init)
    try:
        yield
    finally:
        ray.shutdown()


def _trial_entry(config: dict[str, Any], **kwargs: Any) -> None:
    """The function trainable (module-level, so Ray pickles it by reference)."""
    from .trainable import tune_trial  # heavy: torch training, imported in the trial's process

    tune_trial(config, **kwargs)


def _add_wall(path: Path, seconds: float) -> float:
    """Record a session's wall time in the search file (atomically); the search's total so far."""
    saved = read_search(path) or {}
    saved["wall_seconds"] = [*saved.get("wall_seconds", []), seconds]
    write_search(path, saved)
    return float(sum(saved["wall_seconds"]))


def _check_experiment(path: Path, settings: Mapping[str, Any], resume: bool) -> dict[str, Any] | None:
    """No silent mix-ups: a new search needs a free name; a resumed one its original settings (returned)."""
    started = (path / "tuner.pkl").exists() or snapshot_dir(path).exists()
    if not resume:
        if started or (path / SEARCH_FILE).exists() or (path / LEGACY_SEARCH_FILE).exists():
            raise ValueError(
                f"a search already exists at {path}: pass --resume to continue it, or choose another --name or --storage"
            )
        return None
    saved = read_search(path)  # ResumeError if damaged
    if saved is not None:
        diff = [k for k in settings if saved.get(k) != settings[k]]
        if diff:
            raise ValueError(
                f"cannot resume {path} with different settings: {', '.join(diff)} changed "
                f"(it was started with {', '.join(f'{k}={saved.get(k)!r}' for k in diff if k != 'space')}"
                f"{'; the space file changed' if 'space' in diff else ''})"
            )
    return saved
