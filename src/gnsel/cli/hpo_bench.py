"""``gnsel hpo-bench``: replay search algorithms over a finished zoo (a tabular HPO benchmark).

Wire it into the main app with ``register(app)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .common import fail

__all__ = ["hpo_bench_command", "register"]

DEFAULT_ALGORITHMS = "grid,random,tpe,hyperband,bohb"
DEFAULT_OBJECTIVES = "val_loss,val_error,gn_full,gn_fc,val_loss+0.1*gn_fc,[val_loss,gn_fc]"


def hpo_bench_command(
    store: Path = typer.Option(Path("gnsel-out/zoo.sqlite"), help="The finished zoo's SQLite store."),
    algorithms: str = typer.Option(DEFAULT_ALGORITHMS, help="Comma-separated: grid, random, tpe, hyperband, bohb."),
    objectives: str = typer.Option(
        DEFAULT_OBJECTIVES,
        help="Objectives separated by ';' or by commas outside brackets: metrics (val_loss, val_error, "
             "gn_full, gn_fc, traj_gn, train_loss), weighted sums such as val_loss+0.1*gn_fc, "
             "multi-objectives such as [val_loss,gn_fc].",
    ),
    seeds: int = typer.Option(50, min=1, help="Searches per (algorithm, objective), seeded 0..N-1."),
    budget: Optional[int] = typer.Option(None, min=1, help="Epochs per search, summed over its evaluations "
                                                           "(default: a quarter of the zoo's configurations x epochs)."),
    out: Path = typer.Option(Path("gnsel-out/hpo-bench"), help="Where the CSV, PNG and markdown files go."),
    seed_mode: str = typer.Option("mean", help="With several seeds per configuration: 'mean' of the seeds, "
                                               "or 'sample' one seed per query."),
    gn_every_epoch: bool = typer.Option(True, help="Count the GN measurement and evaluation of every trained "
                                                   "epoch (else only of the evaluated epoch)."),
    min_budget: float = typer.Option(1.0, help="HyperBand/BOHB smallest budget, in epochs."),
    eta: float = typer.Option(3.0, help="HyperBand/BOHB halving rate."),
    workers: int = typer.Option(min(2, os.cpu_count() or 1), min=1,
                                help="Processes (searches are seeded one by one: results do not depend on it)."),
) -> None:
    """Replay grid, random, TPE, HyperBand and BOHB searches over a finished zoo, per objective.

    Each search spends a budget of epochs on look-ups of the zoo's records (costed with their recorded
    seconds, GN measurement included when the objective uses GN) and selects a model; the table shows
    its test accuracy (mean over seeds, 95% interval), the regret against the zoo's best and the cost.
    """
    # heavy: the replay (pandas, optuna, hpbandster, matplotlib) loads only when the command runs
    from ..tune.replay import SEED_MODES, parse_algorithms, parse_objectives, run_replay

    console = Console()  # made per call, as before: it takes the terminal's width (COLUMNS) of this call
    try:
        algs = parse_algorithms(algorithms)
        objs = parse_objectives(objectives)
    except ValueError as err:
        fail(str(err), console)
    if seed_mode not in SEED_MODES:
        fail(f"unknown seed mode {seed_mode!r}; choices: {', '.join(SEED_MODES)}", console)
    if not store.is_file():
        fail(f"no zoo store at {store}; build one with 'gnsel zoo build'", console)
    try:
        with console.status(f"replaying {len(algs)} algorithm(s) x {len(objs)} objective(s) x {seeds} seeds"):
            result = run_replay(
                store, algs, objs, seeds=seeds, budget=budget, seed_mode=seed_mode,
                measure_every_epoch=gn_every_epoch, min_budget=min_budget, eta=eta, workers=workers,
            )
    except (ValueError, FileNotFoundError) as err:
        fail(str(err), console)
    table = Table(title=f"hpo-bench: {result.n_configs} configurations x {result.zoo_epochs} epochs, "
                        f"budget {result.budget} epochs, best test acc {result.best_test_acc:.4f}")
    for col, justify in (("algorithm", "left"), ("objective", "left"), ("test acc ± 95% CI", "right"),
                         ("regret", "right"), ("evals", "right"), ("seconds", "right"), ("GN share", "right")):
        table.add_column(col, justify=justify)
    for _, r in result.summary.iterrows():
        table.add_row(
            r.algorithm, escape(r.objective), f"{r.test_acc:.4f} ± {(r.test_acc_high - r.test_acc_low) / 2:.4f}",
            f"{r.regret:.4f}", f"{r.evaluations:.1f}", f"{r.seconds:.1f}", f"{r.gn_share:.1%}",
        )
    console.print(table)
    notes = sorted({n for n in result.summary["note"] if n})
    for n in notes:
        console.print(f"[dim]note: {escape(n)}[/]")
    paths = result.write(out)
    console.print(escape(f"{len(result.runs)} searches in {result.seconds:.1f} s; wrote "
                         + ", ".join(str(p) for p in paths)))


def register(app: typer.Typer) -> None:
    """Add the ``hpo-bench`` command to ``app``."""
    app.command("hpo-bench")(hpo_bench_command)
