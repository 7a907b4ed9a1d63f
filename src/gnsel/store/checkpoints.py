"""Checkpoint files: ``torch.save`` state dicts as ``<dir>/epoch_<k>.pt``, and where a store keeps them.

Each store has its own folder beside its file, ``<store file name>.checkpoints/<run_id>/`` (``zoo.sqlite`` ->
``zoo.sqlite.checkpoints/``), so stores in one folder never share (nor delete) each other's files. The store
records a run's folder relative to the store's folder when it lies inside it, so a moved zoo folder keeps
its checkpoints; an absolute record (older stores, or a root elsewhere) is used if it exists and otherwise
re-based onto the store's folder (its last two parts, ``<checkpoints folder>/<run_id>``).

Files are written to a temporary name and moved into place atomically (the store does the move inside the
transaction that checks the run's claim); they are read back with ``torch.load(..., weights_only=True)``
(no arbitrary pickles).
"""

from __future__ import annotations

import os
import re
import sqlite3
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import CheckpointError, ReadOnlyStoreError, translate_os
from .schema import _to_int

__all__ = [
    "CheckpointsMixin", "default_dir", "load_state", "record_dir", "remove_states", "resolve_dir", "save_state", "saved_epochs",
    "write_temp",
]  # fmt: skip

_CKPT_RE = re.compile(r"epoch_(\d+)\.pt")


def default_dir(store_path: Path, run_id: str) -> Path:
    """The store's own folder for a run's checkpoints: ``<store dir>/<store name>.checkpoints/<run_id>``."""
    return store_path.parent / f"{store_path.name}.checkpoints" / run_id


def record_dir(store_path: Path, directory: Path) -> str:
    """How to record ``directory``: relative to the store's folder (POSIX) if inside it, else absolute."""
    directory = directory.resolve()
    base = store_path.parent.resolve()
    if directory.is_relative_to(base):
        return PurePosixPath(*directory.relative_to(base).parts).as_posix()
    return str(directory)


def resolve_dir(store_path: Path, recorded: str) -> Path:
    """The folder a recorded checkpoint directory names now (see the module docstring)."""
    path = Path(recorded)
    if not path.is_absolute():
        return store_path.parent / path
    if path.exists():
        return path
    return store_path.parent / path.parent.name / path.name


def write_temp(directory: Path, epoch: int, state_dict: Mapping[str, Any]) -> Path:
    """``torch.save`` a state dict to a temporary file in ``directory`` (created), fsynced; return its path."""
    import torch  # heavy: torch (the store opens in light worker processes that never touch checkpoints)

    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".epoch_{epoch}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state_dict, fh)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def save_state(directory: Path, epoch: int, state_dict: Mapping[str, Any]) -> Path:
    """Atomically ``torch.save`` a state dict to ``directory/epoch_<k>.pt`` (directory created)."""
    tmp = write_temp(directory, epoch, state_dict)
    target = directory / f"epoch_{epoch}.pt"
    os.replace(tmp, target)
    return target


def load_state(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``."""
    import torch  # heavy: torch (see write_temp)

    return torch.load(path, map_location=map_location, weights_only=True)


def saved_epochs(directory: Path) -> list[int]:
    """Sorted epochs with an ``epoch_<k>.pt`` file in ``directory`` (none if it does not exist)."""
    if not directory.is_dir():
        return []
    found = (_CKPT_RE.fullmatch(p.name) for p in directory.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def remove_states(directory: Path) -> None:
    """Delete every ``epoch_<k>.pt`` file (and left-over temporary file) of ``directory``."""
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        if _CKPT_RE.fullmatch(path.name) or (path.name.startswith(".epoch_") and path.name.endswith(".tmp")):
            path.unlink(missing_ok=True)


class CheckpointsMixin:
    """The checkpoint part of :class:`gnsel.store.Store`; needs the store's ``path``, ``readonly``,
    ``run_status``, ``_read``, ``_write`` and ``_guard`` (the claim check)."""

    path: Path
    readonly: bool
    _readonly: str | None
    run_status: Any
    _read: Any
    _write: Any
    _guard: Any

    def _checkpoint_dir(self, run_id: str, root: str | os.PathLike[str] | None) -> Path:
        """Directory of a run's checkpoints: ``root/run_id``, the recorded one, or this store's own."""
        if root is not None:
            return Path(root) / run_id
        rows = self._read("SELECT checkpoint_dir FROM runs WHERE run_id = ?", (run_id,))
        if rows and rows[0][0]:
            return resolve_dir(self.path, rows[0][0])
        return default_dir(self.path, run_id)

    def save_checkpoint(
        self,
        run_id: str,
        epoch: int,
        state_dict: Mapping[str, Any],
        root: str | os.PathLike[str] | None = None,
    ) -> Path:
        """Atomically ``torch.save`` a state dict as ``epoch_<k>.pt`` of the run's folder; return its path.

        The folder is ``<store name>.checkpoints/<run_id>`` beside the store (or ``<root>/<run_id>``), recorded
        relative to the store's folder when inside it. The file is written under a temporary name and moved
        into place inside the transaction that checks the claim (see :meth:`claim`): a writer whose run was
        taken over leaves no file behind.
        """
        epoch = _to_int("epoch", epoch)
        if self.run_status(run_id) is None:
            raise KeyError(f"unknown run {run_id!r}")
        if self.readonly:
            raise ReadOnlyStoreError(f"{self.path} is read-only ({self._readonly}): cannot write to it")
        directory = (Path(root) / run_id if root is not None else default_dir(self.path, run_id)).resolve()
        target = directory / f"epoch_{epoch}.pt"
        try:
            tmp = write_temp(directory, epoch, state_dict)
        except OSError as exc:
            err = translate_os(exc, self.path, f"checkpoint {target}")
            if err is exc:
                raise
            raise err from exc

        def place(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                raise KeyError(f"unknown run {run_id!r}")
            self._guard(conn, run_id)
            os.replace(tmp, target)
            conn.execute(
                "UPDATE runs SET checkpoint_dir = ? WHERE run_id = ?", (record_dir(self.path, directory), run_id)
            )

        try:
            self._write(place)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def load_checkpoint(
        self,
        run_id: str,
        epoch: int,
        map_location: Any = "cpu",
        root: str | os.PathLike[str] | None = None,
    ) -> dict[str, Any]:
        """Load a checkpoint with ``torch.load(weights_only=True)`` (no arbitrary pickles).

        FileNotFoundError if there is none; :class:`CheckpointError` (one line naming the run and the file) if
        it cannot be read: random bytes, an empty file, or a pickle that ``weights_only`` refuses.
        """
        path = self._checkpoint_dir(run_id, root) / f"epoch_{_to_int('epoch', epoch)}.pt"
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint for run {run_id!r} at epoch {epoch}: {path}")
        try:
            return load_state(path, map_location)
        except Exception as err:  # noqa: BLE001 - torch raises many kinds for a bad file; one line for all
            reason = (str(err).strip().splitlines() or [""])[0][:120]
            raise CheckpointError(f"run {run_id}: cannot read checkpoint {path} ({type(err).__name__}: {reason})") from err

    def checkpoint_epochs(self, run_id: str, root: str | os.PathLike[str] | None = None) -> list[int]:
        """Sorted epochs for which the run has a checkpoint file."""
        return saved_epochs(self._checkpoint_dir(run_id, root))
