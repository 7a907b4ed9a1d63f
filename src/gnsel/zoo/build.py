"""``gnsel zoo build``: train every configuration of a grid, in parallel Ray tasks, into the store.

Runs are keyed by the hash of their full configuration. Re-running a build skips finished runs and
redoes failed and interrupted ones from scratch (claiming a run deletes its partial epochs); every
epoch is written in its own transaction, so a killed build never leaves half an epoch behind.

Each run is trained under a claim (:mod:`gnsel.store.claims`): the build's owner token, extended with the
run's number and the worker's try, with a heartbeat every :data:`~gnsel.store.HEARTBEAT_SECONDS`. Two builds
on one store therefore train each run once: a run another live build holds is left to it, and this build
waits (polling every :data:`POLL_SECONDS`) until that run is done or failed there, or until its owner is
gone (its pid dead on this host, or its heartbeat older than the lease), when this build trains it itself.
A worker whose run was taken over (its writes refused with :class:`~gnsel.store.StaleClaimError`) stops
that run quietly.

A run lost with its Ray worker or node (``WorkerCrashedError``, ``NodeDiedError``, an OOM kill, ...) is
retried :data:`WORKER_RETRIES` times (Ray's ``max_retries``) before it is stored as failed; a run that
fails by its own error (divergence, a bad configuration) is not retried within the build.
"""

from __future__ import annotations

import os
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..progress import SILENT, Progress
from ..store import CLAIMED, HELD, StaleClaimError, Store, StoreError
from ..training import DivergenceError, TrainConfig, train

__all__ = ["POLL_SECONDS", "WORKER_RETRIES", "BuildSummary", "build_zoo", "run_one"]

WORKER_RETRIES = 2
"""How many times a run lost with its worker or node is tried again (Ray tasks' ``max_retries``)."""

POLL_SECONDS = 2.0
"""How often a build looks again at the runs another live build holds."""

Result = tuple[str, str, "str | None"]  # (run_id, status, error)
Item = tuple[str, dict[str, Any], str, int]  # (run_id, config, claim token, attempts seen when planned)


