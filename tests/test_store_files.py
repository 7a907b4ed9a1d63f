"""The store's files (issue #13, items 3 and 6): one-line errors for a file that is not a store, a read-only place
or a full disk, with nothing written; checkpoints kept per store and found after a move; a corrupt checkpoint
makes that run's measures NaN with a counted warning instead of aborting ``gnsel correlate``."""

from __future__ import annotations

import math
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from gnsel.cli import app
from gnsel.store import CheckpointError, NotAStoreError, ReadOnlyStoreError, Store, StoreFullError

CFG = {"model": "mlp", "width": 8, "seed": 0}
TINY = {
    "dataset": "mnist1d", "dataset_kwargs": {"num_samples": 600},
    "models": {"mlp": {"width": 8}}, "train": {"lr": 0.05, "epochs": 1, "probe_size": 16, "n_train": 200},
}  # fmt: skip


pytestmark = pytest.mark.usefixtures("isolated_data_root")  # generated data in a folder of the module's own


def _finished_store(path: Path, n: int = 3) -> list[str]:
    """A store with ``n`` done runs of three epochs each (no training)."""
    with Store(path) as s:
        ids = s.register_runs([{**CFG, "seed": k} for k in range(n)])
        for rid in ids:
            s.claim_run(rid)
            s.add_epochs(rid, [(e, {"train_loss": 1.0 / (e + 1)}) for e in range(3)])
            s.finish_run(rid, 1.0, {"stop_epoch": 2})
    return ids


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _one_line_error(result, needle: str) -> None:
    """Exit code 2, one ``error:`` message (Rich may wrap it at the terminal width), no traceback."""
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1 and needle in text, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


# --------------------------------------------------------------------------- not a store


def _bad_file(kind: str, path: Path, tmp_path: Path) -> None:
    if kind == "random":
        path.write_bytes(os.urandom(5000))
    elif kind == "text":
        path.write_text("run_id,status\nabc,done\n")
    elif kind == "truncated":
        good = tmp_path / "good.sqlite"
        _finished_store(good, n=200)
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    elif kind == "foreign":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE songs (title TEXT)")
        conn.commit()
        conn.close()


@pytest.mark.parametrize("kind", ["random", "text", "truncated", "foreign"])
def test_a_file_that_is_not_a_store_is_refused_in_one_line_and_left_alone(kind: str, tmp_path: Path) -> None:
    folder = tmp_path / "zoo"
    folder.mkdir()
    db = folder / "zoo.sqlite"
    _bad_file(kind, db, tmp_path)
    before = _snapshot(folder)
    with pytest.raises(NotAStoreError, match="is not a gnsel store"):
        Store(db)
    with pytest.raises(NotAStoreError):
        Store(db, mode="r")
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(TINY))
    runner = CliRunner()
    for args in (["zoo", "status"], ["zoo", "export", "--out", str(tmp_path / "out")],
                 ["zoo", "build", "--grid", str(grid), "--workers", "1"],
                 ["correlate", "--measures", "gn_full", "--out", str(tmp_path / "c")]):  # fmt: skip
        _one_line_error(runner.invoke(app, [*args, "--store", str(db)]), f"{db} is not a gnsel store")
    assert _snapshot(folder) == before and sorted(p.name for p in folder.iterdir()) == ["zoo.sqlite"]


def test_random_bytes_name_the_file(tmp_path: Path) -> None:
    db = tmp_path / "zoo.sqlite"
    db.write_bytes(os.urandom(3000))
    result = CliRunner().invoke(app, ["zoo", "status", "--store", str(db)])
    _one_line_error(result, f"error: {db} is not a gnsel store (file is not a database)")


def test_an_empty_file_is_no_store_to_read_but_can_become_one(tmp_path: Path) -> None:
    db = tmp_path / "zoo.sqlite"
    db.touch()
    _one_line_error(CliRunner().invoke(app, ["zoo", "status", "--store", str(db)]), "an empty file")
    assert db.stat().st_size == 0
    Store(db).register_run(CFG)  # a writing command initialises it


