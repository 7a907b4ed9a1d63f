"""Who trains a run: claims with an owner token, a heartbeat and a lease.

A claim records, in the run's row, an **owner token** ``<host>:<pid>:<random>`` and a **heartbeat** (Unix
time). Every write a claimant makes for its run (an epoch, a checkpoint, finishing or failing it) checks, in
the same ``BEGIN IMMEDIATE`` transaction, that the row still names its token, refreshes the heartbeat, and is
refused with :class:`~gnsel.store.errors.StaleClaimError` otherwise; :meth:`Store.keep_alive` refreshes it
every :data:`HEARTBEAT_SECONDS` between writes.

Another process may take a ``running`` run over (claim it, or reset it to ``pending``) only when its owner is
provably gone: the heartbeat is older than :data:`LEASE_SECONDS`, or the owner ran on this host and its pid
is no longer alive (a zombie counts as gone). Clocks of different hosts must agree to well within the lease.

A token may carry a ``/<k>`` part (a build hands run ``k`` to a worker) and a ``#<attempt>`` part (that
worker's try): a claim by a token of the same *lineage* (everything before ``#``) takes the run over at once:
it is a retry of the same task (Ray re-running it after its worker died), and the older try is refused.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .checkpoints import default_dir, remove_states
from .errors import StaleClaimError
from .schema import _now

__all__ = [
    "CLAIMED", "DONE", "FAILED", "HEARTBEAT_SECONDS", "HELD", "LEASE_SECONDS", "ClaimsMixin", "decide", "lineage",
    "new_owner", "owner_gone", "pid_alive",
]  # fmt: skip

LEASE_SECONDS = 60.0
"""A ``running`` run whose heartbeat is older than this is free for another claimant."""

HEARTBEAT_SECONDS = 10.0
"""How often :meth:`Store.keep_alive` refreshes a claim's heartbeat (well inside the lease)."""

# What a claim found (Store.claim's result)
CLAIMED = "claimed"  # the run is now this claimant's, restarted from scratch
DONE = "done"  # finished (by anyone): never redone
FAILED = "failed"  # failed again after the attempt count the caller had seen: another claimant tried it
HELD = "held"  # running under a live owner of another lineage


def new_owner() -> str:
    """A fresh owner token for this process: ``<host>:<pid>:<12 hex digits>``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def lineage(token: str) -> str:
    """The token without its ``#<attempt>`` part: tries of one task share it."""
    return token.split("#", 1)[0]