@dataclass
class BuildSummary:
    """What a build did: how many runs it found done, trained, saw fail (with their errors), saw finished by
    another build meanwhile, and how many of the grid's runs are not done at its end."""

    total: int
    skipped: int
    done: int = 0
    failed: int = 0
    elsewhere: int = 0
    unfinished: int = 0
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether every run of the grid is done."""
        return self.unfinished == 0


def run_one(
    config: dict[str, Any], store_path: str, threads: int = 1, owner: str | None = None,
    seen_attempts: int | None = None,
) -> Result:  # fmt: skip
    """Train one configuration into the store; returns ``(run_id, status, error)``.

    ``status``: ``done`` (trained here), ``failed`` (by its own error: a diverging run, non-finite loss, or
    any other error, stored as failed with its reason), ``skipped`` (found done, or failed by another build
    after ``seen_attempts`` attempts) or ``held`` (another live build has it, or took it over while it
    trained here: this worker stopped quietly). ``owner`` is the claim token (the build's, with the run's
    number); the worker claims with it plus a fresh try id. Errors of the store itself (not a database,
    read-only, disk full) are raised.
    """
    torch.set_num_threads(max(1, threads))
    store = Store(store_path, mode="w", owner=None if owner is None else f"{owner}#{uuid.uuid4().hex[:6]}")
    cfg = TrainConfig.from_dict(config)
    rid = cfg.run_id()
    try:
        state = store.claim(rid, seen_attempts=seen_attempts)
        if state != CLAIMED:
            return rid, "held" if state == HELD else "skipped", None
        t0 = time.perf_counter()
        try:
            with store.keep_alive(rid):
                result = train(
                    cfg,
                    on_epoch=lambda epoch, row: store.add_epochs(rid, [row]),
                    on_checkpoint=lambda epoch, state: store.save_checkpoint(rid, epoch, state),
                )
            store.finish_run(rid, time.perf_counter() - t0, {
                "device": result.device, "converged": result.converged if cfg.stop_loss is not None else None,
                "stop_epoch": result.stop_epoch, "stop_loss": cfg.stop_loss,
            })  # fmt: skip
        except StaleClaimError:
            return rid, "held", None
        except (StoreError, KeyboardInterrupt, SystemExit):  # not the run's fault: give the claim back, then stop
            _release(store, rid)
            raise
        except DivergenceError as err:
            return _failed(store, rid, f"diverged: {err}", f"diverged: {err}", time.perf_counter() - t0)
        except Exception as err:  # noqa: BLE001 - the grid goes on; the reason is kept in the store
            text = "".join(traceback.format_exception(err))
            return _failed(store, rid, text, f"{type(err).__name__}: {err}", time.perf_counter() - t0)
        return rid, "done", None
    finally:
        store.close()


def _release(store: Store, rid: str) -> None:
    """Best effort: hand the run back (a full or broken store may refuse; its lease then runs out)."""
    try:
        store.release_run(rid)
    except Exception:  # noqa: BLE001 - the original error is the one to report
        pass


def _failed(store: Store, rid: str, stored: str, short: str, seconds: float) -> Result:
    """Store the run as failed (unless it was taken over meanwhile: then it is another build's)."""
    try:
        store.fail_run(rid, stored, seconds=seconds)
    except StaleClaimError:
        return rid, "held", None
    return rid, "failed", short


def _lost(store_path: str, item: Item, why: str) -> Result:
    """A run whose worker was lost for good: stored failed, if it is still this build's (or nobody's)."""
    rid, _, token, seen = item
    try:
        Store(store_path).fail_run(rid, why, owner=token)  # running under one of this task's tries
        return rid, "failed", why
    except StaleClaimError:
        pass
    claimer = Store(store_path, mode="w", owner=f"{token}#lost")  # the worker never claimed it, or lost it
    state = claimer.claim(rid, seen_attempts=seen)
    if state == CLAIMED:
        claimer.fail_run(rid, why)
        return rid, "failed", why
    return rid, "held" if state == HELD else "skipped", None


def build_zoo(
    configs: list[TrainConfig],
    store_path: str | Path,
    *,
    workers: int | None = None,
    address: str | None = None,
    retry_failed: bool = True,
    progress: Progress = SILENT,
    use_ray: bool | None = None,
    on_result: Callable[[str, str, str | None], None] | None = None,
) -> BuildSummary:
    """Train the configurations not yet done, ``workers`` at a time, as Ray tasks.

    ``address`` connects to a Ray cluster (every node needs gnsel installed and the store path must
    be on a shared file system); without it a local Ray instance with ``workers`` CPUs is started.
    ``workers=1`` without an address trains in this process, without Ray, unless ``use_ray``.
    ``progress`` gets one bar, ``zoo``, over all configurations (finished ones counted as done), advanced
    once per run with the note ``done N failed M``. Runs that another live build holds are waited for
    (see the module docstring). ``summary.ok`` says whether every run of the grid is done at the end.
    """
    store_path = str(Path(store_path).resolve())
    store = Store(store_path, mode="w")
    ids = store.register_runs([c.to_dict() for c in configs])
    store.reset_running()  # runs of builds that are gone: they restart from scratch
    unique = dict(zip(ids, configs))
    states = store.run_states(unique)
    items: list[Item] = [
        (rid, cfg.to_dict(), f"{store.owner}/{k}", states[rid][1]) for k, (rid, cfg) in enumerate(unique.items())
        if states[rid][0] != "done" and (states[rid][0] != "failed" or retry_failed)
    ]  # fmt: skip
    summary = BuildSummary(total=len(unique), skipped=len(unique) - len(items))
    t0 = time.perf_counter()
    workers = workers or max(1, min(os.cpu_count() or 1, len(items) or 1))
    if use_ray is None:
        use_ray = workers > 1 or address is not None
    with progress.task("zoo", total=len(unique), done=summary.skipped) as bar:

        counts = {"done": summary.skipped, "failed": 0}

        def record(rid: str, status: str, error: str | None) -> None:
            if status == "skipped":  # another build finished it meanwhile
                summary.elsewhere += 1
                status, error = _settled(store, rid)
            elif status == "failed":
                summary.failed += 1
            else:
                summary.done += 1
            if status == "failed":
                summary.errors[rid] = error or ""
            counts[status] = counts.get(status, 0) + 1
            bar.advance(1, f"done {counts['done']} failed {counts['failed']}")
            if on_result is not None:
                on_result(rid, status, error)

        if items:
            runner = _RayRunner(store_path, workers, address, len(items)) if use_ray else _LocalRunner(store_path)
            with runner:
                _schedule(store, items, runner, record, bar)
    final = store.run_states(unique)
    summary.unfinished = sum(1 for status, _ in final.values() if status != "done")
    summary.seconds = time.perf_counter() - t0
    return summary


def _settled(store: Store, rid: str) -> tuple[str, str | None]:
    """A run another build settled: ``("done", None)`` or ``("failed", the last line of its error)``."""
    run = store.get_run(rid)
    if run["status"] == "done":
        return "done", None
    return "failed", _line_last(run["error"] or "")


def _schedule(store: Store, items: list[Item], runner: Any, record: Callable[[str, str, str | None], None],
              bar: Any) -> None:  # fmt: skip
    """Run the items; those another live build holds wait until they are settled there or free again."""
    by_id = {item[0]: item for item in items}
    todo, waiting = list(items), []
    while todo or waiting:
        for rid, status, error in runner.run(todo):
            if status == "held":
                waiting.append(rid)
            else:
                record(rid, status, error)
        todo = []
        if waiting:
            bar.advance(0, f"waiting for {len(waiting)} runs another build holds")
            time.sleep(POLL_SECONDS)
        for rid in list(waiting):
            state = store.claim_state(rid, seen_attempts=by_id[rid][3])
            if state == HELD:
                continue
            waiting.remove(rid)
            if state == CLAIMED:  # its owner is gone: train it here
                todo.append(by_id[rid])
            else:
                record(rid, "skipped", None)


class _LocalRunner:
    """Runs in this process, one after the other."""

    def __init__(self, store_path: str) -> None:
        self.store_path, self.threads = store_path, max(1, os.cpu_count() or 1)

    def __enter__(self) -> _LocalRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def run(self, items: list[Item]) -> Iterator[Result]:
        for rid, config, token, seen in items:
            yield run_one(config, self.store_path, self.threads, token, seen)


class _RayRunner:
    """Runs as Ray tasks (one CPU each, retried when their worker is lost), results as they come."""

    def __init__(self, store_path: str, workers: int, address: str | None, n_runs: int) -> None:
        self.store_path, self.workers, self.address, self.n_runs = store_path, workers, address, n_runs
        self.started = False

    def __enter__(self) -> _RayRunner:
        import ray  # heavy: ray (only when the build runs on Ray)

        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False)
            self.started = True
        cpus = int(ray.cluster_resources().get("CPU", self.workers))
        self.threads = max(1, cpus // max(1, min(self.workers, self.n_runs))) if self.address is None else 1
        self.remote = ray.remote(num_cpus=1, max_retries=WORKER_RETRIES)(run_one)
        return self

    def __exit__(self, *exc: object) -> None:
        import ray  # heavy: ray (see __enter__)

        if self.started:
            ray.shutdown()

    def run(self, items: list[Item]) -> Iterator[Result]:
        import ray  # heavy: ray (see __enter__)

        pending = {self.remote.remote(cfg, self.store_path, self.threads, token, seen): (rid, cfg, token, seen)
                   for rid, cfg, token, seen in items}  # fmt: skip
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                item = pending.pop(ref)
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayTaskError as err:  # raised inside run_one
                    cause = getattr(err, "cause", None) or err
                    if isinstance(cause, StoreError):
                        raise StoreError(str(cause).strip().splitlines()[-1]) from cause
                    yield _lost(self.store_path, item, f"{type(cause).__name__}: {_line(cause)}")
                except ray.exceptions.RayError as err:  # the worker or its node was lost, every try
                    why = f"worker lost ({WORKER_RETRIES + 1} tries): {type(err).__name__}: {_line(err)}"
                    yield _lost(self.store_path, item, why)


def _line_last(text: str) -> str:
    """The last non-empty line of a text (a traceback's exception line)."""
    return next((s.strip() for s in reversed(text.splitlines()) if s.strip()), "")


def _line(err: BaseException) -> str:
    """The first non-empty line of an exception's text."""
    return next((s.strip() for s in str(err).splitlines() if s.strip()), "")
