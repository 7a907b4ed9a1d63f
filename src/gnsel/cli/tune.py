"""``gnsel tune``: hyper-parameter searches on Ray Tune with validation-loss and gradient-norm objectives.

Wired into the main app with ``register(app)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from .common import console, fail

if TYPE_CHECKING:
    from ..tune.selection import SelectionReport

__all__ = ["register", "tune_command"]


def tune_command(
    space: Path = typer.Option(..., "--space", help="Search-space YAML (dataset, fixed fields, searched ranges)."),
    algorithm: str = typer.Option(
        "random", "--algorithm", help="grid, random, tpe, hyperband, asha, bohb or pbt; a comma-separated list runs each."
    ),
    objective: List[str] = typer.Option(
        ["val_loss"], "--objective",
        help="Metric, weighted sum ('val_loss+0.1*gn_fc'), with fit constraints ('gn_full | train_loss<=0.05') "
             "or list ('\\[val_loss, gn_fc]'); repeat for several.",
    ),  # fmt: skip
    trials: int = typer.Option(8, "--trials", help="Trials per search (grid: ignored, every point once)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs per trial (default: the space's fixed.epochs)."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help="Seconds per search; Tune stops after."),
    storage: Path = typer.Option(Path("gnsel-out/tune"), "--storage", help="Folder of Ray Tune results and checkpoints."),
    store: Path = typer.Option(Path("gnsel-out/tune.sqlite"), "--store", help="gnsel store that records every trial."),
    name: Optional[str] = typer.Option(None, "--name", help="Experiment name (default <algorithm>-<objective>); a prefix for several."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (auto, host:port, ray://...); local Ray by default."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted search (same settings) instead of starting one."),
    seed: int = typer.Option(0, "--seed", help="Seed of the search algorithm."),
    cpus_per_trial: float = typer.Option(1.0, "--cpus-per-trial", help="CPUs (and torch threads) per trial."),
    gpus_per_trial: float = typer.Option(0.0, "--gpus-per-trial", help="GPUs per trial (fractions share a GPU)."),
    max_concurrent: Optional[int] = typer.Option(None, "--max-concurrent", help="At most this many trials at once."),
    report: Optional[Path] = typer.Option(None, "--report", help="CSV of the selections (default <storage>/selection.csv)."),
) -> None:
    """Search hyper-parameters with an objective that may use GN, record every trial, report what is selected."""
    # heavy: Ray Tune and the search algorithms load only when a search runs (fast --help)
    from ..tune.algorithms import check_search
    from ..tune.live import ray_session, run_search, search_name
    from ..tune.objectives import parse_objective
    from ..tune.selection import SelectionReport
    from ..tune.space import load_space

    algorithms = [a.strip() for a in algorithm.split(",") if a.strip()]
    if not algorithms:
        fail("--algorithm is empty: give one of grid, random, tpe, hyperband, asha, bohb, pbt")
    searches = []
    try:  # every check before Ray starts
        sp = load_space(space)
        for text in objective:
            obj = parse_objective(text)
            for alg in algorithms:
                check_search(sp, alg, obj)
                label = search_name(alg, obj.text)
                full = label if name is None else (name if len(algorithms) * len(objective) == 1 else f"{name}-{label}")
                searches.append((alg, obj.text, full))
        if trials < 1:
            raise ValueError(f"--trials must be positive, got {trials}")
        if epochs is not None and epochs < 1:
            raise ValueError(f"--epochs must be positive, got {epochs}")
    except ValueError as err:
        fail(str(err))
    results = SelectionReport()
    interrupted = []
    with ray_session(address):
        for alg, text, full in searches:
            console.print(f"[bold]{escape(full)}[/]: {alg} on {escape(sp.name)}, objective {escape(text)} -> {storage / full}")
            try:
                res = run_search(
                    sp, algorithm=alg, objective=text, trials=trials, epochs=epochs, time_budget=time_budget,
                    storage=storage, store=store, name=full, address=address, resume=resume, seed=seed,
                    cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, max_concurrent=max_concurrent,
                )  # fmt: skip
            except ValueError as err:
                fail(str(err))
            results.add(res.selection)
            for rec in res.records:
                if rec.status == "ERROR":
                    lines = [line for line in rec.error.splitlines() if line.strip()] or [""]
                    reason = lines[0] if lines[0].startswith("diverged") else lines[-1]
                    console.print(f"  [red]failed[/] trial {rec.trial_id}: {escape(reason)}")
            if res.interrupted:
                interrupted.append(full)
    console.print(selection_table(results))
    path = results.to_csv(report if report is not None else storage / "selection.csv")
    console.print(f"selection report: {path}; trials recorded in {store}")
    if interrupted:
        console.print(f"[yellow]interrupted:[/] {escape(', '.join(interrupted))}; continue with the same command and --resume")
        raise typer.Exit(code=130)


def selection_table(report: SelectionReport, title: str = "Selected models") -> Table:
    """The selection report's cells as a Rich table (numbers right-aligned)."""
    headers, rows = report.cells()
    t = Table(title=title)
    for head in headers:
        t.add_column(head, justify="left" if head in report.LEFT else "right")
    for cells in rows:
        t.add_row(*(escape(c) for c in cells))
    return t


def register(app: typer.Typer) -> None:
    """Add the ``tune`` command to ``app``."""
    app.command("tune")(tune_command)
