"""A live search survives kill -9: gnsel's files are written atomically where Tune does not copy them, a
resume restores from gnsel's snapshots of Tune's state (or refuses with one line), holds every trial once,
and a search that succeeds prints no traceback and no Ray warning.

The searches here are tiny (MNIST-1D, 300 training samples, 2-3 trials of 2-3 epochs); the longest test
(a search killed once and resumed) takes about 40 s on 2 cores. ``GNSEL_TEST_KILL_LOOP=1`` adds a run of
``benchmarks/kill_tune.py`` (a few minutes).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gnsel.store import Store
from gnsel.tune import resume
from gnsel.tune.live import SEARCH_FILE, ResumeError, _RayNoise, quiet_ray_noise, run_search
from gnsel.tune.resume import (
    GNSEL_DIR, LEGACY_SEARCH_FILE, StateSnapshots, read_search, repair_results, restore_state, snapshot_dir,
    write_search,
)  # fmt: skip

pytestmark = pytest.mark.usefixtures("isolated_data_root", "one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "dataset": "mnist1d",
    "dataset_kwargs": {"num_samples": 1000},
    "fixed": {"n_train": 300, "probe_size": 64, "model_kwargs": {"width": 16}, "epochs": 3},
    "space": {"lr": {"loguniform": [0.02, 0.2]}, "batch_size": {"choice": [64, 128]}},
}


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "250",
            "GNSEL_DATA_ROOT": os.environ.get("GNSEL_DATA_ROOT", str(tmp_path / "data"))}  # fmt: skip


# ------------------------------------------------------------------------------ files (no Ray run)
def test_search_file_is_atomic_and_out_of_tunes_reach(tmp_path, monkeypatch):
    path = tmp_path / "exp"
    (path).mkdir()
    (path / LEGACY_SEARCH_FILE).write_text(json.dumps({"trials": 1}))  # where gnsel <= 0.3 kept it
    assert read_search(path) == {"trials": 1}
    write_search(path, {"trials": 2})
    assert (path / SEARCH_FILE).is_file() and not (path / LEGACY_SEARCH_FILE).exists()
    # Tune copies the experiment folder's top-level *.json and *.pkl; gnsel's files are below it
    assert not [p for p in path.iterdir() if p.suffix in (".json", ".pkl")]

    def torn(fd):  # the write is cut short after its bytes went out, before it was made durable and renamed
        raise OSError("killed mid-write")

    monkeypatch.setattr(resume.os, "fsync", torn)
    with pytest.raises(OSError, match="mid-write"):
        write_search(path, {"trials": 3, "more": "x" * 10000})
    monkeypatch.undo()
    assert read_search(path) == {"trials": 2}  # the old file, whole
    assert sorted(p.name for p in (path / GNSEL_DIR).iterdir()) == ["search.json"]  # no temp file left
    (path / SEARCH_FILE).write_text("")  # damaged by something else: a clear one-line refusal
    with pytest.raises(ResumeError) as err:
        read_search(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value) and "afresh" in str(err.value)


def _fake_tune_state(folder: Path, trial_ids, stamp="2026-01-01_00-00-00") -> None:
    """The files a Tune driver saves (a minimal experiment state naming ``trial_ids``, a searcher pickle)."""
    import pickle

    folder.mkdir(parents=True, exist_ok=True)
    state = {"trial_data": [[json.dumps({"trial_id": t}), "{}"] for t in trial_ids], "runner_data": {}, "stats": {}}
    (folder / f"experiment_state-{stamp}.json").write_text(json.dumps(state))
    (folder / f"basic-variant-state-{stamp}.json").write_bytes(pickle.dumps({"n": len(trial_ids)}))  # sic: a pickle
    (folder / f"searcher-state-{stamp}.pkl").write_bytes(pickle.dumps({"n": len(trial_ids)}))


def test_restore_state_uses_gnsels_snapshot_over_torn_tune_files(tmp_path):
    exp, staging = tmp_path / "exp", tmp_path / "staging"
    _fake_tune_state(staging, ["a", "b"])
    import pickle

    exp.mkdir()
    (exp / "tuner.pkl").write_bytes(pickle.dumps({"tuner": 1}))
    snap = StateSnapshots().take(staging, exp)
    assert snap is not None and (snap / "tuner.pkl").is_file()
    # the kill tore Tune's own copies: every state file empty, one of a later session too
    _fake_tune_state(exp, ["a"])
    for p in exp.iterdir():
        if p.is_file():
            p.write_bytes(b"")
    (exp / "experiment_state-2026-01-02_00-00-00.json").write_text("{")
    trial = exp / "trial_a"
    trial.mkdir()
    (trial / "result.json").write_text('{"epoch": 1}\n{"epoch": 2}\n{"epo')  # a copy cut mid-line
    assert restore_state(exp, snapshots=True) == {"a", "b"}
    assert sorted(p.name for p in exp.iterdir() if p.is_file()) == sorted(p.name for p in snap.iterdir())
    assert pickle.loads((exp / "tuner.pkl").read_bytes()) == {"tuner": 1}
    assert (trial / "result.json").read_text() == '{"epoch": 1}\n{"epoch": 2}\n'
    assert repair_results(exp) == 0  # whole now
    # gnsel's copy itself damaged (not by a kill: it is renamed into place only once fsynced): refused
    (snap / "tuner.pkl").write_bytes(b"\x80")
    with pytest.raises(ResumeError) as err:
        restore_state(exp, snapshots=True)
    assert "\n" not in str(err.value) and "tuner.pkl" in str(err.value) and f"delete {exp}" in str(err.value)


def test_restore_state_without_a_snapshot(tmp_path):
    exp = tmp_path / "exp"
    assert restore_state(exp, snapshots=True) is None  # never started
    _fake_tune_state(exp, ["a"])
    (exp / "tuner.pkl").write_bytes(b"")  # torn by a kill during its first write
    (exp / "trial_a").mkdir()
    # started by a gnsel that takes snapshots: without one no trial ever reported, so it starts afresh
    assert restore_state(exp, snapshots=True) is None
    assert not any(p.name != GNSEL_DIR for p in exp.iterdir())
    # a search of an older gnsel (no snapshots) with a torn state and results: refused, never restarted
    _fake_tune_state(exp, ["a"])
    import pickle

    (exp / "tuner.pkl").write_bytes(pickle.dumps({}))
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_bytes(b"")
    (exp / "trial_a").mkdir()
    (exp / "trial_a" / "result.json").write_text('{"epoch": 1}\n')
    with pytest.raises(ResumeError) as err:
        restore_state(exp, snapshots=False)
    msg = str(err.value)
    assert "\n" not in msg and "experiment_state" in msg and "empty" in msg and f"delete {exp}" in msg
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps(
        {"trial_data": [[json.dumps({"trial_id": "a"}), "{}"]]}))  # fmt: skip
    assert restore_state(exp, snapshots=False) == {"a"}  # sound: restored as it is


def test_restore_recreates_checkpoints_tune_pruned_after_the_snapshot(tmp_path):
    # Tune's own bookkeeping (internal classes): a trial keeping 3 checkpoints, the oldest deleted after the
    # state was saved (a kill between Tune registering checkpoint 3 and gnsel's snapshot)
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.train._internal.session import _TrainingResult
    from ray.tune import Checkpoint, CheckpointConfig
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    trial = tmp_path / "trial_x"
    manager = _CheckpointManager(CheckpointConfig(num_to_keep=3))
    for i in range(3):
        (trial / f"checkpoint_{i:06d}").mkdir(parents=True)
        manager.register_checkpoint(_TrainingResult(checkpoint=Checkpoint(str(trial / f"checkpoint_{i:06d}")),
                                                    metrics={"epoch": i + 1}))  # fmt: skip
    meta = _TrainingRunMetadata()
    meta.checkpoint_manager = manager
    (trial / "checkpoint_000000").rmdir()
    state = tmp_path / "experiment_state-2026-01-01_00-00-00.json"
    data = [[json.dumps({"trial_id": "x", "status": s}), meta.get_json_state()] for s in ("PENDING", "TERMINATED")]
    state.write_text(json.dumps({"trial_data": data[:1]}))
    # an empty folder Tune deletes again at the trial's next checkpoint, instead of failing with a traceback
    assert resume._recreate_pruned(tmp_path, state) == 1 and (trial / "checkpoint_000000").is_dir()
    (trial / "checkpoint_000000").rmdir()
    state.write_text(json.dumps({"trial_data": data[1:]}))
    assert resume._recreate_pruned(tmp_path, state) == 0  # a finished trial checkpoints no more


def test_rows_merge_each_epoch_once_and_fill_from_the_store():
    rows = [{"epoch": 1, "run_id": "r", "v": 1}, {"epoch": 2, "run_id": "r", "v": 2},
            {"epoch": 2, "run_id": "r", "v": 22}, {"epoch": 5, "run_id": "r", "v": 5}]  # fmt: skip
    stored = {e: {"epoch": e, "run_id": "r", "v": 10 * e} for e in range(1, 7)}
    out = resume._merge_rows(rows, "r", {"epoch": 5, "config": {"lr": 0.1}}, stored)
    assert [r["epoch"] for r in out] == [1, 2, 3, 4, 5]  # 3 and 4 from the store; 6 is another search's
    assert [r["v"] for r in out] == [1, 2, 30, 40, 5] and out[2]["config"] == {"lr": 0.1}
    # PBT: an exploit's run continues after its donor's epoch; the earlier run's rows stay as reported
    pbt = [{"epoch": 1, "run_id": "a", "v": 1}, {"epoch": 2, "run_id": "a", "v": 2}, {"epoch": 3, "run_id": "b", "v": 3}]
    out = resume._merge_rows(pbt, "b", {"epoch": 4, "start_epoch": 2}, {3: {"v": 3}, 4: {"v": 4}})
    assert [(r["run_id"], r["epoch"]) for r in out] == [("a", 1), ("a", 2), ("b", 3), ("b", 4)]


class _Trial:
    def __init__(self, trial_id, error=""):
        self.trial_id, self.config, self.error = trial_id, {"lr": 0.05, "batch_size": 64}, error
        self.checkpoint, self.last_result, self.error_file = None, {}, None

    def get_error(self):
        return self.error


def test_store_callback_guards_a_restore_and_keeps_finished_trials(tmp_path):
    from gnsel.tune.store_callback import StoreCallback, expect_trials

    cb = StoreCallback(str(tmp_path / "s.sqlite"), TINY, {"epochs": 3}, {"search": "x"})
    expect_trials("/exp", {"a", "b"})
    try:
        with pytest.raises(ResumeError, match=r"did not restore the search at /exp \(1 of its 2 trials.*delete /exp"):
            cb.on_step_begin(0, [_Trial("a")])  # Tune started afresh (one new trial): stop before anything runs
    finally:
        expect_trials(None)
    cb = StoreCallback(str(tmp_path / "s.sqlite"), TINY, {"epochs": 3}, {"search": "x"})
    cb.on_step_begin(0, [_Trial("c")])  # no resume in progress: nothing to check
    t = _Trial("a")
    cb.on_trial_start(0, [t], t)
    rid = cb._runs["a"]
    cb.on_trial_result(0, [t], t, {"epoch": 1, "val_loss": 1.0, "config": t.config})
    cb.on_trial_complete(0, [t], t)
    store = Store(tmp_path / "s.sqlite")
    assert store.run_status(rid) == "done"
    lost = _Trial("a", "ValueError: Could not recover from checkpoint as it does not exist on storage anymore.")
    cb.on_trial_error(0, [lost], lost)  # Tune could not restore it after a kill: it stays finished
    assert store.run_status(rid) == "done" and list(store.epochs_frame([rid])["epoch"]) == [1]
    bad = _Trial("a", "RuntimeError: something else")
    cb.on_trial_error(0, [bad], bad)
    assert store.run_status(rid) == "failed"


def test_ray_noise_filter_drops_only_the_harmless_records():
    import traceback

    quiet_ray_noise()
    quiet_ray_noise()  # idempotent
    names = _RayNoise.LOGGERS
    loggers = [logging.getLogger(n) for n in names]
    assert all(sum(isinstance(f, _RayNoise) for f in lg.filters) == 1 for lg in loggers)
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record)

    handler = Keep(level=logging.DEBUG)
    for lg in loggers:
        lg.addHandler(handler)
    auth, syncer, state = loggers
    try:
        auth.warning("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out.")
        try:  # a copy that listed a searcher's temp file, renamed before it was read
            raise FileNotFoundError("[Errno 2] Failed to open local file '/tmp/ray/x/.0b1c-tmp-searcher-state-1.pkl'")
        except FileNotFoundError:
            syncer.warning(f"Last sync command failed with the following error:\n{traceback.format_exc()}")
            state.error("Saving experiment state to storage at '/x' failed with exception: ", exc_info=True)
        try:
            raise PermissionError("[Errno 13] /x/experiment_state.json")
        except PermissionError:
            state.error("Saving experiment state to storage at '/x' failed with exception: ", exc_info=True)
            syncer.warning(f"Last sync command failed with the following error:\n{traceback.format_exc()}")
        auth.warning("Token authentication is disabled for this Ray cluster.")
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
    assert [r.name for r in seen] == [names[2], names[1], names[0]]  # real failures and other warnings stay


# ------------------------------------------------------------------------------------ real searches
def _cli(app_args, tmp_path):
    import typer
    from typer.testing import CliRunner

    from gnsel.cli.tune import register

    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command, so that "tune" is a sub-command as in gnsel's app
        pass

    return CliRunner().invoke(app, app_args)


def test_cli_resume_recovers_torn_state_and_refuses_lost_state(ray_cluster, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(TINY))
    args = ["tune", "--space", str(space), "--algorithm", "random", "--trials", "3", "--epochs", "2",
            "--storage", str(tmp_path / "ray"), "--store", str(tmp_path / "tune.sqlite"), "--name", "s"]  # fmt: skip
    out = _cli(args, tmp_path)
    assert out.exit_code == 0, out.output
    exp = tmp_path / "ray" / "s"
    # a kill tore every state file Tune had copied there (0 bytes): gnsel's snapshot restores them
    torn = [p for p in exp.iterdir() if p.is_file() and p.suffix in (".json", ".pkl")]
    assert any(p.name.startswith("experiment_state-") for p in torn) and any(p.name == "tuner.pkl" for p in torn)
    for p in torn:
        p.write_bytes(b"")
    out = _cli(args + ["--resume"], tmp_path)
    assert out.exit_code == 0, out.output
    import pandas as pd

    sel = pd.read_csv(tmp_path / "ray" / "selection.csv")
    assert sel["trials"].item() == 3 and sel["failed"].item() == 0 and sel["budget_epoch"].item() == 2
    assert len(Store(tmp_path / "tune.sqlite").runs_frame("done")) == 3
    # no copy of gnsel's left and Tune's torn: refused with one line and a non-zero exit, nothing run
    for p in snapshot_dir(exp).iterdir():
        for f in p.iterdir():
            f.write_bytes(b"")
    out = _cli(args + ["--resume"], tmp_path)
    assert out.exit_code == 2, out.output
    text = " ".join(out.output.split())
    assert text.count("error:") == 1 and f"cannot resume {exp}" in text and f"delete {exp}" in text
    assert "Traceback" not in out.output


def test_search_killed_at_a_random_moment_resumes_with_every_trial_once(ray_cluster, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(TINY))
    store_path = tmp_path / "tune.sqlite"
    cmd = [sys.executable, "-m", "gnsel.cli", "tune", "--space", str(space), "--algorithm", "random", "--trials", "4",
           "--epochs", "3", "--storage", str(tmp_path / "ray"), "--store", str(store_path), "--name", "k",
           "--address", ray_cluster]  # fmt: skip
    proc = subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows, deadline = 0, time.monotonic() + 120
    while rows < 5 and time.monotonic() < deadline and proc.poll() is None:  # mid-search: 5 of its 12 epochs
        time.sleep(0.05)
        if store_path.exists():
            try:
                with sqlite3.connect(store_path) as db:
                    rows = db.execute("SELECT COUNT(*) FROM epochs").fetchone()[0]
            except sqlite3.OperationalError:
                pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and 5 <= rows < 12
    res = run_search(space, algorithm="random", objective="val_loss", trials=4, epochs=3, storage=tmp_path / "ray",
                     store=store_path, name="k", resume=True)  # the same settings as the killed command
    assert len(res.records) == 4 and len({r.trial_id for r in res.records}) == 4
    assert all(r.status == "TERMINATED" for r in res.records) and not res.interrupted
    for r in res.records:
        assert [row["epoch"] for row in r.rows] == [1, 2, 3], r.trial_id  # every epoch once
    assert res.selection.trials == 4 and res.selection.failed == 0 and res.selection.epochs == 12
    store = Store(store_path)
    runs = store.runs_frame()
    assert len(runs) == 4 and set(runs["status"]) == {"done"}
    assert {json.loads(e)["trial_id"] for e in runs["extra_json"]} == {r.trial_id for r in res.records}
    for rid in runs["run_id"]:
        assert list(store.epochs_frame([rid])["epoch"]) == [1, 2, 3]


def test_successful_search_prints_no_traceback_and_no_ray_warning(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(TINY))
    cmd = [sys.executable, "-m", "gnsel.cli", "tune", "--space", str(space), "--algorithm", "tpe", "--trials", "2",
           "--epochs", "2", "--storage", str(tmp_path / "ray"), "--store", str(tmp_path / "tune.sqlite")]  # fmt: skip
    proc = subprocess.run(cmd, env=_env(tmp_path), capture_output=True, text=True, timeout=240)  # its own Ray
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr[-4000:]
    assert "Token authentication" not in proc.stderr and "WARNING" not in proc.stderr, proc.stderr[-4000:]
    assert "selection report" in proc.stdout


@pytest.mark.skipif(not os.environ.get("GNSEL_TEST_KILL_LOOP"), reason="set GNSEL_TEST_KILL_LOOP=1 (minutes)")
def test_kill_loop(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kill_tune.py"), "--algorithms", "random,asha",
                           "--kills", "3", "--trials", "6", "--epochs", "3", "--work", str(tmp_path / "k"),
                           "--json", str(tmp_path / "k.json")], capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
