"""Claims with an owner, a heartbeat and a lease (issue #13, item 1): a second store or build never takes over
a run a live owner is training, a stale writer is refused, and two builds on one store train each run once."""

from __future__ import annotations

import multiprocessing as mp
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from gnsel.store import CLAIMED, DONE, FAILED, HELD, StaleClaimError, Store
from gnsel.store.claims import owner_gone, pid_alive

CFG = {"model": "mlp", "width": 8, "seed": 0}


def _epochs(store: Store, rid: str) -> list[int]:
    return sorted(store.epochs_frame([rid])["epoch"].tolist())


# --------------------------------------------------------------------------- the race of the issue


def test_second_store_leaves_a_live_owners_run_alone(tmp_path: Path) -> None:
    """The reproduction of issue #13: a.claim, a.add_epochs(0, 1); b.reset_running(); b.claim_run; a.add_epochs(2);
    a.finish_run. It used to end 'done' with epochs [2]; now b takes nothing and a's run is complete."""
    db = tmp_path / "zoo.sqlite"
    a = Store(db)
    rid = a.register_run(CFG)
    assert a.claim_run(rid)
    a.add_epochs(rid, [(0, {"loss": 1.0}), (1, {"loss": 0.5})])
    b = Store(db)
    assert b.reset_running() == 0  # a is alive and its heartbeat fresh
    assert b.claim_run(rid) is False and b.claim(rid) == HELD
    a.add_epochs(rid, [(2, {"loss": 0.25})])
    a.finish_run(rid, 1.0)
    assert b.run_status(rid) == "done" and _epochs(b, rid) == [0, 1, 2]
    assert b.get_run(rid)["attempts"] == 1 and b.claim(rid) == DONE


def test_takeover_after_the_lease_refuses_the_stale_writer(tmp_path: Path) -> None:
    """When a's lease has run out (as far as b can tell), b takes the run over; every later write of a (epoch,
    checkpoint, finish, fail) is refused, and the run ends done with all of b's epochs."""
    db = tmp_path / "zoo.sqlite"
    a = Store(db)
    rid = a.register_run(CFG)
    a.claim_run(rid)
    a.add_epochs(rid, [(0, {"loss": 1.0}), (1, {"loss": 0.5})])
    a.save_checkpoint(rid, 0, {"w": [1.0]})
    b = Store(db, lease=0.0)
    assert b.reset_running() == 1 and b.run_status(rid) == "pending"
    assert b.claim(rid) == CLAIMED
    assert _epochs(b, rid) == [] and b.checkpoint_epochs(rid) == []  # a's partial attempt is gone
    for write in (lambda: a.add_epochs(rid, [(2, {"loss": 0.25})]), lambda: a.save_checkpoint(rid, 2, {"w": [2.0]}),
                  lambda: a.finish_run(rid, 1.0), lambda: a.fail_run(rid, "boom"), lambda: a.heartbeat(rid)):  # fmt: skip
        with pytest.raises(StaleClaimError, match=f"run {rid} is no longer held"):
            write()
    assert _epochs(b, rid) == [] and b.checkpoint_epochs(rid) == []  # nothing of a's landed, not even a file
    folder = db.parent / "zoo.sqlite.checkpoints" / rid
    assert not folder.exists() or not any(folder.iterdir())
    b.add_epochs(rid, [(e, {"loss": 1.0 / (e + 1)}) for e in range(3)])
    b.save_checkpoint(rid, 2, {"w": [3.0]})
    b.finish_run(rid, 2.0)
    assert b.run_status(rid) == "done" and _epochs(b, rid) == [0, 1, 2] and b.checkpoint_epochs(rid) == [2]
    with pytest.raises(StaleClaimError):  # still refused after b finished
        a.add_epochs(rid, [(3, {"loss": 0.0})])


def _claim_and_sleep(db: str, rid: str, ready) -> None:
    store = Store(db)
    store.claim_run(rid)
    store.add_epoch(rid, 0, {"loss": 1.0})
    ready.set()
    time.sleep(120)


def test_a_dead_owner_on_this_host_is_gone_at_once(tmp_path: Path) -> None:
    """A claimant killed with SIGKILL: its heartbeat is fresh, but its pid is dead, so its run is free now."""
    db = tmp_path / "zoo.sqlite"
    rid = Store(db).register_run(CFG)
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_claim_and_sleep, args=(str(db), rid, ready))
    proc.start()
    assert ready.wait(60)
    other = Store(db)
    assert other.claim(rid) == HELD and other.reset_running() == 0
    assert rid in other.live_claims()
    proc.kill()
    proc.join(10)
    assert other.live_claims() == {}
    assert other.reset_running() == 1 and other.claim(rid) == CLAIMED
    assert _epochs(other, rid) == []


