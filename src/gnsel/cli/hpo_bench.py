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

from .common import check_out_dir, fail

__all__ = ["hpo_bench_command", "register"]

DEFAULT_ALGORITHMS = "grid,random,tpe,hyperband,bohb"
DEFAULT_OBJECTIVES = "val_loss,val_error,gn_full,gn_fc,gn_full | train_loss<=0.01,val_loss+0.1*gn_fc,[val_loss,gn_fc]"
DEFAULT_SELECTORS = ("last,val_loss,val_error,gn_full,gn_fc,gn_fc_mean_grad_sq,traj_gn,val_loss+0.1*gn_full,"
                     "val_loss+0.1*gn_fc,val_loss+1*gn_fc")  # gnsel.tune.checkpoints.DEFAULT_SELECTORS (a test checks)


def hpo_bench_command(
    store: Path = typer.Option(Path("gnsel-out/zoo.sqlite"), help="The finished zoo's SQLite store."),
    algorithms: str = typer.Option(DEFAULT_ALGORITHMS, help="Comma-separated: grid, random, tpe, hyperband, bohb."),
    objectives: str = typer.Option(
        DEFAULT_OBJECTIVES,
        help="Objectives separated by ';' or by commas outside brackets: metrics (val_loss, val_error, "
             "gn_full, gn_fc, traj_gn, train_loss, train_error), weighted sums such as val_loss+0.1*gn_fc, "
             "fit constraints after '|' such as 'gn_full | train_loss<=0.01' (GN among the runs that met the "
             "training criterion), multi-objectives such as [val_loss,gn_fc].",
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
    checkpoints: bool = typer.Option(False, "--checkpoints", help="Instead of replaying searches: for every run of "
                                     "the zoo, the epoch each selector picks against the oracle epoch (regret)."),
    selectors: str = typer.Option(DEFAULT_SELECTORS, help="With --checkpoints: single objectives (as --objectives) "
                                  "or the built-ins last, gn_fc_mean_grad_sq, gn_full_mean_grad_sq; val_loss, the "
                                  "baseline, is added when missing."),
    tail: Optional[int] = typer.Option(None, min=1, help="With --checkpoints: pick among each run's last N recorded "
                                       "epochs only (the oracle too); default every recorded epoch."),
    resamples: int = typer.Option(1000, min=1, help="With --checkpoints: bootstrap resamples of the configurations."),
) -> None:
    """Replay grid, random, TPE, HyperBand and BOHB searches over a finished zoo, per objective.

    Each search spends a budget of epochs on look-ups of the zoo's records (costed with their recorded
    seconds, GN measurement included when the objective uses GN) and selects a model; the table shows
    its test accuracy (mean over seeds, 95% interval), the regret against the zoo's best and the cost.
    With --checkpoints: checkpoint selection over the zoo's runs instead (no replay).
    """
    console = Console()  # made per call, as before: it takes the terminal's width (COLUMNS) of this call
    check_out_dir(out, out=console)
    if checkpoints:
        return _checkpoints(store, selectors, tail, resamples, out, console)
    # heavy: the replay (pandas, optuna, hpbandster, matplotlib) loads only when the command runs
    from ..tune.replay import SEED_MODES, parse_algorithms, parse_objectives, run_replay

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


def _checkpoints(store: Path, selectors: str, tail: Optional[int], resamples: int, out: Path, console: Console) -> None:
    """``--checkpoints``: the summary as a table; ``checkpoint_selection.csv``, ``checkpoint_picks.csv`` and the PNG."""
    # heavy: pandas, the store and matplotlib load only when the command runs
    from ..study.checkpoints import checkpoint_selection, plot_checkpoints
    from ..tune.checkpoints import parse_selectors
    from ..tune.lookup import Lookup

    try:
        names = parse_selectors(selectors)
    except ValueError as err:
        fail(str(err), console)
    if not store.is_file():
        fail(f"no zoo store at {store}; build one with 'gnsel zoo build'", console)
    try:
        lookup = Lookup.from_store(store)
        picks, summary = checkpoint_selection(lookup, names, tail=tail, resamples=resamples)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err), console)
    runs = picks.drop_duplicates(["config", "replicate"])
    table = Table(title=f"checkpoint selection: {len(runs)} runs of {runs['config'].nunique()} configurations, "
                        f"candidates {'the last ' + str(tail) + ' epochs' if tail else 'every recorded epoch'}; "
                        "regret in test-accuracy points, 95% bootstrap over configurations (seeds nested)")
    for col in ("selector", "regret [95% CI]", "median", "= oracle", "= last", "mean epoch", "vs val_loss [95% CI]",
                "verdict"):
        table.add_column(col, justify="left" if col in ("selector", "verdict") else "right")
    for r in summary.itertuples():
        table.add_row(escape(r.selector), escape(f"{100 * r.mean_regret:.2f} [{100 * r.low:.2f}, {100 * r.high:.2f}]"),
                      f"{100 * r.median_regret:.2f}", f"{r.share_oracle:.0%}", f"{r.share_last:.0%}", f"{r.mean_epoch:.1f}",
                      escape(f"{100 * r.vs_baseline:+.2f} [{100 * r.vs_low:+.2f}, {100 * r.vs_high:+.2f}]"), r.verdict)  # fmt: skip
    console.print(table)
    console.print("[dim]Wu & Summa (2026, arXiv 2601.16874): 4.24 ± 2.00 points to the oracle with the least head "
                  "gradient (Frobenius norm of the batch-mean head gradient, one batch) in a tail window, ImageNet; "
                  "gn_fc_mean_grad_sq is its square on the probe set, gn_fc the mean per-example squared norm.[/]")
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "checkpoint_selection.csv", out / "checkpoint_picks.csv"]
    summary.to_csv(paths[0], index=False)
    picks.to_csv(paths[1], index=False)
    paths.append(plot_checkpoints(summary, out / "checkpoint_selection.png", tail))
    console.print(escape("wrote " + ", ".join(str(p) for p in paths)))


def register(app: typer.Typer) -> None:
    """Add the ``hpo-bench`` command to ``app``."""
    app.command("hpo-bench")(hpo_bench_command)
