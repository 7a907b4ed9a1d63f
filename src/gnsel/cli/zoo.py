"""``gnsel zoo build|status|export``: train grids of models into a store, and look at the store."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .common import console, fail
from .progress import RichProgress

__all__ = ["register", "zoo_app"]

zoo_app = typer.Typer(
    help="Build and inspect model zoos: grids of trained models with per-epoch records.",
    no_args_is_help=True,
)


@zoo_app.command("build")
def zoo_build(
    preset: Optional[str] = typer.Option(None, help="A named grid shipped with gnsel (quick, paper)."),
    grid: Optional[Path] = typer.Option(None, help="A grid YAML file (see docs/zoo.md)."),
    store: Path = typer.Option(Path("gnsel-out/zoo.sqlite"), help="The SQLite store to write to."),
    workers: Optional[int] = typer.Option(None, help="Parallel runs (default: CPU count). 1 trains in-process, without Ray."),
    address: Optional[str] = typer.Option(None, help="A Ray cluster address (e.g. auto or ray://host:10001)."),
    retry_failed: bool = typer.Option(True, help="Redo runs that failed before."),
) -> None:
    """Train every configuration of a grid; re-running skips finished runs and redoes unfinished ones.

    Exits 0 when every run of the grid is done, 1 when some failed (listed by ``gnsel zoo status``), 2 on an
    error (a bad grid, a store that is not a store, read-only or on a full disk).
    """
    from ..store import StoreError  # heavy: torch (through the gnsel package)
    from ..zoo import build_zoo, load_grid  # heavy: torch, ray

    if preset and grid:
        fail("give either --preset or --grid, not both")
    try:
        g = load_grid(grid if grid else (preset or "quick"))
    except ValueError as err:
        fail(str(err))
    console.print(f"grid [bold]{g.name}[/]: {len(g.configs)} runs -> {store}")
    try:
        summary = build_zoo(g.configs, store, workers=workers, address=address, retry_failed=retry_failed,
                            progress=RichProgress(console))
    except StoreError as err:
        fail(str(err))
    elsewhere = f", {summary.elsewhere} settled by another build" if summary.elsewhere else ""
    console.print(
        f"{summary.done} trained, {summary.skipped} already done{elsewhere}, {summary.failed} failed "
        f"in {summary.seconds:.1f} s; store: {escape(str(store))}"
    )
    for rid, err in list(summary.errors.items())[:5]:
        console.print(f"  [red]failed[/] {rid}: {escape(err.splitlines()[-1]) if err else ''}")
    if not summary.ok:
        console.print(f"{summary.unfinished} of {summary.total} runs failed (see `gnsel zoo status`)", markup=False)
        raise typer.Exit(code=1)


@zoo_app.command("status")
def zoo_status(store: Path = typer.Option(Path("gnsel-out/zoo.sqlite"), help="The SQLite store.")) -> None:
    """How many runs of the store are done, failed, running or pending, and how many met the training criterion."""
    from ..store import Store, StoreError  # heavy: pandas

    if not store.exists():
        fail(f"no store at {store}")
    try:
        opened = Store(store, mode="r")
        runs = opened.runs_frame()
        live = len(opened.live_claims())
    except StoreError as err:
        fail(str(err))
    counts = runs["status"].value_counts().to_dict() if len(runs) else {}
    line = " ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "empty store"
    if counts.get("running"):
        line += f" ({live} of the running held by a live build)"
    done = runs[runs["status"] == "done"] if len(runs) else runs
    if len(done) and done["converged"].notna().any():
        met = int(done["converged"].fillna(False).sum())
        line += f" (of the done: {met} met the training criterion, {len(done) - met} stopped at the maximum epochs)"
    console.print(line)


@zoo_app.command("export")
def zoo_export(
    store: Path = typer.Option(Path("gnsel-out/zoo.sqlite"), help="The SQLite store."),
    out: Path = typer.Option(Path("gnsel-out/export"), help="Folder for runs/epochs/measures as CSV and Parquet."),
) -> None:
    """Write the store's tables as CSV and Parquet files."""
    from ..store import Store, StoreError  # heavy: pandas

    if not store.exists():
        fail(f"no store at {store}")
    try:
        paths = Store(store, mode="r").export(out)
    except StoreError as err:
        fail(str(err))
    for path in paths:
        console.print(str(path))


def register(app: typer.Typer) -> None:
    """Add the ``gnsel zoo`` command group to ``app``."""
    app.add_typer(zoo_app, name="zoo")
