"""The SQLite :class:`Store`: runs, per-epoch metrics, cached measures, claims and where checkpoints live.

See :mod:`gnsel.store` for the tables and the concurrency guarantees, :mod:`gnsel.store.claims` for who
may write a run, :mod:`gnsel.store.checkpoints` for the checkpoint layout.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..keys import canonical_json, config_hash, json_default
from .checkpoints import CheckpointsMixin
from .claims import LEASE_SECONDS, ClaimsMixin, new_owner
from .errors import NotAStoreError, ReadOnlyStoreError, StoreError, translate, translate_os
from .frames import TablesMixin
from .opening import MODES, check_file, connect_readonly, writable
from .schema import (
    _CHUNK,
    _MEASURE_COLUMNS,
    _MIGRATE_1_TO_2,
    _RUN_COLUMNS,
    _SCHEMA,
    SCHEMA_VERSION,
    _check_column,
    _is_busy,
    _now,
    _to_int,
    _to_real,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Store"]

# Connections inherited through fork() must never be used nor closed by the child:
# they are parked here so that garbage collection does not close them either.
_ABANDONED: list[sqlite3.Connection] = []

T = TypeVar("T")


class Store(ClaimsMixin, CheckpointsMixin, TablesMixin):
    """SQLite store of runs, epochs, measures and checkpoints (one file, many processes).

    ``mode``: ``"auto"`` (the default) writes where the file and its folder are writable and otherwise opens
    the store read-only (reading works, a write raises :class:`ReadOnlyStoreError`); ``"w"`` requires a
    writable store (ReadOnlyStoreError at once otherwise); ``"r"`` only reads (never creates, migrates or
    writes anything; the file must exist). ``owner`` is the token this object claims runs with (default: a
    fresh ``host:pid:random``); ``lease`` how old another owner's heartbeat must be before its runs count as
    abandoned (:data:`gnsel.store.claims.LEASE_SECONDS`). A file that is not a gnsel store raises
    :class:`NotAStoreError` before anything is written.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        timeout: float = 60.0,
        *,
        mode: str = "auto",
        owner: str | None = None,
        lease: float = LEASE_SECONDS,
    ) -> None:
        """Open (creating file and schema if missing, unless read-only) the store at ``path``."""
        if mode not in MODES:
            raise ValueError(f"unknown store mode {mode!r}; use one of {', '.join(MODES)}")
        self.path = Path(path).expanduser().resolve()
        self.timeout = float(timeout)
        self.mode = mode
        self.owner = owner or new_owner()
        self.lease = float(lease)
        self._setup()
        self._connection()  # fail early, create the schema

    def _setup(self) -> None:
        """Reset per-process state (connection, caches, lock, claims)."""
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._lock = threading.RLock()
        self._epoch_cols: set[str] = set()
        self._claims: set[str] = set()
        self._readonly: str | None = None  # why the store is read-only; "" when writable; None before opening
        self._copy: Path | None = None  # the temporary copy a read-only store is read from, if any
        self._version = SCHEMA_VERSION

    # -- pickling / lifecycle ------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        """Pickle only the path and settings (a handed-over Store claims as the same owner); connections
        are reopened lazily."""
        return {"path": str(self.path), "timeout": self.timeout, "mode": self.mode, "owner": self.owner,
                "lease": self.lease}  # fmt: skip

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`__getstate__` without opening a connection."""
        self.path = Path(state["path"])
        self.timeout = float(state["timeout"])
        self.mode = state.get("mode", "auto")
        self.owner = state.get("owner") or new_owner()
        self.lease = float(state.get("lease", LEASE_SECONDS))
        self._setup()

    def __repr__(self) -> str:
        """``Store('/path/to/file.db')``."""
        return f"Store({str(self.path)!r})"

    def __enter__(self) -> Store:
        """Context manager entry: the store itself."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Context manager exit: close this process's connection."""
        self.close()

    def close(self) -> None:
        """Close this process's connection (a later call reopens it lazily)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            elif self._conn is not None:  # inherited through fork: never touch it
                _ABANDONED.append(self._conn)
            self._conn = None
            self._pid = None
            self._epoch_cols = set()
            if self._copy is not None:
                shutil.rmtree(self._copy, ignore_errors=True)
                self._copy = None

    @property
    def readonly(self) -> bool:
        """Whether this store refuses writes (opened ``mode="r"``, or its file or folder is not writable)."""
        self._connection()
        return bool(self._readonly)

    # -- connection & transactions -------------------------------------------------

    def _decide_mode(self) -> str:
        """Why the store is read-only ("" if it is writable); raises when it must be and cannot be written."""
        check_file(self.path)
        if self.mode == "r":
            if not self.path.is_file():
                raise StoreError(f"no store at {self.path}")
            return "opened read-only"
        ok, why = writable(self.path)
        if ok:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise translate_os(exc, self.path, "its folder") from exc
            return ""
        if not self.path.exists():
            raise ReadOnlyStoreError(f"cannot create the store {self.path}: {why}")
        if self.mode == "w":
            raise ReadOnlyStoreError(f"{self.path} is read-only ({why})")
        return why

    def _connection(self) -> sqlite3.Connection:
        """This process's connection, opened (and the schema ensured) on first use."""
        with self._lock:
            pid = os.getpid()
            if self._conn is not None and self._pid == pid:
                return self._conn
            if self._conn is not None:  # inherited through fork: never touch it
                _ABANDONED.append(self._conn)
            self._conn, self._pid, self._epoch_cols = None, None, set()
            self._readonly = self._decide_mode()
            if self._readonly:
                conn, self._copy = connect_readonly(self.path, self.timeout)
            else:
                try:
                    conn = sqlite3.connect(
                        self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
                    )
                except sqlite3.Error as exc:
                    raise translate(exc, self.path) from exc
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                version = self._retry(lambda: self._schema_version(conn))  # refuses a foreign file before any write
                if not self._readonly:
                    self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
                    conn.execute("PRAGMA synchronous = NORMAL")
                self._ensure_schema(conn, version)
            except BaseException:
                conn.close()
                raise
            self._conn, self._pid = conn, pid
            return conn

    def _ensure_schema(self, conn: sqlite3.Connection, version: int | None) -> None:
        """Create missing tables (or migrate an older version) and record/check the schema version."""
        if version is None:

            def create(c: sqlite3.Connection) -> None:
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        c.execute(stmt)
                c.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )

            self._write(create, conn)
            version = self._schema_version(conn)
        if version is None or version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {version} is not supported "
                f"(this gnsel writes version {SCHEMA_VERSION})"
            )
        if version < SCHEMA_VERSION and not self._readonly:
            self._write(self._migrate, conn)
            version = SCHEMA_VERSION
        self._version = version

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring a version-1 store to the current schema (inside a write transaction; another process may
        have done it already)."""
        if self._schema_version(conn) != 1:
            return
        for stmt in _MIGRATE_1_TO_2:
            conn.execute(stmt)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))

    def _schema_version(self, conn: sqlite3.Connection) -> int | None:
        """Schema version recorded in ``meta``, or None for a fresh file; NotAStoreError for another program's
        database, or an empty file opened read-only."""
        has_meta = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if not has_meta:
            if conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
                raise NotAStoreError(f"{self.path} is not a gnsel store (an SQLite database without gnsel's tables)")
            if self._readonly:
                raise NotAStoreError(f"{self.path} is not a gnsel store (an empty file)")
            return None
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else None

    def _retry(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` again (with jittered back-off) while SQLite reports a lock; other SQLite errors about
        the file (not a database, read-only, disk full) become a one-line :class:`StoreError`."""
        deadline = time.monotonic() + self.timeout
        delay = 0.01
        while True:
            try:
                return fn()
            except sqlite3.Error as exc:
                if not (isinstance(exc, sqlite3.OperationalError) and _is_busy(exc)) or time.monotonic() >= deadline:
                    err = translate(exc, self.path)
                    if err is exc:
                        raise
                    raise err from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)

    def _write(self, fn: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection | None = None) -> T:
        """Run ``fn(conn)`` inside one ``BEGIN IMMEDIATE`` transaction, retried when locked."""
        with self._lock:
            conn = conn if conn is not None else self._connection()
            if self._readonly:
                raise ReadOnlyStoreError(f"{self.path} is read-only ({self._readonly}): cannot write to it")

            def attempt() -> T:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    self._epoch_cols = set()  # a rolled-back ALTER TABLE must be forgotten
                    raise
                return result

            return self._retry(attempt)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one read-only query and return all rows."""
        with self._lock:
            conn = self._connection()
            return self._retry(lambda: conn.execute(sql, params).fetchall())

    def _frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """Run one read-only query into a DataFrame."""
        import pandas as pd  # heavy: pandas (writers in worker processes never read frames)

        with self._lock:
            conn = self._connection()

            def query() -> pd.DataFrame:
                cur = conn.execute(sql, params)
                cols = [d[0] for d in cur.description]
                return pd.DataFrame.from_records(cur.fetchall(), columns=cols)

            return self._retry(query)

    # -- runs ----------------------------------------------------------------------

    def register_run(self, config: Mapping[str, Any]) -> str:
        """Insert ``config`` as a pending run if new; return its run id (config hash)."""
        return self.register_runs([config])[0]

    def register_runs(self, configs: Iterable[Mapping[str, Any]]) -> list[str]:
        """Register many configs in one transaction; return their run ids in order."""
        rows = [(config_hash(c), canonical_json(c)) for c in configs]

        def insert(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR IGNORE INTO runs (run_id, config_json) VALUES (?, ?)", rows
            )

        self._write(insert)
        return [run_id for run_id, _ in rows]

    def finish_run(
        self, run_id: str, seconds: float, extra: Mapping[str, Any] | None = None, *, owner: str | None = None
    ) -> None:
        """Mark a run done with its wall time and optional extra JSON-able info.

        Refused with StaleClaimError if this object claimed the run (or ``owner``, a claim lineage, is given)
        and the run is no longer that claimant's; see :meth:`claim`.
        """
        extra_json = None if extra is None else json.dumps(dict(extra), sort_keys=True, default=json_default)
        self._update_run(
            run_id,
            "status = 'done', error = NULL, finished_at = ?, seconds = ?, extra_json = ?",
            (_now(), float(seconds), extra_json), owner,
        )  # fmt: skip

    def fail_run(self, run_id: str, error: str, seconds: float | None = None, *, owner: str | None = None) -> None:
        """Mark a run failed, keeping the error text (e.g. a traceback); checked like :meth:`finish_run`."""
        self._update_run(
            run_id,
            "status = 'failed', error = ?, finished_at = ?, seconds = ?",
            (str(error), _now(), None if seconds is None else float(seconds)), owner,
        )  # fmt: skip

    def _update_run(self, run_id: str, assignments: str, params: tuple[Any, ...], owner: str | None = None) -> None:
        """``UPDATE runs SET <assignments> WHERE run_id = ?`` after the claim check; KeyError if no such run.
        A finished or failed run is no longer this object's claim (later writes are not checked)."""

        def update(conn: sqlite3.Connection) -> None:
            self._guard(conn, run_id, owner)
            cur = conn.execute(f"UPDATE runs SET {assignments} WHERE run_id = ?", (*params, run_id))
            if cur.rowcount == 0:
                raise KeyError(f"unknown run {run_id!r}")

        self._write(update)
        if "status" in assignments:
            self._claims.discard(run_id)

    def run_status(self, run_id: str) -> str | None:
        """Status of a run ('pending'|'running'|'done'|'failed'), None if unregistered."""
        rows = self._read("SELECT status FROM runs WHERE run_id = ?", (run_id,))
        return rows[0][0] if rows else None

    def get_run(self, run_id: str) -> dict[str, Any]:
        """The run's row as a dict (config and extra decoded); KeyError if unknown."""
        rows = self._read(f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise KeyError(f"unknown run {run_id!r}")
        run = dict(zip(_RUN_COLUMNS, rows[0]))
        run["config"] = json.loads(run.pop("config_json"))
        extra = run.pop("extra_json")
        run["extra"] = None if extra is None else json.loads(extra)
        return run

    def get_config(self, run_id: str) -> dict[str, Any]:
        """The run's config dict (as stored: canonical JSON decoded); KeyError if unknown."""
        rows = self._read("SELECT config_json FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise KeyError(f"unknown run {run_id!r}")
        return json.loads(rows[0][0])

    def pending_runs(self, run_ids: Iterable[str]) -> list[str]:
        """The given run ids that are not 'done' (unregistered ones included), in order."""
        ids = list(run_ids)
        done: set[str] = set()
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            done.update(
                r[0] for r in self._read(
                    f"SELECT run_id FROM runs WHERE status = 'done' AND run_id IN ({marks})", chunk
                )
            )
        return [r for r in ids if r not in done]

    def run_states(self, run_ids: Iterable[str]) -> dict[str, tuple[str, int]]:
        """``{run_id: (status, attempts)}`` of the given runs that are registered."""
        ids = list(dict.fromkeys(run_ids))
        out: dict[str, tuple[str, int]] = {}
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for rid, status, attempts in self._read(
                f"SELECT run_id, status, attempts FROM runs WHERE run_id IN ({marks})", chunk
            ):
                out[rid] = (status, int(attempts))
        return out

    # -- epochs --------------------------------------------------------------------

    def _ensure_columns(self, conn: sqlite3.Connection, names: Iterable[str]) -> None:
        """Add missing REAL metric columns (call inside a write transaction)."""
        missing = set(names) - self._epoch_cols
        if not missing:
            return
        # Re-read under the write lock: another process may have added some already.
        self._epoch_cols = {r[1] for r in conn.execute("PRAGMA table_info(epochs)")}
        for name in sorted(set(names) - self._epoch_cols):
            conn.execute(f'ALTER TABLE epochs ADD COLUMN "{name}" REAL')
            self._epoch_cols.add(name)

    def add_epoch(self, run_id: str, epoch: int, metrics: Mapping[str, float | int | None]) -> None:
        """Write one epoch's metrics (INSERT OR REPLACE) in one transaction."""
        self.add_epochs(run_id, [(epoch, metrics)])

    def add_epochs(
        self,
        run_id: str,
        rows: Iterable[Mapping[str, Any] | tuple[int, Mapping[str, float | int | None]]],
    ) -> int:
        """Write many epochs in one transaction (all or none); return the row count.

        Each row is either ``{"epoch": k, **metrics}`` or a pair ``(k, metrics)``.
        New metric names become REAL columns; names must match ``[a-z_][a-z0-9_]*``. Refused with
        StaleClaimError if this object claimed the run and it is no longer its claim.
        """
        groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        count = 0
        for row in rows:
            if isinstance(row, Mapping):
                metrics = dict(row)
                if "epoch" not in metrics:
                    raise ValueError(f"epoch row without an 'epoch' key: {row!r}")
                epoch = metrics.pop("epoch")
                if metrics.pop("run_id", run_id) != run_id:
                    raise ValueError(f"row for run {row['run_id']!r} passed to add_epochs({run_id!r})")
            else:
                epoch, metrics = row
                metrics = dict(metrics)
            epoch = _to_int("epoch", epoch)
            keys = tuple(sorted(metrics))
            for key in keys:
                _check_column(key)
            values = tuple(_to_real(k, metrics[k]) for k in keys)
            groups.setdefault(keys, []).append((run_id, epoch, *values))
            count += 1
        if not groups:
            return 0

        def insert(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                raise KeyError(f"unknown run {run_id!r}")
            self._guard(conn, run_id)
            self._ensure_columns(conn, {k for keys in groups for k in keys})
            for keys, params in groups.items():
                cols = ", ".join(["run_id", "epoch", *(f'"{k}"' for k in keys)])
                marks = ", ".join("?" * (2 + len(keys)))
                conn.executemany(f"INSERT OR REPLACE INTO epochs ({cols}) VALUES ({marks})", params)

        self._write(insert)
        return count

    # -- measures ------------------------------------------------------------------

    def put_measure(
        self,
        run_id: str,
        epoch: int,
        measure: str,
        value: float | None = None,
        error: str | None = None,
        seconds: float | None = None,
    ) -> None:
        """Cache one measure of a run at an epoch (INSERT OR REPLACE); error for failures."""
        row = (
            run_id, _to_int("epoch", epoch), str(measure), _to_real(measure, value),
            None if error is None else str(error), None if seconds is None else float(seconds),
        )
        self._write(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO measures (run_id, epoch, measure, value, error, seconds)"
                " VALUES (?, ?, ?, ?, ?, ?)", row,
            )
        )

    def get_measure(self, run_id: str, epoch: int, measure: str) -> dict[str, Any] | None:
        """The cached measure row as a dict, or None if not cached."""
        rows = self._read(
            f"SELECT {', '.join(_MEASURE_COLUMNS)} FROM measures"
            " WHERE run_id = ? AND epoch = ? AND measure = ?",
            (run_id, _to_int("epoch", epoch), measure),
        )
        return dict(zip(_MEASURE_COLUMNS, rows[0])) if rows else None
