"""Tests for gnsel.store: schema, run lifecycle, epochs, concurrency, crash safety, checkpoints, export."""

from __future__ import annotations

import multiprocessing as mp
import pickle
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gnsel.store import SCHEMA_VERSION, CheckpointError, Store, config_hash

CFG = {"model": "mlp", "width": 64, "lr": 0.1, "opt": {"name": "sgd", "momentum": 0.9}, "seed": 0}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "gnsel.db") as s:
        yield s


def _scalar(db: Path, sql: str, params: tuple = ()) -> object:
    """One value, read a fresh, independent sqlite3 connection."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchone()[0]
    finally:
        conn.close()


# --------------------------------------------------------------------------- schema


def test_schema_created_and_reopen_keeps_data(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "runs.db"
    with Store(db) as s:
        rid = s.register_run(CFG)
        s.claim_run(rid)
        s.add_epoch(rid, 0, {"loss": 1.5})
        s.put_measure(rid, 0, "gn", 2.0)
    conn = sqlite3.connect(db)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "epochs", "measures", "meta"} <= tables
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    conn.close()

    with Store(db) as s:  # reopening never loses data
        assert s.run_status(rid) == "running"
        assert s.get_config(rid) == CFG
        assert s.epochs_frame()["loss"].tolist() == [1.5]
        assert s.get_measure(rid, 0, "gn")["value"] == 2.0
        assert s.register_run(CFG) == rid  # idempotent
        assert s.run_status(rid) == "running"


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    Store(db).close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(RuntimeError, match="schema version"):
        Store(db)


def test_store_pickles_as_path_and_reopens(store: Store) -> None:
    rid = store.register_run(CFG)
    clone = pickle.loads(pickle.dumps(store))
    assert clone.__getstate__() == store.__getstate__()
    assert clone._conn is None  # opened lazily
    assert clone.run_status(rid) == "pending"
    clone.close()


# --------------------------------------------------------------------------- config hash


def test_config_hash_stable_and_sensitive() -> None:
    h = config_hash(CFG)
    assert len(h) == 16 and all(c in "0123456789abcdef" for c in h)
    reordered = {"seed": 0, "opt": {"momentum": 0.9, "name": "sgd"}, "lr": 0.1, "width": 64, "model": "mlp"}
    assert config_hash(reordered) == h
    assert config_hash({**CFG, "lr": np.float64(0.1), "width": np.int64(64)}) == h
    assert config_hash({**CFG, "lr": 0.1000001}) != h
    assert config_hash({**CFG, "opt": {"name": "sgd", "momentum": 0.95}}) != h
    assert config_hash({**CFG, "extra": None}) != h
    assert config_hash({**CFG, "width": 64.0}) != h  # floats as repr: 64.0 is not 64


# --------------------------------------------------------------------------- lifecycle


def test_run_lifecycle(store: Store) -> None:
    rid = store.register_run(CFG)
    other = store.register_run({**CFG, "seed": 1})
    assert rid == config_hash(CFG)
    assert store.run_status(rid) == "pending"
    assert store.run_status("nope") is None
    assert store.pending_runs([rid, other, "unregistered"]) == [rid, other, "unregistered"]

    assert store.claim_run(rid) is True
    run = store.get_run(rid)
    assert run["status"] == "running" and run["attempts"] == 1 and run["started_at"]
    store.add_epochs(rid, [(0, {"loss": 2.0}), (1, {"loss": 1.0})])
    store.fail_run(rid, "RuntimeError: CUDA out of memory\nTraceback ...")
    run = store.get_run(rid)
    assert run["status"] == "failed" and run["error"].startswith("RuntimeError: CUDA out of memory")

    assert store.claim_run(rid) is True  # a failed run is retried from scratch
    run = store.get_run(rid)
    assert run["attempts"] == 2 and run["error"] is None
    assert store.epochs_frame([rid]).empty
    store.add_epochs(rid, [{"epoch": e, "loss": 1.0 / (e + 1)} for e in range(3)])
    store.finish_run(rid, seconds=12.5, extra={"best_epoch": 2})
    run = store.get_run(rid)
    assert run["status"] == "done" and run["seconds"] == 12.5 and run["extra"] == {"best_epoch": 2}
    assert run["finished_at"] >= run["started_at"]
    assert store.claim_run(rid) is False  # done runs are never re-run
    assert len(store.epochs_frame([rid])) == 3
    assert store.pending_runs([rid, other]) == [other]
    assert store.get_config(rid) == CFG

    frame = store.runs_frame()
    assert list(frame["run_id"]) == [rid, other]
    assert {"cfg.model", "cfg.opt.name", "cfg.opt.momentum"} <= set(frame.columns)
    assert list(store.runs_frame(status="done")["run_id"]) == [rid]
    assert list(store.runs_frame(status=["pending", "failed"])["run_id"]) == [other]

    with pytest.raises(KeyError):
        store.claim_run("unregistered")
    with pytest.raises(KeyError):
        store.finish_run("unregistered", 1.0)
    with pytest.raises(KeyError):
        store.get_config("unregistered")
    with pytest.raises(KeyError):
        store.add_epoch("unregistered", 0, {"loss": 1.0})


def test_claim_after_interruption_deletes_partial_epochs(store: Store) -> None:
    rid = store.register_run(CFG)
    keep = store.register_run({**CFG, "seed": 1})
    store.claim_run(keep)
    store.add_epoch(keep, 0, {"loss": 3.0})
    assert store.claim_run(rid)
    for e in range(5):
        store.add_epoch(rid, e, {"loss": float(e)})
    store.put_measure(rid, 4, "gn", 1.0)
    store.save_checkpoint(rid, 4, {"w": np.zeros(1).tolist()})
    # the worker is killed here; on resume 'running' runs whose owner is gone go back to 'pending'
    assert store.reset_running() == 0  # this owner is alive: nothing to reset
    assert Store(store.path, lease=0.0).reset_running() == 2  # seen by a build for which its lease ran out
    assert store.run_status(rid) == "pending"
    assert store.pending_runs([rid, keep]) == [rid, keep]

    assert store.claim_run(rid)
    assert store.epochs_frame([rid]).empty
    assert store.get_measures([rid]).empty
    assert store.checkpoint_epochs(rid) == []
    store.add_epoch(rid, 0, {"loss": 9.0})
    df = store.epochs_frame()
    assert sorted(zip(df["run_id"], df["epoch"], df["loss"])) == sorted([(rid, 0, 9.0), (keep, 0, 3.0)])
    assert store.get_run(rid)["attempts"] == 2


# --------------------------------------------------------------------------- epochs


def test_new_metric_columns_are_added(store: Store) -> None:
    rid = store.register_run(CFG)
    store.add_epoch(rid, 0, {"train_loss": 1.0})
    assert store.metric_columns() == ["train_loss"]
    store.add_epoch(rid, 1, {"train_loss": np.float32(0.5), "val_acc": 1, "gn_sq": None})
    store.add_epochs(rid, [{"epoch": 2, "train_loss": 0.25, "lr": 0.01}, (3, {"lr": 0.001})])
    assert store.metric_columns() == ["train_loss", "gn_sq", "val_acc", "lr"]
    df = store.epochs_frame([rid]).set_index("epoch")
    assert all(df[c].dtype == np.float64 for c in store.metric_columns())
    assert df.loc[1, "val_acc"] == 1.0 and np.isnan(df.loc[0, "val_acc"]) and np.isnan(df.loc[1, "gn_sq"])
    assert df.loc[3, "lr"] == 0.001 and np.isnan(df.loc[3, "train_loss"])
    store.add_epoch(rid, 3, {"lr": 0.5})  # INSERT OR REPLACE: no duplicates
    assert len(store.epochs_frame([rid])) == 4
    with_cfg = store.epochs_frame(with_config=True)
    assert (with_cfg["cfg.width"] == 64).all() and (with_cfg["cfg.opt.name"] == "sgd").all()


@pytest.mark.parametrize("name", ["Loss", "1st", "val-acc", "acc ", 'x" REAL); DROP TABLE runs; --', "", "epoch", "run_id"])
def test_bad_column_name_rejected(store: Store, name: str) -> None:
    rid = store.register_run(CFG)
    with pytest.raises(ValueError):
        store.add_epoch(rid, 0, {name: 1.0})
    with pytest.raises(ValueError):  # one bad row: nothing of the batch is written
        store.add_epochs(rid, [(0, {"loss": 1.0}), (1, {name: 1.0})])
    assert store.epochs_frame().empty and store.metric_columns() == []


def test_non_numeric_metric_rejected(store: Store) -> None:
    rid = store.register_run(CFG)
    with pytest.raises(TypeError):
        store.add_epoch(rid, 0, {"loss": "1.0"})
    with pytest.raises(TypeError):
        store.add_epoch(rid, True, {"loss": 1.0})


# --------------------------------------------------------------------------- concurrency


def _concurrent_writer(store: Store, run_id: str, idx: int, barrier) -> None:
    """Child: 50 epochs, one transaction each; adds a private and a shared new column."""
    barrier.wait()
    for e in range(50):
        metrics = {"loss": idx + e / 100, f"only_{idx}": float(e)}
        if e >= 25:
            metrics["shared"] = float(idx)
        store.add_epoch(run_id, e, metrics)
    store.finish_run(run_id, seconds=0.0)


def test_concurrent_writers(store: Store) -> None:
    ctx = mp.get_context("spawn")
    rids = [store.register_run({**CFG, "seed": i}) for i in range(2)]
    for rid in rids:
        store.claim_run(rid)
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_concurrent_writer, args=(store, rid, i, barrier)) for i, rid in enumerate(rids)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    df = store.epochs_frame()
    assert len(df) == 100
    for i, rid in enumerate(rids):
        part = df[df["run_id"] == rid].set_index("epoch")
        assert list(part.index) == list(range(50))
        assert np.allclose(part["loss"], i + np.arange(50) / 100)
        assert np.allclose(part[f"only_{i}"], np.arange(50))
        assert part[f"only_{1 - i}"].isna().all()
        assert part.loc[25:, "shared"].eq(i).all() and part.loc[:24, "shared"].isna().all()
        assert store.run_status(rid) == "done"


_KILL_ROWS = 100_000


def _killed_writer(db: str, run_id: str, flag: str) -> None:
    """Child: one long add_epochs transaction that parks itself midway (to be SIGKILLed)."""
    store = Store(db)
    conn = store._connection()
    calls = 0

    def progress() -> int:
        nonlocal calls
        if conn.in_transaction:
            calls += 1
            if calls == 1000:  # roughly 40% of the rows are inserted (and spilled to the WAL)
                Path(flag).write_text("in transaction")
                time.sleep(120)
        return 0

    conn.set_progress_handler(progress, 1000)
    store.add_epochs(run_id, ({"epoch": e, "loss": e * 0.5, "acc": 0.1} for e in range(_KILL_ROWS)))


def test_sigkill_mid_transaction_leaves_all_or_none(tmp_path: Path) -> None:
    db = tmp_path / "kill.db"
    with Store(db) as s:
        rid = s.register_run(CFG)
        s.claim_run(rid)
        s.add_epoch(rid, 0, {"loss": 7.0})  # committed before the child starts
    flag = tmp_path / "flag"
    proc = mp.get_context("spawn").Process(target=_killed_writer, args=(str(db), rid, str(flag)))
    proc.start()
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert proc.is_alive() and time.monotonic() < deadline, "child never reached the transaction"
        time.sleep(0.02)
    # The child really holds the write lock, midway through its transaction.
    probe = sqlite3.connect(db, timeout=0, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        probe.execute("BEGIN IMMEDIATE")
    probe.close()
    assert Path(f"{db}-wal").stat().st_size > 1_000_000  # uncommitted pages already in the WAL
    proc.kill()  # SIGKILL
    proc.join(10)
    assert proc.exitcode == -9

    with Store(db) as s:  # none of the killed transaction, the earlier commit intact
        df = s.epochs_frame()
        assert list(df["epoch"]) == [0] and list(df["loss"]) == [7.0]
        assert _scalar(db, "PRAGMA integrity_check") == "ok"
        n = s.add_epochs(rid, ({"epoch": e, "loss": e * 0.5, "acc": 0.1} for e in range(_KILL_ROWS)))
        assert n == _KILL_ROWS  # the database is writable again, the full set lands
    assert _scalar(db, "SELECT COUNT(*) FROM epochs WHERE run_id = ?", (rid,)) == _KILL_ROWS


# --------------------------------------------------------------------------- checkpoints


class _NotAllowed:
    """A custom class: loading it requires full unpickling, which weights_only forbids."""


def test_checkpoint_round_trip_weights_only(store: Store, tmp_path: Path) -> None:
    import torch

    rid = store.register_run(CFG)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    path = store.save_checkpoint(rid, 2, model.state_dict())
    assert path == store.path.parent / "gnsel.db.checkpoints" / rid / "epoch_2.pt"  # the store's own folder
    store.save_checkpoint(rid, 10, {"model": model.state_dict(), "epoch": 10, "lr": [0.1]})
    assert store.checkpoint_epochs(rid) == [2, 10]
    assert sorted(p.name for p in path.parent.iterdir()) == ["epoch_10.pt", "epoch_2.pt"]  # no temp files

    loaded = store.load_checkpoint(rid, 2)
    assert loaded.keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded[key], value) and loaded[key].device.type == "cpu"
    assert store.load_checkpoint(rid, 10)["lr"] == [0.1]

    torch.save({"evil": _NotAllowed()}, path)  # a pickle of an arbitrary object
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as err:
        store.load_checkpoint(rid, 2)
    assert isinstance(err.value.__cause__, pickle.UnpicklingError)  # refused by weights_only
    with pytest.raises(FileNotFoundError):
        store.load_checkpoint(rid, 3)

    other = store.register_run({**CFG, "seed": 1})
    custom = store.save_checkpoint(other, 0, {"w": torch.ones(2)}, root=tmp_path / "ckpts")
    assert custom == (tmp_path / "ckpts" / other / "epoch_0.pt").resolve()
    assert store.checkpoint_epochs(other) == [0]  # the recorded directory is used
    assert torch.equal(store.load_checkpoint(other, 0)["w"], torch.ones(2))


# --------------------------------------------------------------------------- export


def _normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Missing values as None and numbers as float, so CSV and Parquet reads compare equal."""
    def fix(v: object) -> object:
        return float(v) if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else v

    out = df.astype(object).where(df.notna(), None)
    return out.apply(lambda col: col.map(fix))