def test_liveness_rules() -> None:
    host, now = socket.gethostname(), time.time()
    zombie = subprocess.Popen(["sleep", "30"])
    zombie.kill()
    time.sleep(0.2)  # killed, not yet reaped: a zombie
    try:
        assert not pid_alive(zombie.pid)
        assert owner_gone(f"{host}:{zombie.pid}:x", now, now, 60.0)
    finally:
        zombie.wait()
    assert not owner_gone(f"{host}:{__import__('os').getpid()}:x", now, now, 60.0)
    assert owner_gone(f"{host}:{__import__('os').getpid()}:x", now - 61, now, 60.0)  # a stale heartbeat
    assert not owner_gone("elsewhere:1:x", now - 30, now, 60.0)  # another host: the lease alone decides
    assert owner_gone("elsewhere:1:x", now - 61, now, 60.0)
    assert owner_gone(None, None, now, 60.0)  # a run of an older store, without an owner


def test_a_retry_of_the_same_task_takes_over_and_the_driver_can_fail_it(tmp_path: Path) -> None:
    db = tmp_path / "zoo.sqlite"
    driver = Store(db, owner="far:1:build")
    rid, other_rid = driver.register_runs([CFG, {**CFG, "seed": 1}])
    first = Store(db, owner="far:1:build/0#try1")
    assert first.claim(rid) == CLAIMED
    assert Store(db, owner="far:9:other/0#try1").claim(rid) == HELD  # another build: held (a fresh heartbeat)
    retry = Store(db, owner="far:1:build/0#try2")
    assert retry.claim(rid) == CLAIMED and retry.get_run(rid)["attempts"] == 2  # Ray re-ran the task
    with pytest.raises(StaleClaimError):
        first.add_epoch(rid, 0, {"loss": 1.0})
    with pytest.raises(StaleClaimError):
        driver.fail_run(rid, "worker lost", owner="far:1:build/1")  # another task's token
    driver.fail_run(rid, "worker lost", owner="far:1:build/0")  # the task's own lineage
    assert driver.get_run(rid)["status"] == "failed"
    with pytest.raises(StaleClaimError):
        driver.fail_run(other_rid, "never claimed", owner="far:1:build/1")


def test_a_run_failed_since_the_plan_is_not_redone(tmp_path: Path) -> None:
    store = Store(tmp_path / "zoo.sqlite")
    rid = store.register_run(CFG)
    store.claim_run(rid)
    store.fail_run(rid, "diverged")
    assert store.claim_state(rid, seen_attempts=0) == FAILED  # another build tried it after we looked
    assert store.claim(rid, seen_attempts=0) == FAILED and store.get_run(rid)["attempts"] == 1
    assert store.claim(rid, seen_attempts=1) == CLAIMED  # we saw that failure: retry it


def test_keep_alive_refreshes_the_heartbeat_and_notices_a_takeover(tmp_path: Path) -> None:
    db = tmp_path / "zoo.sqlite"
    store = Store(db)
    rid = store.register_run(CFG)
    store.claim_run(rid)

    def beat() -> float:
        return sqlite3.connect(db).execute("SELECT heartbeat FROM runs WHERE run_id = ?", (rid,)).fetchone()[0]

    first = beat()
    with store.keep_alive(rid, every=0.05) as lost:
        time.sleep(0.3)
        assert beat() > first and not lost.is_set()
        assert Store(db, lease=0.0).claim(rid) == CLAIMED
        assert lost.wait(5)
    with pytest.raises(StaleClaimError):
        store.add_epoch(rid, 0, {"loss": 1.0})


