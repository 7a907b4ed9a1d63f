"""Measuring a zoo: contexts from a :class:`gnsel.store.Store` run, and measures cached back into its
``measures`` table (the measure registry itself, :mod:`gnsel.measures`, knows nothing of the store)."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from ..training import TrainConfig
from ..gradnorm import resolve_device
from ..measures import MeasureContext, MeasureValue, compute_measure, list_measures
from ..store import CheckpointError, Store
from ..training import build, probe_set

__all__ = ["load_context", "measure_run"]


def load_context(
    store: Store,
    run_id: str,
    epoch: int | None = None,
    *,
    device: str | torch.device = "cpu",
    seed: int = 0,
    options: dict[str, Any] | None = None,
    root: str | os.PathLike | None = None,
    download: bool = False,
    checkpoint_root: str | os.PathLike | None = None,
) -> MeasureContext:
    """The :class:`MeasureContext` of ``run_id`` at ``epoch`` (default: its last checkpoint).

    Rebuilds the run's model and data splits from its stored config (:func:`gnsel.training.build`; ``root``
    and ``download`` go to the data loader), loads the checkpoint of ``epoch`` and, when saved, that of
    epoch 0 as ``init_model`` (both on ``device``, eval mode); ``train_data`` is the run's probe set
    (:func:`gnsel.training.probe_set`) and ``row`` its stored metrics at ``epoch`` (empty if none).
    A checkpoint that cannot be read or does not fit the model raises :class:`gnsel.store.CheckpointError`.
    """
    cfg = TrainConfig.from_dict(store.get_config(run_id))
    epochs = store.checkpoint_epochs(run_id, checkpoint_root)
    if not epochs:
        raise FileNotFoundError(f"run {run_id!r} has no checkpoints")
    if epoch is None:
        epoch = max(epochs)
    if epoch not in epochs:
        raise FileNotFoundError(f"run {run_id!r} has no checkpoint at epoch {epoch}; it has {epochs}")
    dev = resolve_device(device)
    model, splits = build(cfg, root=root, download=download)
    init_model = None
    if 0 in epochs:
        init_model = copy.deepcopy(model)
        _load_into(init_model, store, run_id, 0, checkpoint_root)
        init_model.to(dev).eval()
    _load_into(model, store, run_id, epoch, checkpoint_root)
    model.to(dev).eval()
    frame = store.epochs_frame([run_id])
    rows = frame[frame["epoch"] == epoch].to_dict("records")
    row = {k: v for k, v in rows[0].items()} if rows else {}
    return MeasureContext(
        model=model, init_model=init_model, train_data=probe_set(splits, cfg), row=row,
        config=cfg.to_dict(), device=dev, seed=seed, options=dict(options or {}),
    )  # fmt: skip


def _load_into(model: torch.nn.Module, store: Store, run_id: str, epoch: int, root: str | os.PathLike | None) -> None:
    """Load the run's checkpoint of ``epoch`` into ``model``; CheckpointError if it does not fit."""
    state = store.load_checkpoint(run_id, epoch, root=root)
    try:
        if not isinstance(state, Mapping):
            raise TypeError(f"it holds a {type(state).__name__}, not a state dict")
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError, KeyError, AttributeError) as err:
        reason = (str(err).strip().splitlines() or [""])[0][:160]
        raise CheckpointError(f"run {run_id}: checkpoint of epoch {epoch} does not fit its model ({reason})") from err


def measure_run(
    store: Store,
    run_id: str,
    names: Iterable[str] | None = None,
    epoch: int | None = None,
    *,
    recompute: bool = False,
    **context_kwargs: Any,
) -> dict[str, MeasureValue]:
    """Compute measures of a stored run and cache them with :meth:`Store.put_measure`.

    Measures already cached for (run, epoch) are read back instead of recomputed unless ``recompute``;
    failures are cached too (``value`` None, the error text kept; nothing is cached in a read-only store).
    ``context_kwargs`` go to :func:`load_context`, which is only called when something has to be computed;
    an unreadable checkpoint raises :class:`gnsel.store.CheckpointError` (nothing cached).
    """
    names = list(list_measures() if names is None else names)
    if epoch is None:
        epochs = store.checkpoint_epochs(run_id, context_kwargs.get("checkpoint_root"))
        if not epochs:
            raise FileNotFoundError(f"run {run_id!r} has no checkpoints")
        epoch = max(epochs)
    out: dict[str, MeasureValue] = {}
    ctx: MeasureContext | None = None
    for name in names:
        cached = None if recompute else store.get_measure(run_id, epoch, name)
        if cached is not None:
            value = math.nan if cached["value"] is None else float(cached["value"])
            out[name] = MeasureValue(value, float(cached["seconds"] or 0.0), cached["error"])
            continue
        if ctx is None:
            ctx = load_context(store, run_id, epoch, **context_kwargs)
        result = compute_measure(name, ctx)
        if not store.readonly:
            store.put_measure(
                run_id, epoch, name, None if result.error else result.value, error=result.error, seconds=result.seconds
            )
        out[name] = result
    return out