def test_export_csv_and_parquet_equal(store: Store, tmp_path: Path) -> None:
    import pandas as pd  # imported here: spawned children import this module, keep it light

    configs = [
        {**CFG, "hidden": [64, 32]},
        {**CFG, "seed": 1, "width": "auto", "opt": {"name": "adam"}},
        {**CFG, "seed": 2, "dropout": None},
    ]
    rids = [store.register_run(c) for c in configs]
    store.claim_run(rids[0])
    store.add_epochs(rids[0], [(e, {"loss": 1 / (e + 1), "acc": None if e == 0 else 0.5}) for e in range(3)])
    store.finish_run(rids[0], 3.25, {"note": "ok"})
    store.claim_run(rids[1])
    store.fail_run(rids[1], 'ValueError: bad, "quoted"\nsecond line')
    store.put_measure(rids[0], 2, "gn", 0.75, seconds=0.1)
    store.put_measure(rids[0], 2, "sharpness", error="diverged, nan")

    paths = store.export(tmp_path / "out")
    assert sorted(p.name for p in paths) == sorted(
        f"{n}.{f}" for n in ("runs", "epochs", "measures") for f in ("csv", "parquet")
    )
    for name in ("runs", "epochs", "measures"):
        csv = pd.read_csv(tmp_path / "out" / f"{name}.csv")
        pq = pd.read_parquet(tmp_path / "out" / f"{name}.parquet")
        assert list(csv.columns) == list(pq.columns)
        pd.testing.assert_frame_equal(_normalise(csv), _normalise(pq))
    runs = pd.read_parquet(tmp_path / "out" / "runs.parquet")
    assert len(runs) == 3 and runs.loc[1, "error"].endswith("second line")
    assert runs.loc[0, "cfg.hidden"] == "[64, 32]"  # lists exported as JSON text
    epochs = pd.read_csv(tmp_path / "out" / "epochs.csv")
    assert len(epochs) == 3 and epochs["acc"].isna().sum() == 1
    assert store.export(tmp_path / "only_csv", formats=("csv",))[0].suffix == ".csv"
    with pytest.raises(ValueError):
        store.export(tmp_path / "bad", formats=("xlsx",))