def test_a_version_1_store_is_migrated_and_its_running_runs_are_gone(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE runs (run_id TEXT PRIMARY KEY, config_json TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'running', 'done', 'failed')), error TEXT, attempts INTEGER NOT NULL DEFAULT 0,
            started_at TEXT, finished_at TEXT, seconds REAL, checkpoint_dir TEXT, extra_json TEXT);
        CREATE TABLE epochs (run_id TEXT NOT NULL, epoch INTEGER NOT NULL, PRIMARY KEY (run_id, epoch));
        CREATE TABLE measures (run_id TEXT NOT NULL, epoch INTEGER NOT NULL, measure TEXT NOT NULL, value REAL,
            error TEXT, seconds REAL, PRIMARY KEY (run_id, epoch, measure));
        INSERT INTO runs (run_id, config_json, status, attempts) VALUES ('r1', '{}', 'running', 1);
    """)
    conn.commit()
    conn.close()
    reader = Store(db, mode="r")  # reading never migrates
    assert reader.run_status("r1") == "running" and reader.live_claims() == {}
    reader.close()
    assert sqlite3.connect(db).execute("SELECT value FROM meta").fetchone()[0] == "1"
    store = Store(db)
    assert sqlite3.connect(db).execute("SELECT value FROM meta").fetchone()[0] == "2"
    assert store.reset_running() == 1  # no owner recorded: its build is gone
    assert store.claim("r1") == CLAIMED


# --------------------------------------------------------------------------- builds


def _tiny_configs(n: int = 6, epochs: int = 2):
    from gnsel.zoo import load_grid

    return load_grid({
        "dataset": "mnist1d", "dataset_kwargs": {"num_samples": 600},
        "models": {"mlp": {"width": [8 + 4 * k for k in range(n)]}},
        "train": {"lr": 0.05, "epochs": epochs, "probe_size": 16, "n_train": 200, "stop_loss": None},
    }).configs  # fmt: skip


def _build(db: str, barrier, results) -> None:
    from gnsel.zoo import build_zoo
    from gnsel.zoo import build as build_module

    build_module.POLL_SECONDS = 0.2
    barrier.wait()
    s = build_zoo(_tiny_configs(), db, workers=1)
    results.put({"done": s.done, "failed": s.failed, "elsewhere": s.elsewhere, "skipped": s.skipped, "ok": s.ok})


def _check_complete(store: Store, configs) -> None:
    runs = store.runs_frame().set_index("run_id")
    for cfg in configs:
        rid = cfg.run_id()
        assert runs.loc[rid, "status"] == "done"
        assert _epochs(store, rid) == list(range(cfg.epochs + 1)), rid
        assert store.checkpoint_epochs(rid) == [0, cfg.epochs]


def test_two_concurrent_builds_train_each_run_once(tmp_path: Path, monkeypatch) -> None:
    db = tmp_path / "zoo.sqlite"
    monkeypatch.setenv("GNSEL_DATA_ROOT", str(tmp_path / "data"))
    configs = _tiny_configs()
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_build, args=(str(db), barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    out = [results.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sum(r["done"] for r in out) == len(configs)  # every run trained by exactly one of the builds
    assert all(r["ok"] and r["failed"] == 0 for r in out)
    assert all(r["done"] + r["elsewhere"] + r["skipped"] == len(configs) for r in out)
    store = Store(db)
    assert (store.runs_frame()["attempts"] == 1).all()  # claimed once each: no training redone
    _check_complete(store, configs)


def test_a_build_waits_for_a_run_held_elsewhere(tmp_path: Path, monkeypatch) -> None:
    from gnsel.zoo import build as build_module
    from gnsel.zoo import build_zoo

    monkeypatch.setenv("GNSEL_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setattr(build_module, "POLL_SECONDS", 0.1)
    configs = _tiny_configs(3)
    db = tmp_path / "zoo.sqlite"
    holder = Store(db)
    ids = holder.register_runs([c.to_dict() for c in configs])
    assert holder.claim(ids[0]) == CLAIMED

    def finish_elsewhere() -> None:  # the other build finishes its run a little later
        time.sleep(1.5)
        holder.add_epochs(ids[0], [(e, {"loss": 1.0}) for e in range(configs[0].epochs + 1)])
        holder.finish_run(ids[0], 1.0, {"stop_epoch": configs[0].epochs})

    thread = threading.Thread(target=finish_elsewhere)
    thread.start()
    summary = build_zoo(configs, db, workers=1)
    thread.join()
    assert summary.done == 2 and summary.elsewhere == 1 and summary.ok
    assert Store(db).get_run(ids[0])["attempts"] == 1


def test_a_worker_whose_run_is_taken_over_stops_quietly(tmp_path: Path, monkeypatch) -> None:
    from gnsel.zoo import build as build_module

    monkeypatch.setenv("GNSEL_DATA_ROOT", str(tmp_path / "data"))
    cfg = _tiny_configs(1)[0]
    db = tmp_path / "zoo.sqlite"
    rid = Store(db).register_run(cfg.to_dict())

    def fake_train(config, *, on_epoch, on_checkpoint):
        on_epoch(0, {"epoch": 0, "loss": 1.0})
        assert Store(db, lease=0.0).claim(rid) == CLAIMED  # another build decides this one is gone
        on_epoch(1, {"epoch": 1, "loss": 0.5})
        raise AssertionError("not reached: the stale write is refused")

    monkeypatch.setattr(build_module, "train", fake_train)
    assert build_module.run_one(cfg.to_dict(), str(db)) == (rid, "held", None)
    store = Store(db)
    assert store.run_status(rid) == "running" and _epochs(store, rid) == []  # the new owner's, untouched
