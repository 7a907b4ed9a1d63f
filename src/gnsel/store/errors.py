"""The store's exceptions: each carries a one-line message that names the store (or the run).

The CLI prints ``error: <message>`` for a :class:`StoreError` and exits non-zero, without a traceback;
:func:`translate` turns SQLite's own errors (a file that is not a database, a read-only location, a full
disk) into these.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

__all__ = [
    "CheckpointError", "NotAStoreError", "ReadOnlyStoreError", "StaleClaimError", "StoreError", "StoreFullError",
    "translate", "translate_os",
]  # fmt: skip


class StoreError(RuntimeError):
    """A store that cannot be used as asked; the message is one line and names the store."""


class NotAStoreError(StoreError):
    """The file is not a gnsel store: not SQLite, truncated, corrupt, or another program's database."""


class ReadOnlyStoreError(StoreError):
    """A write to a store opened read-only (its file or folder is not writable, or ``mode="r"``)."""


class StoreFullError(StoreError):
    """The disk (or SQLite's page limit) is full; every transaction committed before is intact."""


class StaleClaimError(StoreError):
    """A write for a run that this claimant no longer holds: another one took it over (its lease ran out
    or its process died, as far as the other could tell). The writer should stop that run quietly."""


class CheckpointError(StoreError):
    """A checkpoint file that cannot be read (random bytes, empty, refused by ``weights_only``) or does not
    fit the run's model."""


# SQLite's message (lower case) -> the class and the words that explain it
_KNOWN = (
    ("not a database", NotAStoreError),
    ("malformed", NotAStoreError),
    ("database or disk is full", StoreFullError),
    ("readonly", ReadOnlyStoreError),
    ("read-only", ReadOnlyStoreError),
)


def translate(exc: sqlite3.Error, path: Path) -> BaseException:
    """The :class:`StoreError` for a SQLite error about the store at ``path``; ``exc`` itself if it is a
    programming error (bad SQL), which should keep its traceback."""
    msg = str(exc).strip() or type(exc).__name__
    low = msg.lower()
    for needle, cls in _KNOWN:
        if needle in low:
            if cls is NotAStoreError:
                return cls(f"{path} is not a gnsel store ({msg})")
            if cls is StoreFullError:
                return cls(f"{path}: {msg}; free some space and run again (what was committed is kept)")
            return cls(f"{path} is read-only ({msg})")
    if "unable to open" in low or "disk i/o error" in low or "locked" in low or "busy" in low:
        return StoreError(f"{path}: {msg}")
    return exc


def translate_os(exc: OSError, path: Path, what: str) -> BaseException:
    """The :class:`StoreError` for an ``OSError`` while writing ``what`` of the store at ``path``."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFullError(f"{path}: no space left for {what}; free some space and run again")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ReadOnlyStoreError(f"{path} is read-only: cannot write {what} ({exc.strerror})")
    return exc
