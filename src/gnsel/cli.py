"""The ``gnsel`` command line (Typer): one command per step of the study."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="gnsel: can the gradient norm (GN) of a trained model guide model selection, and at what cost?",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


@app.callback()
def _root() -> None:
    """gnsel: can the gradient norm (GN) of a trained model guide model selection, and at what cost?

    Commands: measure (GN of one model), zoo (train grids of models into a store), correlate
    (how well GN and other measures rank the zoo's models by generalization gap), tune (a live
    hyper-parameter search on Ray Tune with GN objectives), hpo-bench (search algorithms replayed
    over a finished zoo, many seeds), study (all of it on a preset, with a report).
    """


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=2)


def _parse_kwargs(text: Optional[str], what: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        _fail(f"{what} must be a JSON object, e.g. '{{\"width\": 128}}': {err}")
    if not isinstance(value, dict):
        _fail(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


@app.command()
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
    import torch

    from .data import list_datasets, load_dataset
    from .gradnorm import GradNormError, gradient_norm, resolve_device
    from .gradnorm.naive import naive_sq_norms
    from .models import create_model, list_models

    if list_choices:
        console.print(f"models: {', '.join(list_models())}\ndatasets: {', '.join(list_datasets())}")
        return
    if split not in ("train", "val", "test"):
        _fail(f"unknown split {split!r}: use train, val or test")
    try:
        dev = resolve_device(device)
        splits = load_dataset(dataset, seed=seed, root=data_root, download=download)
        torch.manual_seed(seed)
        net = create_model(model, num_classes=splits.num_classes, input_shape=splits.input_shape,
                           **_parse_kwargs(model_kwargs, "--model-kwargs"))
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))
    if checkpoint is not None:
        if not checkpoint.is_file():
            _fail(f"checkpoint {checkpoint} does not exist")
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            _fail(f"checkpoint {checkpoint} does not fit model {model!r}: {str(err).splitlines()[0]}")
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
        _fail(str(err))
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


zoo_app = typer.Typer(help="Build and inspect model zoos: grids of trained models with per-epoch records.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")


@zoo_app.command("build")
def zoo_build(
    preset: Optional[str] = typer.Option(None, help="A named grid shipped with gnsel (quick, paper)."),
    grid: Optional[Path] = typer.Option(None, help="A grid YAML file (see docs/zoo.md)."),
    store: Path = typer.Option(Path("gnsel-out/zoo.sqlite"), help="The SQLite store to write to."),
    workers: Optional[int] = typer.Option(None, help="Parallel runs (default: CPU count). 1 trains in-process, without Ray."),
    address: Optional[str] = typer.Option(None, help="A Ray cluster address (e.g. auto or ray://host:10001)."),
    retry_failed: bool = typer.Option(True, help="Redo runs that failed before."),
) -> None:
    """Train every configuration of a grid; re-running skips finished runs and redoes unfinished ones."""
    from .zoo import build_zoo, load_grid

    if preset and grid:
        _fail("give either --preset or --grid, not both")
    try:
        g = load_grid(grid if grid else (preset or "quick"))
    except ValueError as err:
        _fail(str(err))
    console.print(f"grid [bold]{g.name}[/]: {len(g.configs)} runs -> {store}")
    summary = build_zoo(g.configs, store, workers=workers, address=address, retry_failed=retry_failed)
    console.print(
        f"{summary.done} trained, {summary.skipped} already done, {summary.failed} failed "
        f"in {summary.seconds:.1f} s; store: {store}"
    )
    for rid, err in list(summary.errors.items())[:5]:
        console.print(f"  [red]failed[/] {rid}: {err.splitlines()[-1] if err else ''}")


@zoo_app.command("status")
def zoo_status(store: Path = typer.Option(Path("gnsel-out/zoo.sqlite"), help="The SQLite store.")) -> None:
    """How many runs of the store are done, failed, running or pending."""
    from .store import Store

    if not store.exists():
        _fail(f"no store at {store}")
    runs = Store(store).runs_frame()
    counts = runs["status"].value_counts().to_dict() if len(runs) else {}
    console.print(" ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "empty store")


@zoo_app.command("export")
def zoo_export(
    store: Path = typer.Option(Path("gnsel-out/zoo.sqlite"), help="The SQLite store."),
    out: Path = typer.Option(Path("gnsel-out/export"), help="Folder for runs/epochs/measures as CSV and Parquet."),
) -> None:
    """Write the store's tables as CSV and Parquet files."""
    from .store import Store

    if not store.exists():
        _fail(f"no store at {store}")
    for path in Store(store).export(out):
        console.print(str(path))


