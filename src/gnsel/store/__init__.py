"""SQLite store of runs, per-epoch metrics, cached measures and checkpoints.

One SQLite file holds everything a grid of training runs produces:

* ``runs``     — one row per config, keyed by :func:`config_hash`, with its lifecycle
  (``pending`` → ``running`` → ``done`` | ``failed``) and, while running, its claim (owner, heartbeat);
* ``epochs``   — one row per (run, epoch); metrics are real ``REAL`` columns, added with
  ``ALTER TABLE`` the first time a new metric name is seen;
* ``measures`` — a cache of (run, epoch, measure) values computed later from checkpoints;
* ``meta``     — the schema version.

Several processes (e.g. Ray workers, or two builds) may write concurrently: the file is in WAL mode,
every connection has a busy timeout, and every write is one short ``BEGIN IMMEDIATE`` transaction retried
on ``database is locked``. A process killed mid-write leaves either all or none of that transaction's
rows. ``synchronous=NORMAL`` keeps committed data safe across process crashes; a power loss may roll back
the last few commits, never corrupt.

Who trains a run is settled by claims (:mod:`gnsel.store.claims`): :meth:`Store.claim` records an owner
token and a heartbeat; the claimant's writes are checked against it in their own transaction and refused
(:class:`StaleClaimError`) once another claimant took the run over, which it may only do when the owner is
provably gone (heartbeat older than :data:`LEASE_SECONDS`, or a dead pid on this host).

A :class:`Store` pickles as its path and settings and opens one connection lazily per process, so it can
be handed to worker processes. Checkpoints are ``torch.save`` files written atomically under
``<store name>.checkpoints/<run_id>/epoch_<k>.pt`` beside the store (:mod:`gnsel.store.checkpoints`) and
read back with ``torch.load(..., weights_only=True)``. Every problem with the file itself (not a database,
truncated, read-only, disk full) raises a :class:`StoreError` with a one-line message.
"""

from ..keys import canonical_json, config_hash
from .claims import CLAIMED, DONE, FAILED, HEARTBEAT_SECONDS, HELD, LEASE_SECONDS
from .errors import CheckpointError, NotAStoreError, ReadOnlyStoreError, StaleClaimError, StoreError, StoreFullError
from .schema import SCHEMA_VERSION, STATUSES
from .sqlite import Store

__all__ = [
    "CLAIMED", "DONE", "FAILED", "HEARTBEAT_SECONDS", "HELD", "LEASE_SECONDS", "SCHEMA_VERSION", "STATUSES",
    "CheckpointError", "NotAStoreError", "ReadOnlyStoreError", "StaleClaimError", "Store", "StoreError",
    "StoreFullError", "canonical_json", "config_hash",
]  # fmt: skip