def pid_alive(pid: int) -> bool:
    """Whether a process of this host with that pid exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS) or it just exited
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def owner_gone(owner: str | None, heartbeat: float | None, now: float, lease: float) -> bool:
    """Whether the claimant ``owner`` provably stopped: no owner (a store of an older gnsel), a heartbeat
    older than ``lease`` seconds, or a dead pid on this host."""
    if not owner or heartbeat is None or now - float(heartbeat) > lease:
        return True
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        return not pid_alive(int(pid))
    return False


def decide(row: tuple[Any, ...], me: str, seen_attempts: int | None, lease: float) -> str:
    """What claiming a run with ``row = (status, attempts, owner, heartbeat)`` by token ``me`` gives.

    :data:`DONE`, :data:`FAILED` (it failed after the caller saw ``seen_attempts`` attempts: another build
    tried it meanwhile), :data:`HELD` (running under a live owner of another lineage) or :data:`CLAIMED`
    (free: pending, failed, or running under a gone owner or one of our own lineage).
    """
    status, attempts, owner, heartbeat = row
    if status == "done":
        return DONE
    if status == "failed" and seen_attempts is not None and int(attempts) > seen_attempts:
        return FAILED
    if status == "running" and owner and lineage(owner) != lineage(me):
        if not owner_gone(owner, heartbeat, time.time(), lease):
            return HELD
    return CLAIMED


class ClaimsMixin:
    """The claim part of :class:`gnsel.store.Store`: claim, check, heartbeat, release and reset runs.

    Needs the store's ``path``, ``owner``, ``lease``, ``_claims`` (the run ids this object claimed: writes for
    them are checked) and ``_write(fn)`` / ``_read(sql, params)``.
    """

    path: Path
    owner: str
    lease: float
    _claims: set[str]
    _write: Any
    _read: Any

    def claim(self, run_id: str, *, seen_attempts: int | None = None) -> str:
        """Claim a run for this store's owner unless it is done or held; return what happened.

        :data:`CLAIMED`: the run is ``running`` under this owner (attempts + 1, heartbeat now), restarted from
        scratch: its epoch and measure rows and the files of its checkpoint folder in this store's
        ``<name>.checkpoints/`` are deleted in the same transaction (a folder recorded elsewhere is only
        forgotten, never emptied: it may be another store's). :data:`DONE`, :data:`HELD` (a live owner of
        another lineage has it: leave it alone) and :data:`FAILED` (it failed after ``seen_attempts``
        attempts, i.e. someone else tried it since the caller looked) claim nothing. KeyError if unknown.
        """

        def do(conn: sqlite3.Connection) -> str:
            row = conn.execute(
                "SELECT status, attempts, owner, heartbeat FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is None:
                raise KeyError(f"unknown run {run_id!r}")
            result = decide(row, self.owner, seen_attempts, self.lease)
            if result != CLAIMED:
                return result
            conn.execute(
                "UPDATE runs SET status = 'running', attempts = attempts + 1, started_at = ?, finished_at = NULL,"
                " seconds = NULL, error = NULL, checkpoint_dir = NULL, owner = ?, heartbeat = ? WHERE run_id = ?",
                (_now(), self.owner, time.time(), run_id),
            )
            conn.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM measures WHERE run_id = ?", (run_id,))
            remove_states(default_dir(self.path, run_id))  # under the write lock: see save_checkpoint
            return CLAIMED

        result = self._write(do)
        if result == CLAIMED:
            self._claims.add(run_id)
        return result

    def claim_run(self, run_id: str) -> bool:
        """:meth:`claim` as a bool: True if this owner now holds the run (False: done, or held by a live owner)."""
        return self.claim(run_id) == CLAIMED

    def claim_state(self, run_id: str, *, seen_attempts: int | None = None) -> str:
        """What :meth:`claim` would return now, without claiming (:data:`CLAIMED` meaning "free")."""
        rows = self._read("SELECT status, attempts, owner, heartbeat FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise KeyError(f"unknown run {run_id!r}")
        return decide(rows[0], self.owner, seen_attempts, self.lease)

    def _guard(self, conn: sqlite3.Connection, run_id: str, owner: str | None = None) -> None:
        """Inside a write transaction: refuse (StaleClaimError) a write for a run this object claimed, or that
        ``owner`` (a lineage) claimed, but that is no longer theirs; refresh the heartbeat when it is."""
        if owner is None and run_id not in self._claims:
            return  # a writer that never claimed the run (a single-writer tool): not checked
        row = conn.execute("SELECT status, owner FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(f"unknown run {run_id!r}")
        status, holder = row
        mine = holder == self.owner if owner is None else bool(holder) and lineage(holder) in (owner, lineage(owner))
        if status != "running" or not mine:
            now = f"{status} under {holder}" if holder and status == "running" else status
            raise StaleClaimError(f"run {run_id} is no longer held by {owner or self.owner} (it is {now})")
        conn.execute("UPDATE runs SET heartbeat = ? WHERE run_id = ?", (time.time(), run_id))

    def heartbeat(self, run_id: str) -> None:
        """Refresh this owner's claim of a run; StaleClaimError if it is no longer this owner's."""
        self._claims.add(run_id)
        self._write(lambda conn: self._guard(conn, run_id))

    @contextlib.contextmanager
    def keep_alive(self, run_id: str, every: float = HEARTBEAT_SECONDS) -> Iterator[threading.Event]:
        """Refresh the claim of ``run_id`` every ``every`` seconds in a background thread while the block runs.

        Yields an event that is set if the claim was lost (another owner took the run over); the next write
        for the run then raises StaleClaimError.
        """
        stop, lost = threading.Event(), threading.Event()

        def beat() -> None:
            while not stop.wait(every):
                try:
                    self.heartbeat(run_id)
                except StaleClaimError:
                    lost.set()
                    return
                except Exception:  # noqa: BLE001 - a busy or briefly failing store: try again at the next beat
                    continue

        thread = threading.Thread(target=beat, name=f"gnsel-heartbeat-{run_id}", daemon=True)
        thread.start()
        try:
            yield lost
        finally:
            stop.set()
            thread.join(timeout=max(1.0, every))  # at most one beat's write

    def release_run(self, run_id: str) -> bool:
        """Give this owner's claim of a run back (``pending``, no owner) without failing it, e.g. when the worker
        stops for a reason that is not the run's own; False if the run was not this owner's."""

        def release(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE runs SET status = 'pending', owner = NULL WHERE run_id = ? AND status = 'running' AND owner = ?",
                (run_id, self.owner),
            )
            return cur.rowcount == 1

        released = self._write(release)
        self._claims.discard(run_id)
        return released

    def reset_running(self) -> int:
        """Turn ``running`` runs whose owner is provably gone (:func:`owner_gone`) into ``pending``; return how
        many. Runs of live owners (another build training them right now) are left alone."""

        def reset(conn: sqlite3.Connection) -> int:
            rows = conn.execute("SELECT run_id, owner, heartbeat FROM runs WHERE status = 'running'").fetchall()
            now = time.time()
            gone = [(rid,) for rid, owner, beat in rows if owner_gone(owner, beat, now, self.lease)]
            conn.executemany("UPDATE runs SET status = 'pending', owner = NULL WHERE run_id = ?", gone)
            return len(gone)

        return self._write(reset)

    def live_claims(self) -> dict[str, str]:
        """The ``running`` runs whose owner is alive as far as this host can tell: run id -> owner token."""
        if "owner" not in {r[1] for r in self._read("PRAGMA table_info(runs)")}:
            return {}  # a version-1 store opened read-only: it records no owners
        rows = self._read("SELECT run_id, owner, heartbeat FROM runs WHERE status = 'running'")
        now = time.time()
        return {rid: owner for rid, owner, beat in rows if not owner_gone(owner, beat, now, self.lease)}