@app.command()
def correlate(
    store: Path = typer.Option(Path("gnsel-out/zoo.sqlite"), help="The zoo's SQLite store."),
    measures: Optional[str] = typer.Option(None, help="Comma-separated measures (default: all; see --list)."),
    target: str = typer.Option("gap_acc", help="gap_acc, gap_loss or test_error."),
    out: Path = typer.Option(Path("gnsel-out/correlation"), help="Folder for the CSV tables and PNG plots."),
    device: str = typer.Option("cpu", help="Where measures are computed: cpu, cuda or auto."),
    per_epoch: bool = typer.Option(True, help="Also score the per-epoch measures at every epoch."),
    list_choices: bool = typer.Option(False, "--list", help="List the measures with their citations, then exit."),
) -> None:
    """Rank the zoo's models by each generalization measure and score the ranking against the gap."""
    from rich.progress import Progress

    from .correlate import correlate as run_correlate
    from .measures import get_measure, list_measures

    if list_choices:
        table = Table(title="generalization measures")
        for col in ("measure", "family", "needs", "citation"):
            table.add_column(col)
        for name in list_measures():
            spec = get_measure(name)
            table.add_row(name, spec.family, ",".join(sorted(spec.needs)), spec.citation)
        console.print(table)
        return
    if not store.exists():
        _fail(f"no store at {store}: build a zoo first (gnsel zoo build)")
    names = [m.strip() for m in measures.split(",")] if measures else None
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("measures", total=None)
        try:
            report = run_correlate(
                store, measures=names, target=target, out_dir=out, device=device, per_epoch=per_epoch,
                progress=lambda i, n: bar.update(task, completed=i, total=n),
            )
        except (ValueError, FileNotFoundError) as err:
            _fail(str(err))
    cols = {"kendall": "Kendall", "spearman": "Spearman", "granulated": "granulated", "cmi": "CMI",
            "sign_error": "sign err", "sign_error_max": "worst"}  # fmt: skip
    n_models = int(report.scores["n"].max())
    table = Table(title=f"How each measure ranks {n_models} models by {target} (final epoch)")
    table.add_column("measure")
    for c in cols.values():
        table.add_column(c, justify="right")
    for name, row in report.scores.sort_values("kendall", ascending=False, na_position="last").iterrows():
        table.add_row(name + ("*" if row["error"] else ""), *(f"{row[c]:+.3f}" if row[c] == row[c] else "-" for c in cols))
    console.print(table)
    for name, row in report.scores[report.scores["error"] != ""].iterrows():
        console.print(f"  * {name}: computed on {int(row['n'])} of {n_models} models; elsewhere: {row['error']}")
    g = Table(title="Granulated Kendall per hyper-parameter (Jiang et al. 2020)")
    g.add_column("measure")
    short = {c: c.split(".")[-1] for c in report.granulated.columns}
    for c in report.granulated.columns:
        g.add_column(short[c], justify="right")
    for name, row in report.granulated.iterrows():
        g.add_row(name, *(f"{v:+.2f}" if v == v else "-" for v in row))
    console.print(g)
    console.print(f"{len(report.files)} files in {out} ({report.seconds:.1f} s)")


def _register_search_commands() -> None:
    from .cli_hpo_bench import register as register_hpo_bench
    from .cli_study import register as register_study
    from .cli_tune import register as register_tune

    register_tune(app)
    register_hpo_bench(app)
    register_study(app)


_register_search_commands()


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
