"""SQLite store of runs, per-epoch metrics, cached measures and checkpoints.

One SQLite file holds everything a grid of training runs produces:

* ``runs``     — one row per config, keyed by :func:`config_hash`, with its lifecycle
  (``pending`` → ``running`` → ``done`` | ``failed``);
* ``epochs``   — one row per (run, epoch); metrics are real ``REAL`` columns, added with
  ``ALTER TABLE`` the first time a new metric name is seen;
* ``measures`` — a cache of (run, epoch, measure) values computed later from checkpoints;
* ``meta``     — the schema version.

Several processes (e.g. Ray workers) may write concurrently: the file is in WAL mode,
every connection has a busy timeout, and every write is one short ``BEGIN IMMEDIATE``
transaction retried on ``database is locked``. A process killed mid-write leaves either
all or none of that transaction's rows. ``synchronous=NORMAL`` keeps committed data safe
across process crashes; a power loss may roll back the last few commits, never corrupt.

A :class:`Store` pickles as its path only and opens one connection lazily per process,
so it can be handed to worker processes. Checkpoints are ``torch.save`` files written
atomically under ``<db dir>/checkpoints/<run_id>/epoch_<k>.pt`` and read back with
``torch.load(..., weights_only=True)``.
"""

from ..keys import canonical_json, config_hash
from .schema import SCHEMA_VERSION, STATUSES
from .sqlite import Store

__all__ = ["SCHEMA_VERSION", "STATUSES", "Store", "config_hash", "canonical_json"]
