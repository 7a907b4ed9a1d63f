"""Opening a store's file: a check of the file before SQLite touches it, and read-only connections.

:func:`check_file` refuses, without writing anything, a file that is not SQLite or is shorter than its own
header says (truncated). :func:`connect_readonly` opens a store that may not be written to (its file or
folder is read-only, or the caller asked ``mode="r"``): SQLite's ``mode=ro`` URI first (it still sees other
processes' commits); where that cannot work, because the folder is read-only and a write-ahead log is left
beside the file without its shared-memory index, a copy of the two files in a temporary folder; otherwise
``immutable=1``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import urllib.parse
from pathlib import Path

from .errors import NotAStoreError, StoreError, translate

__all__ = ["MODES", "check_file", "connect_readonly", "writable"]

MODES = ("auto", "r", "w")
_MAGIC = b"SQLite format 3\x00"


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def check_file(path: Path) -> None:
    """Raise :class:`NotAStoreError` if ``path`` exists and is not an SQLite file, or is truncated.

    An empty file passes (SQLite treats it as an empty database). The size check uses the header's page count
    and is skipped while a write-ahead log is pending (its pages are not in the file yet).
    """
    if not path.exists():
        return
    if path.is_dir():
        raise NotAStoreError(f"{path} is not a gnsel store (it is a folder)")
    size = path.stat().st_size
    if size == 0:
        return
    with open(path, "rb") as fh:
        head = fh.read(100)
    if len(head) < 100 or not head.startswith(_MAGIC):
        raise NotAStoreError(f"{path} is not a gnsel store (file is not a database)")
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(head[28:32], "big")
    valid = head[24:28] == head[92:96]
    wal = _sidecar(path, "-wal")
    if pages and valid and not (wal.exists() and wal.stat().st_size) and size < pages * page_size:
        raise NotAStoreError(
            f"{path} is not a gnsel store (file is not a database: truncated to {size} of {pages * page_size} bytes)"
        )


def writable(path: Path) -> tuple[bool, str]:
    """Whether the store at ``path`` can be written (the file, if it exists, and its folder), and why not."""
    folder = path.parent
    if path.exists() and not os.access(path, os.W_OK):
        return False, "the file is not writable"
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        return False, f"the folder {folder} is not writable"
    return True, ""


def _uri(path: Path, query: str) -> str:
    return f"file:{urllib.parse.quote(str(path))}?{query}"


def _probe(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()


def connect_readonly(path: Path, timeout: float) -> tuple[sqlite3.Connection, Path | None]:
    """A read-only connection to the store at ``path``, and the temporary folder of a copy (None if none)."""
    if not path.is_file():
        raise StoreError(f"no store at {path}")
    kwargs = {"timeout": timeout, "isolation_level": None, "check_same_thread": False, "uri": True}
    try:
        conn = sqlite3.connect(_uri(path, "mode=ro"), **kwargs)
        try:
            _probe(conn)
            return conn, None
        except sqlite3.OperationalError as exc:
            conn.close()
            if "unable to open" not in str(exc).lower() and "readonly" not in str(exc).lower():
                raise
        wal = _sidecar(path, "-wal")
        if wal.exists() and wal.stat().st_size:  # committed pages only in the log: read a copy of both
            tmp = Path(tempfile.mkdtemp(prefix="gnsel-store-"))
            shutil.copy2(path, tmp / path.name)
            shutil.copy2(wal, tmp / wal.name)
            conn = sqlite3.connect(_uri(tmp / path.name, "mode=ro"), **kwargs)
            _probe(conn)
            return conn, tmp
        conn = sqlite3.connect(_uri(path, "immutable=1"), **kwargs)
        _probe(conn)
        return conn, None
    except sqlite3.Error as exc:
        raise translate(exc, path) from exc
