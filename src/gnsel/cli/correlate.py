"""``gnsel correlate``: how well each generalization measure ranks the zoo's models by their gap."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import check_device, check_out_dir, console, fail
from .progress import RichProgress

__all__ = ["correlate", "register"]


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
    # heavy: the measures and the correlation (torch, pandas, scipy, matplotlib) load only when it runs
    from ..zoo.correlate import correlate as run_correlate
    from ..measures import get_measure, list_measures
    from ..store import StoreError

    if list_choices:
        table = Table(title="generalization measures")
        for col in ("measure", "family", "needs", "citation"):
            table.add_column(col)
        for name in list_measures():
            spec = get_measure(name)
            table.add_row(name, spec.family, ",".join(sorted(spec.needs)), spec.citation)
        console.print(table)
        return
    check_out_dir(out)
    check_device(device)
    if not store.exists():
        fail(f"no store at {store}: build a zoo first (gnsel zoo build)")
    names = [m.strip() for m in measures.split(",")] if measures else None
    try:
        report = run_correlate(
            store, measures=names, target=target, out_dir=out, device=device, per_epoch=per_epoch,
            progress=RichProgress(console, transient=True),
        )
    except (ValueError, FileNotFoundError, StoreError) as err:
        fail(str(err))
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
    if report.unreadable:
        n_runs = len(report.values)
        console.print(f"warning: {len(report.unreadable)} of {n_runs} runs have no readable checkpoint; their "
                      "checkpoint measures are NaN:", markup=False)  # fmt: skip
        for line in list(report.unreadable.values())[:5]:
            console.print(f"  {line}", markup=False)
    console.print(f"{len(report.files)} files in {out} ({report.seconds:.1f} s)")


def register(app: typer.Typer) -> None:
    """Add ``gnsel correlate`` to ``app``."""
    app.command()(correlate)
