"""``gnsel study``: the whole study on a preset, with its report. Wire it in with ``register(app)``."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.markup import escape

from .common import check_device, check_out_dir, console, fail, stopped
from .progress import RichProgress

__all__ = ["register", "study_command"]


def study_command(
    preset: str = typer.Option("quick", "--preset", help="quick (MNIST-1D, CPU, <= 20 min), paper (CIFAR-10 & co, GPU) or a study YAML file."),
    out: Path = typer.Option(Path("gnsel-study"), "--out", help="Folder of the report, its tables and figures, and all resumable work."),
    part: list[str] | None = typer.Option(None, "--part", help="Run only this part (correlation, cost, hpo, architectures); repeat or comma-separate."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address (auto, host:port, ray://...); local Ray by default."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N for the measurements (default: the preset's, auto)."),
    workers: int | None = typer.Option(None, "--workers", help="Zoo runs and replay processes at once (default: the CPU count, at most 8)."),
    data_root: Path | None = typer.Option(None, "--data-root", help="Where datasets are (sets GNSEL_DATA_ROOT; the paper preset needs CIFAR-10, SVHN, MNIST there)."),
) -> None:
    """Run the study (correlation, cost, hpo, architectures) and write report.html, report.md and CSV tables.

    A rerun reuses everything already computed: an interrupted study continues where it stopped.
    """
    # heavy: the study (torch, pandas, ray, matplotlib) loads only when it runs (fast --help)
    from ..study import load_study, parse_parts, run_study
    from ..study.run import answer

    if data_root is not None:
        os.environ["GNSEL_DATA_ROOT"] = str(data_root.expanduser().resolve())
    try:
        spec = load_study(preset)
        parts = parse_parts(part)
    except ValueError as err:
        fail(str(err))
    check_out_dir(out)
    check_device(device or spec.device)
    console.print(f"[bold]gnsel study[/] {escape(spec.name)}: {escape(', '.join(parts))} -> {escape(str(out))}")
    try:
        result = run_study(spec, out, parts=parts, address=address, device=device, workers=workers,
                           progress=RichProgress(console, transient=True))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM
        stopped("finished work is saved")
    except ValueError as err:
        fail(str(err))
    done = ", ".join(f"{p} {result.seconds[p]:.0f} s" + (" (reused)" if p in result.reused else "")
                     for p in result.seconds)
    console.print(f"parts: {escape(done)}")
    summary = answer(result.sections)
    if summary is not None:
        console.print(f"[bold]{escape(summary.verdict)}[/]: {escape(summary.text)}")
    console.print(f"[bold green]report[/]: {escape(str(result.files['html']))}")


def register(app: typer.Typer) -> None:
    """Add ``gnsel study`` to the app."""
    app.command("study")(study_command)
