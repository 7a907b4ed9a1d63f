"""The store's tables (schema version, DDL, column lists) and the checks on what goes into them."""

from __future__ import annotations

import operator
import re
import sqlite3
from datetime import datetime, timezone
from typing import Any

SCHEMA_VERSION = 2  # 2: runs.owner and runs.heartbeat (claims with a lease); 1 is migrated on open
STATUSES = ("pending", "running", "done", "failed")

_COLUMN_RE = re.compile(r"[a-z_][a-z0-9_]*")
_EPOCH_KEYS = ("run_id", "epoch")
_CHUNK = 500  # ids per "IN (...)" query, well under SQLite's variable limit
_RUN_COLUMNS = (
    "run_id", "status", "error", "attempts", "started_at", "finished_at",
    "seconds", "checkpoint_dir", "config_json", "extra_json",
)
_MEASURE_COLUMNS = ("run_id", "epoch", "measure", "value", "error", "seconds")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    run_id         TEXT PRIMARY KEY,
    config_json    TEXT NOT NULL,
    status         TEXT NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'running', 'done', 'failed')),
    error          TEXT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    started_at     TEXT,
    finished_at    TEXT,
    seconds        REAL,
    checkpoint_dir TEXT,
    extra_json     TEXT,
    owner          TEXT,
    heartbeat      REAL
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL,
    epoch  INTEGER NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS measures (
    run_id  TEXT NOT NULL,
    epoch   INTEGER NOT NULL,
    measure TEXT NOT NULL,
    value   REAL,
    error   TEXT,
    seconds REAL,
    PRIMARY KEY (run_id, epoch, measure)
);
"""

# Version 1 -> 2: who holds a running run, and when it last said so (see gnsel.store.claims).
_MIGRATE_1_TO_2 = ("ALTER TABLE runs ADD COLUMN owner TEXT", "ALTER TABLE runs ADD COLUMN heartbeat REAL")


def _now() -> str:
    """Current UTC time as an ISO-8601 string with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _check_column(name: str) -> str:
    """Return ``name`` if it is a valid metric column name, else raise ValueError."""
    if not isinstance(name, str) or not _COLUMN_RE.fullmatch(name):
        raise ValueError(f"invalid metric name {name!r}: must match [a-z_][a-z0-9_]*")
    if name in _EPOCH_KEYS:
        raise ValueError(f"metric name {name!r} is reserved")
    return name


def _to_real(key: str, value: Any) -> float | None:
    """Coerce a metric value (number, bool, numpy/torch scalar or None) to float."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise TypeError(f"metric {key!r} must be a number or None, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metric {key!r} must be a number or None, got {value!r}") from exc


def _to_int(name: str, value: Any) -> int:
    """Coerce an epoch index (int or numpy integer, not bool) to int."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError as exc:
        raise TypeError(f"{name} must be an integer, got {value!r}") from exc


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether an OperationalError is a transient lock/busy error worth retrying."""
    msg = str(exc).lower()
    return "locked" in msg or "busy" in msg
