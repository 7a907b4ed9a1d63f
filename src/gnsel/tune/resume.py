"""A live search that survives ``kill -9``: gnsel's own files of a search, written atomically, its copies
of Tune's experiment state, from which a resume restores, and a search's trials read back whole.

Why this is needed (Ray Tune 2.x, read in its source):

* Tune saves its driver state (``experiment_state-<session>.json``, the searcher's and the search
  generator's ``*.pkl``/``*.json``) into a local staging folder and copies that whole folder into the
  experiment folder from a background thread (``_ExperimentCheckpointManager.sync_up_experiment_state``
  -> ``ray.train._internal.storage._upload_to_fs_path``: ``pyarrow.fs.copy_files``, which truncates
  each file and writes it in place). A kill during a copy leaves empty or truncated files there,
  and a copy cut short has updated some files and not others.
* On restore Tune copies every top-level ``*.json``/``*.pkl`` of the experiment folder back into the
  new staging folder (``sync_down_experiment_state``), so from then on it rewrites all of them at
  every step, ``tuner.pkl`` and any file of gnsel's there included.
* If the newest experiment state does not load, ``TuneController.__init__`` logs the error and starts
  the experiment again; ``TunerInternal._fit_resume`` passes no ``num_samples``, so that run has 1 trial.
* A trial Tune restores from a checkpoint it has since deleted (``CheckpointConfig(num_to_keep)``)
  fails with "Could not recover from checkpoint" (``Trainable.restore``).

So gnsel:

* keeps its own files in ``<experiment>/gnsel/`` (Tune lists only the folder's top level), each
  written to a temp file, fsynced and moved into place with ``os.replace``;
* at the end of every step of the Tune loop in which a trial changed (:class:`StateSnapshots`, from
  the store callback), copies the staging folder's state files -- saved by that very step, in the
  driver's thread, so consistent with one another -- into a new ``gnsel/ray-state/snap-<n>`` folder
  (files fsynced, the folder renamed into place, then the older one removed);
* before ``Tuner.restore`` (:func:`restore_state`), checks the newest snapshot and puts its files in
  place of Tune's top-level state files (with no snapshot, it checks Tune's own files), truncates a
  broken last line of each trial's ``result.json``, and refuses with one line when nothing sound is
  left; the trial ids of the restored state are what Tune must hold once it starts;
* reads a search's trials (:func:`load_trials`) from Tune's results merged with gnsel's store, which
  the driver writes as each epoch arrives: an epoch Tune's copy of a ``result.json`` missed is there.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..store import Store
from .selection import TrialRecord, error_text
from .space import SearchSpace

__all__ = [
    "GNSEL_DIR", "LEGACY_SEARCH_FILE", "SEARCH_FILE", "ResumeError", "StateSnapshots", "atomic_write",
    "load_trials", "read_search", "repair_results", "restore_state", "search_file", "snapshot_dir",
    "write_search",
]  # fmt: skip

GNSEL_DIR = "gnsel"  # gnsel's folder inside the experiment folder
SEARCH_FILE = "search.json"  # the search's settings and wall times, in GNSEL_DIR
LEGACY_SEARCH_FILE = "gnsel_search.json"  # where gnsel <= 0.3 kept them (at the top level, which Tune copies)
STATE_DIR = "ray-state"  # the snapshots of Tune's state, in GNSEL_DIR
TUNER_FILE = "tuner.pkl"
RESULT_FILE = "result.json"
_STAMPED = re.compile(r"^(?P<family>.+)-(?P<stamp>\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2})\.(json|pkl)$")
_LOST_CHECKPOINT = "Could not recover from checkpoint"


class ResumeError(ValueError):
    """A search that cannot be resumed; the message is one line that says why and what to do."""


# ------------------------------------------------------------------------------------ atomic files
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``path`` whole or not at all: a temp file beside it (a name Tune never copies), fsync, ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def search_file(path: Path) -> Path:
    return path / GNSEL_DIR / SEARCH_FILE


def snapshot_dir(path: Path) -> Path:
    return path / GNSEL_DIR / STATE_DIR


def read_search(path: Path) -> dict[str, Any] | None:
    """The search file of the experiment at ``path`` (or its legacy one); None if there is none."""
    for f in (search_file(path), path / LEGACY_SEARCH_FILE):
        if f.exists():
            try:
                data = json.loads(f.read_text())
                why = None if isinstance(data, dict) else "not a JSON object"
            except ValueError as err:
                why = _one_line(err)
            if why is not None:
                raise ResumeError(f"cannot resume {path}: gnsel's search file {f.name} is damaged ({why}); "
                                  f"delete {path} to start the search afresh, or choose another --name")  # fmt: skip
            return data
    return None


def write_search(path: Path, data: Mapping[str, Any]) -> None:
    """Write the search file atomically where Tune does not copy it (and drop the legacy one, which it does)."""
    atomic_write(search_file(path), json.dumps(dict(data), indent=2, sort_keys=True))
    (path / LEGACY_SEARCH_FILE).unlink(missing_ok=True)


def _one_line(err: BaseException | str) -> str:
    text = " ".join(str(err).split())
    return text[:200] + ("..." if len(text) > 200 else "")


# ----------------------------------------------------------------------------- Tune's state files
def _state_files(folder: Path) -> list[Path]:
    """Tune's driver state files in ``folder`` (its top-level ``*.json``/``*.pkl``), the newest of each family.

    Tune reads only the newest experiment state and searcher state (the largest session stamp in the
    name: ``_find_newest_experiment_checkpoint``, ``_load_newest_checkpoint``); older ones are dead weight.
    """
    if not folder.is_dir():
        return []
    newest: dict[str, Path] = {}
    for p in folder.iterdir():
        if not p.is_file() or p.suffix not in (".json", ".pkl") or p.name == LEGACY_SEARCH_FILE:
            continue
        m = _STAMPED.match(p.name)
        key = m.group("family") + p.suffix if m else p.name
        if key not in newest or p.name > newest[key].name:
            newest[key] = p
    return sorted(newest.values())


def _check_file(p: Path) -> str | None:
    """Why ``p`` would not load (empty, truncated, not JSON or not a pickle), or None."""
    try:
        data = p.read_bytes()
        if not data:
            return "empty"
        if p.name.startswith("experiment_state-"):
            json.loads(data)  # JSON (with pickled parts inside): ray.tune.utils.serialization._loads_with_cloudpickle
        else:  # tuner.pkl, and the searcher's files, *.json ones too: cloudpickles (tune.utils.util._atomic_save)
            from ray import cloudpickle  # heavy: ray

            cloudpickle.loads(data)
    except Exception as err:  # noqa: BLE001 -- any failure to load is the answer
        return f"{type(err).__name__}: {_one_line(err)}"
    return None


def _experiment_state(files: Iterable[Path]) -> Path | None:
    states = [p for p in files if p.name.startswith("experiment_state-")]
    return max(states, key=lambda p: p.name) if states else None


def _trial_ids(state_file: Path) -> set[str]:
    state = json.loads(state_file.read_bytes())
    return {json.loads(trial_json)["trial_id"] for trial_json, _ in state["trial_data"]}


def _snapshots(path: Path) -> list[Path]:
    root = snapshot_dir(path)
    return sorted(root.glob("snap-*")) if root.is_dir() else []


class StateSnapshots:
    """Copies Tune's driver state at the end of each step in which a trial changed (see the module docstring).

    Held by the store callback; Tune calls it in the driver's thread right after it saved its state for the
    step (``TuneController.step``: ``checkpoint()`` then ``on_step_end``), with ``TUNE_GLOBAL_CHECKPOINT_S=0``
    so that it saves at every step.
    """

    def __init__(self) -> None:
        self._signature: tuple | None = None
        self._seq: int | None = None
        self._last: Path | None = None  # the last snapshot this driver took, of ``self._experiment``
        self._experiment: Path | None = None

    def on_step(self, trials: list) -> None:
        """At the end of a step of Tune's loop: a snapshot if a trial changed."""
        if not trials:
            return
        storage = trials[0].storage
        if getattr(storage.storage_filesystem, "type_name", "local") != "local":
            return  # a remote storage: gnsel keeps no copies there
        signature = tuple((t.trial_id, t.status, _checkpoint_path(t), (t.last_result or {}).get("training_iteration"))
                          for t in trials)  # fmt: skip
        if signature == self._signature:
            return
        experiment = Path(storage.experiment_fs_path)
        snap = self.take(Path(storage.experiment_driver_staging_path), experiment, trials)
        if snap is not None:  # (None: Tune has saved no state yet; the next step will have)
            self._last, self._experiment, self._signature = snap, experiment, signature

    def publish(self) -> None:
        """At the end of the experiment: the last snapshot's experiment state over Tune's final copy of it.

        Nothing changed since that snapshot but what Tune's clean-up did after its final save (it stops the
        trials a time budget cut short, which stay resumable in the saved state); Tune's final copy is complete
        by then (``tune.run`` waits for it) and the same but for the statuses ``take`` corrects.
        """
        if self._last is not None and self._experiment is not None:
            state = _experiment_state(_state_files(self._last))
            assert state is not None
            atomic_write(self._experiment / state.name, state.read_bytes())

    def take(self, staging: Path, experiment: Path, trials: list | None = None) -> Path | None:
        """One snapshot of ``staging``'s state files (and ``tuner.pkl``) under ``experiment``; None if Tune saved none yet.

        With ``trials`` (Tune's trials, in memory), the experiment state's trial data is theirs, serialised by
        Tune's own ``Trial.get_json_state``: Tune saves a trial's state only once it marked the trial, and it
        does not mark a trial stopped without an actor (``TuneController._schedule_trial_stop`` returns first;
        HyperBand stops paused trials so), whose saved status then stays PAUSED, and a resume would run it again.
        """
        files = _state_files(staging)
        state_file = _experiment_state(files)
        if state_file is None:
            return None
        if TUNER_FILE not in {p.name for p in files} and (experiment / TUNER_FILE).is_file():
            files.append(experiment / TUNER_FILE)  # the first session: Tune wrote it only to the experiment folder
        root = snapshot_dir(experiment)
        root.mkdir(parents=True, exist_ok=True)
        if self._seq is None:
            self._seq = max((int(p.name.split("-")[1]) for p in _snapshots(experiment)), default=0)
        self._seq += 1
        final = root / f"snap-{self._seq:08d}"
        tmp = root / f".tmp-{self._seq:08d}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        for p in files:
            data = p.read_bytes()
            if p == state_file and trials is not None:
                state = json.loads(data)
                state["trial_data"] = [list(t.get_json_state()) for t in trials]
                data = json.dumps(state).encode()
            with open(tmp / p.name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        _fsync_dir(tmp)
        os.rename(tmp, final)
        _fsync_dir(root)
        for old in root.iterdir():  # the older snapshot, and temp folders a kill left
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
        return final


def _checkpoint_path(trial: Any) -> str | None:
    checkpoint = trial.checkpoint
    return None if checkpoint is None else str(checkpoint.path)


def _has_results(path: Path) -> bool:
    return any(f.is_file() and f.stat().st_size for f in path.glob(f"*/{RESULT_FILE}"))


def restore_state(path: Path, *, snapshots: bool) -> set[str] | None:
    """Make the Tune state in the experiment folder ``path`` sound before ``Tuner.restore``.

    Returns the ids of the trials the restored state holds, or None when there is nothing to restore
    (no ``tuner.pkl`` and no snapshot: the search never got to its first trial; Tune's files, if any,
    are removed so that it starts afresh). ``snapshots``: the search was started by a gnsel that keeps
    snapshots, so that without one no trial can have reported (the first step with a trial takes one).
    Raises :class:`ResumeError` (one line naming the folder and how to start afresh) when the state
    is damaged and no sound copy is left.
    """
    fresh_hint = f"delete {path} to start the search afresh (the store keeps its trials), or choose another --name"
    snaps = _snapshots(path)
    if snaps:
        files = _state_files(snaps[-1])
        problems = [f"{p.name}: {why}" for p in files if (why := _check_file(p))]
        if problems or _experiment_state(files) is None or TUNER_FILE not in {p.name for p in files}:
            why = problems[0] if problems else "it lacks the experiment state or tuner.pkl"
            raise ResumeError(f"cannot resume {path}: gnsel's copy of its Tune state is damaged ({why}); {fresh_hint}")
        for p in path.iterdir():  # Tune's own copies (possibly torn by the kill) give way to gnsel's
            if p.is_file() and p.suffix in (".json", ".pkl") and p.name != LEGACY_SEARCH_FILE:
                p.unlink()
        for p in files:
            atomic_write(path / p.name, p.read_bytes())
    else:
        files = _state_files(path)
        tuner = path / TUNER_FILE
        if not tuner.exists() and _experiment_state(files) is None:
            return None  # never started
        problems = [f"{p.name}: {why}" for p in files if (why := _check_file(p))]
        if not tuner.exists():
            problems.append("tuner.pkl: missing")
        if _experiment_state(files) is None:
            problems.append("no experiment_state-*.json")
        if problems:
            if snapshots and not _has_results(path):
                for p in path.iterdir():  # no trial ever reported: nothing is lost by starting afresh
                    if p.name != GNSEL_DIR:
                        shutil.rmtree(p) if p.is_dir() else p.unlink()
                return None
            raise ResumeError(f"cannot resume {path}: its Tune state is damaged ({problems[0]}) and gnsel holds no "
                              f"copy of it; {fresh_hint}")  # fmt: skip
    repair_results(path)
    state = _experiment_state(_state_files(path))
    assert state is not None
    _recreate_pruned(path, state)
    _touch_results(path, state)
    return _trial_ids(state)


def _touch_results(path: Path, state_file: Path) -> int:
    """An empty ``result.json`` for each trial that reported but whose file Tune had not copied yet; their number.

    Without one, ``Tuner.restore`` (``ExperimentAnalysis._fetch_trial_dataframes``) warns that it could not
    fetch the trial's metrics; the epochs are in the store, and the trial appends its next ones.
    """
    made = 0
    for trial_json, meta_json in json.loads(state_file.read_bytes())["trial_data"]:
        folder = json.loads(trial_json).get("relative_logdir")
        if folder and json.loads(meta_json).get("last_result") and not (path / folder / RESULT_FILE).exists():
            atomic_write(path / folder / RESULT_FILE, b"")
            made += 1
    return made


def _recreate_pruned(path: Path, state_file: Path) -> int:
    """Empty folders for the checkpoints Tune deleted after the state it resumes from was saved; their number.

    Tune keeps a trial's last ``num_to_keep`` checkpoints and deletes older ones as it registers new ones
    (``_CheckpointManager.register_checkpoint``). The restored state still lists the ones it deleted after
    the snapshot, and deleting one again at the trial's next checkpoint raises (``_delete_fs_path``: "Path not
    found"), so that Tune logs a traceback and skips that checkpoint's bookkeeping. Each is older than the
    checkpoint the trial resumes from, which still exists.
    """
    from ray.tune.utils.serialization import _loads_with_cloudpickle  # heavy: ray (Tune's own decoder)

    made = 0
    for trial_json, meta_json in json.loads(state_file.read_bytes())["trial_data"]:
        if json.loads(trial_json).get("status") == "TERMINATED":
            continue  # registers no checkpoint again
        manager = _loads_with_cloudpickle(meta_json).get("checkpoint_manager")
        latest = getattr(getattr(manager, "_latest_checkpoint_result", None), "checkpoint", None)
        for result in getattr(manager, "_checkpoint_results", []):
            where = Path(result.checkpoint.path)
            local = path / where.parent.name / where.name  # (the experiment folder may have moved)
            if (latest is None or where != Path(latest.path)) and local.parent.is_dir() and not local.exists():
                local.mkdir()
                made += 1
    return made


# ------------------------------------------------------------------------------------ trial results
def _result_rows(data: bytes) -> tuple[list[dict[str, Any]], bool]:
    """The rows of a ``result.json`` (one JSON object a line) and whether every line was whole."""
    rows, whole = [], data.endswith(b"\n") or not data
    for line in data.split(b"\n"):
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError:
                whole = False
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                whole = False
    return rows, whole


def repair_results(path: Path) -> int:
    """Drop the torn lines of every trial's ``result.json`` under ``path`` (a copy a kill cut short: Tune
    appends to it on restore); the number of files rewritten."""
    fixed = 0
    for f in path.glob(f"*/{RESULT_FILE}"):
        rows, whole = _result_rows(f.read_bytes())
        if not whole:
            atomic_write(f, "".join(json.dumps(r) + "\n" for r in rows))
            fixed += 1
    return fixed


def _finite(v: Any) -> bool:
    return not (isinstance(v, float) and math.isnan(v))


def load_trials(path: str | os.PathLike, space: SearchSpace, store_path: str | os.PathLike) -> list[TrialRecord]:
    """Every trial of the experiment at ``path``, each once, with every epoch it reported, in order.

    The trials, their statuses and their last results come from Tune's experiment state; their rows
    from each ``result.json`` (an epoch reported again after a resume counts once, as first reported)
    and, for the epochs of a trial's last run that Tune's copy missed (a kill between its copies),
    from gnsel's store. A trial that Tune marked failed only because it could not find the checkpoint
    to resume from, while the store has its run finished, is a finished trial.
    """
    from ray.tune import ExperimentAnalysis  # heavy: ray

    path = Path(path)
    repair_results(path)
    trials = ExperimentAnalysis(str(path)).trials
    parsed = []
    for trial in trials:
        f = Path(trial.path) / RESULT_FILE
        rows = _result_rows(f.read_bytes())[0] if f.is_file() else []
        last = dict(trial.last_result or {})
        run = last.get("run_id") or (rows[-1].get("run_id") if rows else None)
        parsed.append((trial, rows, last, run))
    store = Store(store_path)
    runs = sorted({run for *_, run in parsed if run})
    frame = store.epochs_frame(runs) if runs else None
    stored: dict[str, dict[int, dict[str, Any]]] = {}
    if frame is not None:
        for row in frame.to_dict("records"):
            stored.setdefault(row["run_id"], {})[int(row["epoch"])] = {k: v for k, v in row.items() if _finite(v)}
    records = []
    for trial, rows, last, run in parsed:
        status, error = trial.status, error_text(trial) if trial.status == "ERROR" else ""
        if status == "ERROR" and _LOST_CHECKPOINT in error and run and store.run_status(run) == "done":
            status, error = "TERMINATED", ""  # finished before the kill: its results are in the store
            last = {**last, "epoch": max(stored.get(run, {}) or [last.get("epoch") or 0])}
        merged = _merge_rows(rows, run, last, stored.get(run, {}))
        cfg = merged[-1].get("config") if merged else None
        config = dict(cfg) if isinstance(cfg, Mapping) else dict(trial.config)
        records.append(TrialRecord(trial.trial_id, status, space.active(config), merged, error))
    return records


def _merge_rows(rows: list[dict[str, Any]], run: str | None, last: Mapping[str, Any],
                stored: Mapping[int, Mapping[str, Any]]) -> list[dict[str, Any]]:  # fmt: skip
    """A trial's rows: each (run, epoch) once, as first reported (an epoch run again after a resume is the same
    training), with its last run's epochs that Tune's copy missed from the store."""
    first: dict[tuple[Any, int], dict[str, Any]] = {}
    for r in rows:
        if "epoch" in r:
            first.setdefault((r.get("run_id"), int(r["epoch"])), r)
    order = list(dict.fromkeys(r.get("run_id") for r in rows if "epoch" in r))
    if run is not None and run not in order:
        order.append(run)
    end = int(last.get("epoch") or 0)
    start = int(last.get("start_epoch") or 0)  # a PBT exploit's run continues after its donor's epoch
    out = []
    for rid in order:
        mine = {ep: r for (r_id, ep), r in first.items() if r_id == rid}
        if rid == run:
            for ep in range(start + 1, end + 1):
                if ep not in mine and ep in stored:
                    mine[ep] = {**stored[ep], "epoch": ep, "run_id": run, "config": last.get("config")}
        out.extend(mine[ep] for ep in sorted(mine))
    return out