# --------------------------------------------------------------------------- read-only


def test_a_read_only_store_reads_and_refuses_writes(tmp_path: Path, monkeypatch) -> None:
    db = tmp_path / "zoo.sqlite"
    ids = _finished_store(db)
    before = db.read_bytes()
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: not mode & os.W_OK and access(p, mode, **k))  # no writing
    store = Store(db)
    assert store.readonly and list(store.runs_frame()["status"]) == ["done"] * 3
    for write in (lambda: store.register_run({**CFG, "seed": 9}), lambda: store.claim(ids[0]),
                  lambda: store.put_measure(ids[0], 2, "gn", 1.0), lambda: store.save_checkpoint(ids[0], 2, {"w": 1})):  # fmt: skip
        with pytest.raises(ReadOnlyStoreError, match=f"{db} is read-only"):
            write()
    with pytest.raises(ReadOnlyStoreError, match="read-only"):
        Store(db, mode="w")
    with pytest.raises(ReadOnlyStoreError, match="cannot create the store"):
        Store(tmp_path / "new.sqlite")
    runner = CliRunner()
    status = runner.invoke(app, ["zoo", "status", "--store", str(db)])
    assert status.exit_code == 0 and "done: 3" in status.output, status.output
    exported = runner.invoke(app, ["zoo", "export", "--store", str(db), "--out", str(tmp_path / "out")])
    assert exported.exit_code == 0, exported.output
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(TINY))
    built = runner.invoke(app, ["zoo", "build", "--grid", str(grid), "--store", str(db), "--workers", "1"])
    _one_line_error(built, "is read-only")
    store.close()
    assert db.read_bytes() == before


def _unshare_works() -> bool:
    if sys.platform != "linux" or shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    return subprocess.run(["unshare", "--user", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="needs root and `unshare --user` to drop write permissions for real")
def test_a_really_read_only_folder(tmp_path: Path) -> None:
    """The folder and files are not writable for real (root without capabilities, in a user namespace): status
    reads a finished store, even one whose write-ahead log was left beside it; a build says read-only."""
    ro = tmp_path / "ro"
    ro.mkdir()
    _finished_store(ro / "zoo.sqlite")
    keep = sqlite3.connect(tmp_path / "wal.sqlite")  # a store with commits still only in its log
    Store(tmp_path / "wal.sqlite").close()
    keep.execute("PRAGMA wal_autocheckpoint = 0")
    keep.execute("INSERT INTO runs (run_id, config_json, status) VALUES ('late', '{}', 'failed')")
    keep.commit()
    shutil.copy(tmp_path / "wal.sqlite", ro / "wal.sqlite")
    shutil.copy(tmp_path / "wal.sqlite-wal", ro / "wal.sqlite-wal")
    keep.close()
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(TINY))
    for p in ro.iterdir():
        p.chmod(0o444)
    ro.chmod(0o555)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))

    def gnsel(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["unshare", "--user", sys.executable, "-m", "gnsel.cli", *args], env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    try:
        before = _snapshot(ro)
        status = gnsel("zoo", "status", "--store", str(ro / "zoo.sqlite"))
        assert status.returncode == 0 and "done: 3" in status.stdout, status.stdout + status.stderr
        wal = gnsel("zoo", "status", "--store", str(ro / "wal.sqlite"))
        assert wal.returncode == 0 and "failed: 1" in wal.stdout, wal.stdout + wal.stderr
        built = gnsel("zoo", "build", "--grid", str(grid), "--store", str(ro / "zoo.sqlite"), "--workers", "1")
        assert built.returncode == 2 and "is read-only" in " ".join(built.stdout.split()), built.stdout + built.stderr
        assert "Traceback" not in built.stdout + built.stderr
        assert _snapshot(ro) == before
    finally:
        ro.chmod(0o755)


# --------------------------------------------------------------------------- full disk


def _full_after(monkeypatch, pages: int) -> None:
    """Every new connection may grow its database to ``pages`` pages only (SQLite then says: disk full)."""
    connect = sqlite3.connect

    def limited(*args, **kwargs):
        conn = connect(*args, **kwargs)
        conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn

    monkeypatch.setattr(sqlite3, "connect", limited)


def test_a_full_disk_is_one_line_and_keeps_what_was_committed(tmp_path: Path, monkeypatch) -> None:
    db = tmp_path / "zoo.sqlite"
    store = Store(db)
    rid = store.register_run(CFG)
    store.add_epochs(rid, [(0, {"loss": 1.0})])
    pages = store._read("PRAGMA page_count")[0][0]
    store.close()
    _full_after(monkeypatch, pages + 1)
    store = Store(db)
    with pytest.raises(StoreFullError, match=f"{db}: database or disk is full") as err:
        store.add_epochs(rid, [(e, {"loss": 1.0, "x": 2.0}) for e in range(1, 20_000)])
    assert "\n" not in str(err.value)
    assert store.epochs_frame()["epoch"].tolist() == [0]


def test_a_full_disk_stops_the_build_with_one_line(tmp_path: Path, monkeypatch) -> None:
    db = tmp_path / "zoo.sqlite"
    with Store(db) as store:
        pages = store._read("PRAGMA page_count")[0][0]
    _full_after(monkeypatch, pages)  # the schema fits; no page more
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({**TINY, "train": {**TINY["train"], "epochs": 40, "stop_loss": None}}))
    result = CliRunner().invoke(app, ["zoo", "build", "--grid", str(grid), "--store", str(db), "--workers", "1"])
    _one_line_error(result, "database or disk is full")
    monkeypatch.undo()
    store = Store(db)
    assert set(store.runs_frame()["status"]) == {"pending"}  # the claim was given back at once
    again = CliRunner().invoke(app, ["zoo", "build", "--grid", str(grid), "--store", str(db), "--workers", "1"])
    assert again.exit_code == 0, again.output  # with space again, the run is redone from scratch
    assert store.epochs_frame()["epoch"].tolist() == list(range(41))


