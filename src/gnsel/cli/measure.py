"""``gnsel measure``: GN (exact, all layers) and its fc approximation of one model, with timings."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.table import Table

from .common import check_device, console, fail, parse_kwargs

if TYPE_CHECKING:
    from torch import nn

__all__ = ["load_checkpoint", "measure", "register"]

_SHOWN = 4  # keys named per kind of misfit; the rest are counted


def measure(
    model: str = typer.Option("mlp", help="Model name from the registry (see --list)."),
    dataset: str = typer.Option("mnist1d", help="Dataset name from the registry."),
    checkpoint: Optional[Path] = typer.Option(None, help="A saved state_dict (loaded with weights_only=True)."),
    model_kwargs: Optional[str] = typer.Option(None, help="Model hyper-parameters as JSON."),
    split: str = typer.Option("train", help="Which split to measure on: train, val or test."),
    n: int = typer.Option(1024, help="Number of examples to measure on."),
    batch_size: int = typer.Option(256, help="Examples per forward/backward pass."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    naive: bool = typer.Option(True, help="Also time the naive per-example loop (on a few examples)."),
    seed: int = typer.Option(0, help="Seed of the data split and of the model's initialisation."),
    data_root: Optional[Path] = typer.Option(None, help="Where torchvision datasets are (or go, with --download)."),
    download: bool = typer.Option(False, help="Download a torchvision dataset if missing."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    list_choices: bool = typer.Option(False, "--list", help="List the models and datasets, then exit."),
) -> None:
    """Measure GN (exact, all layers) and its fc approximation of a model on a dataset, with timings."""
    # heavy: torch and the dataset/model registries load only when the command runs (fast --help)
    import torch

    from ..data import list_datasets, load_dataset
    from ..gradnorm import GradNormError, gradient_norm, resolve_device
    from ..gradnorm.naive import naive_sq_norms
    from ..models import create_model, list_models

    if list_choices:
        console.print(f"models: {', '.join(list_models())}\ndatasets: {', '.join(list_datasets())}")
        return
    if split not in ("train", "val", "test"):
        fail(f"unknown split {split!r}: use train, val or test")
    if n < 1 or batch_size < 1:
        fail(f"--n and --batch-size must be positive, got {n} and {batch_size}")
    check_device(device)
    if checkpoint is not None and not checkpoint.is_file():
        fail(f"checkpoint {checkpoint} " + ("is a folder, not a file" if checkpoint.is_dir() else "does not exist"))
    try:
        dev = resolve_device(device)
        splits = load_dataset(dataset, seed=seed, root=data_root, download=download)
        torch.manual_seed(seed)
        kwargs = parse_kwargs(model_kwargs, "--model-kwargs")
        net = create_model(model, num_classes=splits.num_classes, input_shape=splits.input_shape, **kwargs)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    if checkpoint is not None:
        try:
            load_checkpoint(net, checkpoint, f"model {model!r}" + (f" with {kwargs}" if kwargs else ""))
        except ValueError as err:
            fail(str(err))
    net = net.to(dev)
    data = getattr(splits, split).tensors
    n = min(n, len(data[1]))
    x, y = data[0][:n].to(dev), data[1][:n].to(dev)
    results = {}
    try:
        for scope in ("full", "fc"):
            gradient_norm(net, (x[:batch_size], y[:batch_size]), scope=scope, batch_size=batch_size, device=dev)  # warm-up
            results[scope] = gradient_norm(net, (x, y), scope=scope, batch_size=batch_size, device=dev)
    except GradNormError as err:
        fail(str(err))
    naive_seconds = None
    if naive:
        k = min(n, 32)
        naive_seconds = naive_sq_norms(net, x[:k], y[:k]).seconds * n / k
    report = {
        "model": model, "dataset": dataset, "split": split, "n": n, "device": str(dev),
        "checkpoint": str(checkpoint) if checkpoint else None,
        **{f"gn_{s}": r.mean_sq for s, r in results.items()},
        **{f"gn_{s}_sem": r.sem for s, r in results.items()},
        **{f"mean_grad_sq_{s}": r.mean_grad_sq for s, r in results.items()},
        **{f"variance_{s}": r.variance for s, r in results.items()},
        **{f"seconds_{s}": r.seconds for s, r in results.items()},
        "seconds_naive_estimate": naive_seconds,
    }
    if as_json:
        print(json.dumps(report, indent=2))
        return
    table = Table(title=f"Gradient norm of {model} on {dataset} ({split}, n={n}, {dev})")
    for col in ("scope", "GN = mean ||g_i||^2", "||mean g||^2", "variance", "seconds"):
        table.add_column(col, justify="right")
    for s, r in results.items():
        table.add_row(s, f"{r.mean_sq:.6g} ± {r.sem:.2g}", f"{r.mean_grad_sq:.6g}", f"{r.variance:.6g}", f"{r.seconds:.4f}")
    if naive_seconds is not None:
        table.add_row("naive loop (full)", "", "", "", f"{naive_seconds:.4f} (est.)")
    console.print(table)
    ratio = results["full"].mean_sq and results["fc"].mean_sq / results["full"].mean_sq
    console.print(f"fc / full GN ratio: {ratio:.4f}; exact GN took {results['full'].seconds / max(results['fc'].seconds, 1e-9):.1f}x the fc time")


def load_checkpoint(net: nn.Module, path: Path, what: str = "the model") -> None:
    """Load the state_dict file ``path`` into ``net``, or a one-line ValueError saying what the file is instead.

    Read with ``torch.load(weights_only=True)``: tensors and plain containers only, never pickled code. A
    mapping with a ``state_dict`` entry (a training checkpoint) gives that entry. A state_dict of another
    model names its missing and unexpected keys and its shape mismatches (the first few of each, counted).
    """
    # heavy: torch loads only when a checkpoint is read
    import torch

    if path.stat().st_size == 0:
        raise ValueError(f"checkpoint {path} is empty (0 bytes): save one with torch.save(model.state_dict(), path)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. the pickle protocol of a file that is read anyway
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch.load raises many kinds for a file it cannot read
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if found:
            raise ValueError(
                f"checkpoint {path} holds a pickled {found.group(1)} object, not a state_dict: save "
                "model.state_dict() instead of the whole model (gnsel loads tensors only, never pickled code)"
            ) from None
        raise ValueError(f"checkpoint {path} is not a PyTorch state_dict file: torch.load cannot read it "
                         f"({type(err).__name__}; corrupt, truncated or another format)") from None  # fmt: skip
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, not a state_dict (a mapping of "
                         "parameter names to tensors): save model.state_dict()")  # fmt: skip
    misfit = _misfit(net.state_dict(), state)
    if misfit:
        raise ValueError(f"checkpoint {path} does not fit {what}: {misfit}")
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError) as err:  # what _misfit does not look at
        raise ValueError(f"checkpoint {path} does not fit {what}: {' '.join(str(err).split())}") from None


def _misfit(expected: dict[str, Any], state: dict[str, Any]) -> str:
    """Missing keys, unexpected keys and shape mismatches of ``state`` against ``expected``, shortened; "" if none."""
    def listed(items: list[str]) -> str:
        more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
        return ", ".join(items[:_SHOWN]) + more

    missing = [k for k in expected if k not in state]
    unexpected = [str(k) for k in state if k not in expected]
    shapes = [f"{k} {_shape(state[k])} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and _shape(state[k]) != tuple(v.shape)]  # fmt: skip
    parts = [f"{len(missing)} missing key(s): {listed(missing)}" if missing else "",
             f"{len(unexpected)} unexpected key(s): {listed(unexpected)}" if unexpected else "",
             f"{len(shapes)} shape mismatch(es), file vs model: {listed(shapes)}" if shapes else ""]  # fmt: skip
    text = "; ".join(p for p in parts if p)
    return text + " (a checkpoint of another model, or of other --model-kwargs?)" if text else ""


def _shape(value: Any) -> tuple[int, ...] | str:
    """A tensor's shape; what else a state_dict entry is, by type."""
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None else type(value).__name__


def register(app: typer.Typer) -> None:
    """Add ``gnsel measure`` to ``app``."""
    app.command()(measure)
