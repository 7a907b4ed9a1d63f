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

Every trial reports each epoch (``ray.tune.report`` with a checkpoint): the epoch's row (losses,
accuracies, GN on the probe set when the objective uses it, ``measure_seconds`` its cost) and the
objective (``objective``, or ``objective_0``, ``objective_1``, ... for a list). A callback on the
driver writes every trial into the gnsel store: one run per trial configuration (a trial that PBT
restarts with a new configuration becomes a new run, its parent recorded in ``extra``), each epoch
as it is reported, a failed trial (divergence or any error) marked failed with its reason while the
search goes on.

Results live under ``storage/name``; ``resume=True`` continues an interrupted search with
``Tuner.restore(path, trainable, resume_errored=True)``. The experiment state is saved at every step
of the Tune loop (``TUNE_GLOBAL_CHECKPOINT_S=0`` unless set) and, with one checkpoint kept per trial,
Tune waits for it to reach storage after every checkpoint; so even a killed driver neither loses nor
repeats finished trials. An unfinished trial continues from its last registered checkpoint: Tune
registers a reported checkpoint one round trip after the result, so a kill in between runs that one
epoch again (its row then appears twice in the trial's results, once in the store). Errored trials
resume from their last checkpoint too (a diverged one diverges again within an epoch).

:func:`select` turns a search into a :class:`Selection`: the selected trial (least objective at its
last reported epoch; for a multi-objective the Pareto front and ``pick_from_front``), its test
accuracy and gap, its regret against the best test accuracy of the search, and the compute used.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ray.tune import Callback

from ..store import Store
from .objectives import Objective, parse_objective, pareto_front, pick_from_front
from .space import SearchSpace, load_space

__all__ = [
    "SEARCH_FILE", "SearchResult", "Selection", "SelectionReport", "TrialRecord",
    "StoreCallback", "load_records", "ray_session", "run_search", "select", "search_name",
]  # fmt: skip

SEARCH_FILE = "gnsel_search.json"
# Keeping one checkpoint per trial makes Tune save (and wait for) the experiment state after every
# checkpoint, so the state on storage never lags the trials; PBT keeps a few, since a donor's
# checkpoint must outlive the exploit that copies it.
_KEEP = {"pbt": 4}
_TUNE_ENV = {
    "TUNE_GLOBAL_CHECKPOINT_S": "0",  # save the experiment state at every step of the Tune loop
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",  # ... which is on purpose
    "RAY_AIR_NEW_OUTPUT": "0",  # verbose=0 means quiet
}
COST_KEYS = ("train_seconds", "eval_seconds", "measure_seconds")
_PROVENANCE = ("parent_trial_id", "parent_run_id", "start_epoch")


def search_name(algorithm: str, objective: str) -> str:
    """Default experiment name: ``<algorithm>-<objective as a slug>``."""
    slug = re.sub(r"[^a-z0-9]+", "_", objective.lower()).strip("_")
    return f"{algorithm}-{slug}"


# ------------------------------------------------------------------------------------ records
@dataclass
class TrialRecord:
    """One trial of a search: its status, active hyper-parameters and every reported row (in order)."""

    trial_id: str
    status: str
    config: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""

    @property
    def run_ids(self) -> list[str]:
        return list(dict.fromkeys(r["run_id"] for r in self.rows if r.get("run_id")))

    @property
    def last(self) -> dict[str, Any] | None:
        return self.rows[-1] if self.rows else None


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


@dataclass
class Selection:
    """What one search selected and what it cost (one row of the selection report)."""

    search: str  # experiment name
    algorithm: str
    objective: str
    trials: int
    failed: int  # trials that errored (divergence or other errors)
    selected_trial: str | None
    selected_run: str | None  # its gnsel store run id (the configuration of its last reported epoch)
    selected_config: dict[str, Any]  # the searched hyper-parameters that apply to it
    selected_epoch: int | None  # its last reported epoch (earlier when a scheduler stopped it)
    objective_value: float | list[float] | None
    test_acc: float  # of the selected trial at that epoch
    gap_acc: float  # train_acc - test_acc there
    best_test_acc: float  # best test accuracy of any non-failed trial at its last reported epoch
    regret: float  # best_test_acc - test_acc
    epochs: int  # epochs trained by all trials together (every reported row)
    seconds: float  # their compute: training + evaluation + GN measurement
    gn_seconds: float  # of which GN measurement on the probe sets
    wall_seconds: float = math.nan  # wall time of the search (all its sessions)
    front: list[str] = field(default_factory=list)  # Pareto front (trial ids) of a multi-objective

    def flat(self) -> dict[str, Any]:
        """A CSV row: lists and dicts as JSON text."""
        out = asdict(self)
        for k in ("selected_config", "front", "objective_value"):
            out[k] = json.dumps(out[k], sort_keys=True)
        return out


def select(records: Sequence[TrialRecord], objective: Objective | str, *, algorithm: str = "",
           search: str = "", wall_seconds: float = math.nan) -> Selection:  # fmt: skip
    """The trial a search selects: least objective at its last reported epoch (knee of the front if multi).

    Failed trials and trials without a finite objective are never selected, nor count for the best test
    accuracy; the compute counts every reported epoch of every trial.
    """
    obj = parse_objective(objective) if isinstance(objective, str) else objective
    usable, values = [], []
    for r in records:
        if r.status == "ERROR" or r.last is None:
            continue
        try:
            v = obj(r.last)
        except KeyError:
            continue
        vt = v if isinstance(v, tuple) else (v,)
        if all(_finite(x) for x in vt):
            usable.append(r)
            values.append(vt)
    chosen: TrialRecord | None = None
    front: list[str] = []
    if usable:
        if obj.multi:
            front = [usable[i].trial_id for i in pareto_front(values)]
            k = pick_from_front(values)
            chosen = usable[k] if k is not None else None
        else:
            chosen = usable[min(range(len(usable)), key=lambda i: values[i][0])]
    best = max((float(r.last["test_acc"]) for r in usable), default=math.nan)
    all_rows = [row for r in records for row in r.rows]
    value: Any = None
    if chosen is not None:
        v = values[usable.index(chosen)]
        value = [float(x) for x in v] if obj.multi else float(v[0])
    last = chosen.last if chosen is not None else {}
    test = float(last.get("test_acc", math.nan))
    return Selection(
        search=search, algorithm=algorithm, objective=obj.text,
        trials=len(records), failed=sum(r.status == "ERROR" for r in records),
        selected_trial=chosen.trial_id if chosen else None,
        selected_run=last.get("run_id") if chosen else None,
        selected_config=dict(chosen.config) if chosen else {},
        selected_epoch=int(last["epoch"]) if chosen else None,
        objective_value=value,
        test_acc=test, gap_acc=float(last.get("gap_acc", math.nan)),
        best_test_acc=best, regret=best - test if chosen else math.nan,
        epochs=len(all_rows),
        seconds=sum(float(row.get(k) or 0.0) for row in all_rows for k in COST_KEYS),
        gn_seconds=sum(float(row.get("measure_seconds") or 0.0) for row in all_rows),
        wall_seconds=wall_seconds, front=front,
    )  # fmt: skip


class SelectionReport:
    """Selections of several searches: a Rich table and a CSV (rows keyed by search name)."""

    COLUMNS = (
        ("search", "search"), ("objective", "objective"), ("selected_config", "selected"),
        ("test_acc", "test acc"), ("gap_acc", "gap"), ("regret", "regret"), ("trials", "trials"),
        ("failed", "failed"), ("epochs", "epochs"), ("seconds", "compute s"), ("gn_seconds", "GN s"),
        ("wall_seconds", "wall s"),
    )  # fmt: skip

    def __init__(self, selections: Sequence[Selection] = ()):
        self.selections = list(selections)

    def add(self, selection: Selection) -> None:
        self.selections.append(selection)

    def frame(self):
        import pandas as pd

        return pd.DataFrame([s.flat() for s in self.selections], columns=list(Selection.__dataclass_fields__))

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write (merging with an existing file: a search's row is replaced by its new one)."""
        import pandas as pd

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        df = self.frame()
        if path.exists() and path.stat().st_size:
            old = pd.read_csv(path)
            if "search" in old.columns:
                old = old[~old["search"].isin(df["search"])]
                df = pd.concat([old, df], ignore_index=True) if len(old) else df
        df.to_csv(path, index=False)
        return path

    def table(self, title: str = "Selected models"):
        from rich.markup import escape
        from rich.table import Table

        t = Table(title=title)
        for _, head in self.COLUMNS:
            t.add_column(head, justify="left" if head in ("search", "objective", "selected") else "right")
        for s in self.selections:
            cells = []
            for key, _ in self.COLUMNS:
                v = getattr(s, key)
                if key == "selected_config":
                    v = " ".join(f"{k.removeprefix('model_kwargs.')}={_short(x)}" for k, x in v.items()) or "-"
                    if s.front:
                        v += f" ({len(s.front)} on front)"
                elif isinstance(v, float):
                    v = f"{v:.3f}" if key in ("test_acc", "gap_acc", "regret") else f"{v:.2f}"
                cells.append(str(v))
            t.add_row(*(escape(c) for c in cells))
        return t


def _short(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _row_config(row: Mapping[str, Any]) -> dict[str, Any]:
    cfg = row.get("config")
    return dict(cfg) if isinstance(cfg, Mapping) else {}


def load_records(path: str | os.PathLike, space: SearchSpace) -> list[TrialRecord]:
    """Every trial of the experiment at ``path`` with its reported rows (read from each ``result.json``)."""
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(path))
    records = []
    for trial in analysis.trials:
        rows = []
        result_file = Path(trial.path) / "result.json"
        if result_file.is_file():
            for line in result_file.read_text().splitlines():
                if line.strip():
                    rows.append(json.loads(line))
        config = _row_config(rows[-1]) if rows else dict(trial.config)
        error = ""
        if trial.status == "ERROR":
            error = _error_text(trial)
        records.append(TrialRecord(trial.trial_id, trial.status, space.active(config), rows, error))
    return records


def _error_text(trial: Any) -> str:
    """The reason a trial failed: ``diverged: ...`` for a divergence, else the error's traceback."""
    text = ""
    with contextlib.suppress(Exception):
        text = str(trial.get_error() or "")
    if not text and trial.error_file and Path(trial.error_file).is_file():
        text = Path(trial.error_file).read_text()
    m = re.search(r"DivergenceError: (.*)", text)
    if m:
        return f"diverged: {m.group(1).strip()}"
    return text.strip() or "trial failed (no error message)"


# ------------------------------------------------------------------------------------ the store
def _row_keys() -> list[str]:
    """The keys of a reported result that go into the store's epoch rows."""
    from ..train import ROW_KEYS

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
            store.claim_run(rid)
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
        store.fail_run(rid, f"{_error_text(trial)}\n[trial {trial.trial_id} of search {self.info.get('search')}]")


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


def _plan(space: SearchSpace, algorithm: str, objective: Objective, trials: int, epochs: int, seed: int,
          pbt: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    """TuneConfig keyword arguments and the param_space for ``algorithm``."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    metrics = [f"objective_{i}" for i in range(len(objective.parts))] if objective.multi else ["objective"]
    single = {"metric": "objective", "mode": "min"} if not objective.multi else {}
    kw: dict[str, Any] = {"num_samples": trials, **single}
    param_space = space.tune_space(algorithm)
    if algorithm == "grid":
        kw.update(num_samples=1, search_alg=BasicVariantGenerator(random_state=seed))
    elif algorithm in ("random", "hyperband", "asha", "pbt"):
        kw["search_alg"] = BasicVariantGenerator(random_state=seed)
    if algorithm == "tpe":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        mode: Any = ["min"] * len(metrics) if objective.multi else "min"
        kw["search_alg"] = OptunaSearch(
            space=space.optuna_space(), metric=metrics if objective.multi else metrics[0], mode=mode,
            sampler=optuna.samplers.TPESampler(seed=seed),
        )  # fmt: skip
        kw.pop("metric", None), kw.pop("mode", None)
    elif algorithm == "hyperband":
        from ray.tune.schedulers import HyperBandScheduler

        kw["scheduler"] = HyperBandScheduler(time_attr="training_iteration", max_t=epochs, reduction_factor=3)
    elif algorithm == "asha":
        from ray.tune.schedulers import ASHAScheduler

        kw["scheduler"] = ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=1, reduction_factor=3)
    elif algorithm == "bohb":
        from ray.tune.schedulers import HyperBandForBOHB
        from ray.tune.search.bohb import TuneBOHB

        kw["search_alg"] = TuneBOHB(space=space.configspace(seed), metric="objective", mode="min", seed=seed)
        kw["scheduler"] = HyperBandForBOHB(time_attr="training_iteration", max_t=epochs, reduction_factor=3)
        param_space = {}  # the searcher holds the space (with the architecture conditions)
    elif algorithm == "pbt":
        from ray.tune.schedulers import PopulationBasedTraining

        kw["scheduler"] = PopulationBasedTraining(
            time_attr="training_iteration",
            perturbation_interval=int(pbt.get("interval", max(1, epochs // 4))),
            hyperparam_mutations=space.pbt_mutations(),
            quantile_fraction=float(pbt.get("quantile_fraction", 0.25)),
            synch=bool(pbt.get("synch", False)),
        )  # fmt: skip
    return {"tune_config": kw, "param_space": param_space}


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
    callbacks: Sequence[Any] = (),
    capture_dir: str | os.PathLike | None = None,
    verbose: int = 0,
) -> SearchResult:
    """Run (or with ``resume`` continue) one search; every check happens before Ray starts.

    ``storage`` holds Tune's results and the trials' checkpoints: on a cluster (``address``) it must be
    a path every node reaches (a shared file system); the store is written by this driver alone.

    ``pbt`` may hold ``interval`` (epochs between perturbations; default ``epochs // 4``),
    ``quantile_fraction`` (0.25) and ``synch`` (False). ``capture_dir`` is a test hook: the trainable
    keeps the weights of every checkpoint it saves and restores there.
    """
    sp = space if isinstance(space, SearchSpace) else load_space(space)
    obj = parse_objective(objective)
    sp.check(algorithm, obj)
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
        "measure_gn": bool(sp.fixed.get("measure_gn", False)) or any(m.startswith("gn_") for m in obj.metrics),
        "trajectory_gn": bool(sp.fixed.get("trajectory_gn", False)) or "traj_gn" in obj.metrics,
    }
    sp.resolve({n: p.candidates()[0] for n, p in sp.params.items()}, **overrides).validate()
    name = name or search_name(algorithm, obj.text)
    storage = Path(storage).expanduser().resolve()
    path = storage / name
    settings = {"space": sp.spec, "algorithm": algorithm, "objective": obj.text, "trials": trials,
                "epochs": epochs, "seed": seed}  # fmt: skip
    _check_experiment(path, settings, resume)
    store_path = str(Path(store).expanduser().resolve())
    Store(store_path).close()  # create it (and fail) before Ray starts

    from ray import tune

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
            if resume and tune.Tuner.can_restore(str(path)):
                tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
            else:
                path.mkdir(parents=True, exist_ok=True)
                (path / SEARCH_FILE).write_text(json.dumps(settings, indent=2, sort_keys=True))
                plan = _plan(sp, algorithm, obj, trials, epochs, seed, pbt or {})
                if max_concurrent:
                    plan["tune_config"]["max_concurrent_trials"] = max_concurrent
                tuner = tune.Tuner(
                    trainable,
                    param_space=plan["param_space"],
                    tune_config=tune.TuneConfig(
                        **plan["tune_config"], time_budget_s=time_budget, reuse_actors=True,
                    ),
                    run_config=tune.RunConfig(
                        name=name, storage_path=str(storage), callbacks=[callback, *callbacks], verbose=verbose,
                        failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
                        checkpoint_config=tune.CheckpointConfig(num_to_keep=_KEEP.get(algorithm, 1)),
                    ),
                )  # fmt: skip
            tuner.fit()
    wall = _add_wall(path, time.perf_counter() - t0)  # all sessions of the search (first run and resumes)
    records = load_records(path, sp)
    selection = select(records, obj, algorithm=algorithm, search=name, wall_seconds=wall)
    interrupted = any(r.status in ("PENDING", "RUNNING") for r in records)
    return SearchResult(name, path, algorithm, obj.text, records, selection, wall, interrupted)


@contextlib.contextmanager
def ray_session(address: str | None = None, **init: Any) -> Iterator[None]:
    """Ray for the duration: the running instance, a cluster at ``address``, or a new local one (shut down after)."""
    import ray

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
    from .trainable import tune_trial

    tune_trial(config, **kwargs)


def _add_wall(path: Path, seconds: float) -> float:
    """Record a session's wall time in the search file; the search's total so far."""
    f = path / SEARCH_FILE
    saved = json.loads(f.read_text()) if f.exists() else {}
    saved["wall_seconds"] = [*saved.get("wall_seconds", []), seconds]
    f.write_text(json.dumps(saved, indent=2, sort_keys=True))
    return float(sum(saved["wall_seconds"]))


def _check_experiment(path: Path, settings: Mapping[str, Any], resume: bool) -> None:
    """No silent mix-ups: a new search needs a free name; a resumed one its original settings."""
    saved_file = path / SEARCH_FILE
    started = (path / "tuner.pkl").exists()
    if not resume and (started or saved_file.exists()):
        raise ValueError(
            f"a search already exists at {path}: pass --resume to continue it, or choose another --name or --storage"
        )
    if resume and saved_file.exists():
        saved = json.loads(saved_file.read_text())
        diff = [k for k in settings if saved.get(k) != settings[k]]
        if diff:
            raise ValueError(
                f"cannot resume {path} with different settings: {', '.join(diff)} changed "
                f"(it was started with {', '.join(f'{k}={saved.get(k)!r}' for k in diff if k != 'space')}"
                f"{'; the space file changed' if 'space' in diff else ''})"
            )
