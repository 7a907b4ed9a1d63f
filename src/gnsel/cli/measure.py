"""``gnsel measure``: GN (exact, all layers) and its fc approximation of one model, with timings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import console, fail, parse_kwargs

__all__ = ["measure", "register"]


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
    try:
        dev = resolve_device(device)
        splits = load_dataset(dataset, seed=seed, root=data_root, download=download)
        torch.manual_seed(seed)
        net = create_model(model, num_classes=splits.num_classes, input_shape=splits.input_shape,
                           **parse_kwargs(model_kwargs, "--model-kwargs"))
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    if checkpoint is not None:
        if not checkpoint.is_file():
            fail(f"checkpoint {checkpoint} does not exist")
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            fail(f"checkpoint {checkpoint} does not fit model {model!r}: {str(err).splitlines()[0]}")
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


def register(app: typer.Typer) -> None:
    """Add ``gnsel measure`` to ``app``."""
    app.command()(measure)