# --------------------------------------------------------------------------- checkpoints


def test_stores_in_one_folder_keep_their_own_checkpoints(tmp_path: Path) -> None:
    a, b = Store(tmp_path / "a.sqlite"), Store(tmp_path / "b.sqlite")
    rid = a.register_run(CFG)
    assert b.register_run(CFG) == rid  # the same configuration: the same run id in both
    for s, value in ((a, 1.0), (b, 2.0)):
        s.claim_run(rid)
        s.save_checkpoint(rid, 0, {"w": torch.tensor([value])})
    a.finish_run(rid, 1.0)
    assert (tmp_path / "a.sqlite.checkpoints" / rid / "epoch_0.pt").is_file()
    assert (tmp_path / "b.sqlite.checkpoints" / rid / "epoch_0.pt").is_file()
    b.fail_run(rid, "oops")
    assert b.claim_run(rid)  # b's retry deletes b's files only
    assert b.checkpoint_epochs(rid) == [] and a.checkpoint_epochs(rid) == [0]
    assert a.load_checkpoint(rid, 0)["w"].item() == 1.0


def test_a_moved_zoo_folder_keeps_its_checkpoints(tmp_path: Path) -> None:
    old = tmp_path / "old"
    store = Store(old / "zoo.sqlite")
    rid = store.register_run(CFG)
    store.save_checkpoint(rid, 3, {"w": torch.ones(2)})
    assert store.get_run(rid)["checkpoint_dir"] == f"zoo.sqlite.checkpoints/{rid}"  # relative to the store's folder
    store.close()
    shutil.move(old, tmp_path / "new")
    moved = Store(tmp_path / "new" / "zoo.sqlite")
    assert moved.checkpoint_epochs(rid) == [3]
    assert torch.equal(moved.load_checkpoint(rid, 3)["w"], torch.ones(2))


