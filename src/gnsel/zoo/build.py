"""``gnsel zoo build``: train every configuration of a grid, in parallel Ray tasks, into the store.

Runs are keyed by the hash of their full configuration. Re-running a build skips finished runs and
redoes failed and interrupted ones from scratch (claiming a run deletes its partial epochs); every
epoch is written in its own transaction, so a killed build never leaves half an epoch behind.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..training import TrainConfig
from ..progress import SILENT, Progress
from ..store import Store
from ..training import DivergenceError, train

__all__ = ["BuildSummary", "build_zoo", "run_one"]


@dataclass
class BuildSummary:
    """What a build did: how many runs it found done, trained, and saw fail (with their errors)."""

    total: int
    skipped: int
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)


def run_one(config: dict[str, Any], store_path: str, threads: int = 1) -> tuple[str, str, str | None]:
    """Train one configuration into the store; returns ``(run_id, status, error)``.

    A diverging run (non-finite loss) or any other error is stored as failed with its reason.
    """
    torch.set_num_threads(max(1, threads))
    store = Store(store_path)
    cfg = TrainConfig.from_dict(config)
    rid = cfg.run_id()
    if not store.claim_run(rid):
        return rid, "done", None
    t0 = time.perf_counter()
    try:
        result = train(
            cfg,
            on_epoch=lambda epoch, row: store.add_epochs(rid, [row]),
            on_checkpoint=lambda epoch, state: store.save_checkpoint(rid, epoch, state),
        )
    except DivergenceError as err:
        store.fail_run(rid, f"diverged: {err}", seconds=time.perf_counter() - t0)
        return rid, "failed", f"diverged: {err}"
    except Exception as err:  # noqa: BLE001 - the grid goes on; the reason is kept in the store
        store.fail_run(rid, "".join(traceback.format_exception(err)), seconds=time.perf_counter() - t0)
        return rid, "failed", f"{type(err).__name__}: {err}"
    store.finish_run(rid, time.perf_counter() - t0, {"device": result.device,
                                                     "converged": result.converged if cfg.stop_loss is not None else None,
                                                     "stop_epoch": result.stop_epoch, "stop_loss": cfg.stop_loss})
    return rid, "done", None


def _todo(store: Store, configs: list[TrainConfig], retry_failed: bool) -> tuple[list[TrainConfig], int]:
    ids = store.register_runs([c.to_dict() for c in configs])
    store.reset_running()  # a killed build left these half-done: they restart from scratch
    todo = []
    for cfg, rid in zip(configs, ids):
        status = store.run_status(rid)
        if status == "done" or (status == "failed" and not retry_failed):
            continue
        todo.append(cfg)
    return todo, len(configs) - len(todo)


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
    once per run with the note ``done N failed M``.
    """
    store_path = str(Path(store_path).resolve())
    store = Store(store_path)
    todo, skipped = _todo(store, configs, retry_failed)
    summary = BuildSummary(total=len(configs), skipped=skipped)
    t0 = time.perf_counter()
    workers = workers or max(1, min(os.cpu_count() or 1, len(todo) or 1))
    with progress.task("zoo", total=len(configs), done=skipped) as bar:

        def record(rid: str, status: str, error: str | None) -> None:
            if status == "failed":
                summary.failed += 1
                summary.errors[rid] = error or ""
            else:
                summary.done += 1
            bar.advance(1, f"done {skipped + summary.done} failed {summary.failed}")
            if on_result is not None:
                on_result(rid, status, error)

        if use_ray is None:
            use_ray = workers > 1 or address is not None
        if todo and not use_ray:
            threads = max(1, os.cpu_count() or 1)
            for cfg in todo:
                record(*run_one(cfg.to_dict(), store_path, threads))
        elif todo:
            _run_on_ray(todo, store_path, workers, address, record)
    summary.seconds = time.perf_counter() - t0
    return summary


def _run_on_ray(
    todo: list[TrainConfig], store_path: str, workers: int, address: str | None,
    record: Callable[[str, str, str | None], None],
) -> None:  # fmt: skip
    import ray  # heavy: ray (only when the build runs on Ray)

    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        cpus = int(ray.cluster_resources().get("CPU", workers))
        threads = max(1, cpus // max(1, min(workers, len(todo)))) if address is None else 1
        remote = ray.remote(num_cpus=1, max_retries=0)(run_one)
        pending = {remote.remote(cfg.to_dict(), store_path, threads): cfg for cfg in todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                cfg = pending.pop(ref)
                try:
                    record(*ray.get(ref))
                except Exception as err:  # noqa: BLE001 - a worker crash: the run is retried next build
                    Store(store_path).fail_run(cfg.run_id(), f"worker crashed: {err}")
                    record(cfg.run_id(), "failed", f"worker crashed: {err}")
    finally:
        if started:
            ray.shutdown()