def test_absolute_records_of_older_stores_still_read_and_are_never_emptied(tmp_path: Path) -> None:
    shared = tmp_path / "checkpoints"  # the old layout: one folder for every store beside each other
    store = Store(tmp_path / "zoo.sqlite")
    rid, moved_rid = store.register_runs([CFG, {**CFG, "seed": 1}])
    torch.save({"w": torch.zeros(1)}, (shared / rid).mkdir(parents=True) or shared / rid / "epoch_1.pt")
    torch.save({"w": torch.ones(1)}, (shared / moved_rid).mkdir(parents=True) or shared / moved_rid / "epoch_2.pt")
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE runs SET checkpoint_dir = ? WHERE run_id = ?", (str(shared / rid), rid))
        conn.execute("UPDATE runs SET checkpoint_dir = ? WHERE run_id = ?",
                     (f"/somewhere/gone/checkpoints/{moved_rid}", moved_rid))  # fmt: skip
    assert store.checkpoint_epochs(rid) == [1]  # the absolute record exists: used
    assert store.checkpoint_epochs(moved_rid) == [2]  # gone: re-based onto the store's folder
    assert store.claim_run(rid)  # a retry forgets the shared folder, never empties it (another store's?)
    assert (shared / rid / "epoch_1.pt").is_file() and store.checkpoint_epochs(rid) == []


def test_an_unreadable_checkpoint_is_a_one_line_checkpoint_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "zoo.sqlite")
    rid = store.register_run(CFG)
    path = store.save_checkpoint(rid, 1, {"w": torch.ones(1)})
    for content in (os.urandom(2000), b""):
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=f"run {rid}: cannot read checkpoint {path}") as err:
            store.load_checkpoint(rid, 1)
        assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def corrupt_zoo(tmp_path_factory):
    """Six runs; the last checkpoints of three are random bytes, empty, and a state dict of other keys."""
    from gnsel.zoo import build_zoo, load_grid

    root = tmp_path_factory.mktemp("corrupt")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GNSEL_DATA_ROOT", str(root / "data"))
        grid = load_grid({**TINY, "models": {"mlp": {"width": [8, 12, 16]}}, "train": {**TINY["train"], "lr": [0.02, 0.1]}})
        db = root / "zoo.sqlite"
        assert build_zoo(grid.configs, db, workers=1).ok
    store = Store(db)
    ids = [c.run_id() for c in grid.configs]
    last = {rid: max(store.checkpoint_epochs(rid)) for rid in ids}
    for rid, content in zip(ids[:3], (os.urandom(4000), b"", None)):
        path = db.parent / "zoo.sqlite.checkpoints" / rid / f"epoch_{last[rid]}.pt"
        if content is None:
            torch.save({"not_a_layer.weight": torch.zeros(3)}, path)
        else:
            path.write_bytes(content)
    return db, ids


def test_correlate_scores_the_rest_and_counts_the_unreadable(corrupt_zoo, tmp_path: Path) -> None:
    from gnsel.zoo.correlate import correlate

    db, ids = corrupt_zoo
    report = correlate(db, measures=["dist_from_init", "gn_full"], per_epoch=False)
    assert sorted(report.unreadable) == sorted(ids[:3])
    assert all(rid in line for rid, line in report.unreadable.items())
    assert "does not fit its model" in report.unreadable[ids[2]]
    values = report.values["dist_from_init"]
    assert values[ids[:3]].isna().all() and values[ids[3:]].map(math.isfinite).all()
    assert report.values["gn_full"].map(math.isfinite).all()  # recorded every epoch: not from checkpoints
    assert report.scores.loc["dist_from_init", "n"] == 3 and report.scores.loc["gn_full", "n"] == 6
    assert set(Store(db).get_measures()["run_id"]) == set(ids[3:])  # nothing cached for the unreadable runs
    result = CliRunner().invoke(app, ["correlate", "--store", str(db), "--measures", "dist_from_init,gn_full",
                                      "--out", str(tmp_path / "c"), "--no-per-epoch"])  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "warning: 3 of 6 runs have no readable checkpoint" in text and all(rid in text for rid in ids[:3])
