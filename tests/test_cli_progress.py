"""Tests for gnsel.cli.progress.RichProgress: the Rich gnsel.progress.Progress the CLI passes down."""

from __future__ import annotations

import io

from rich.console import Console

from gnsel.cli import RichProgress
from gnsel.progress import Progress


def test_lines_and_nested_bars_on_one_display() -> None:
    out = io.StringIO()
    progress: Progress = RichProgress(Console(file=out, width=100))
    progress.log("start [bold]as is[/]")
    with progress.task("zoo", total=3, done=1) as bar:
        bar.advance(1, "done 2 failed 0")
        with progress.task("train", total=2) as inner:  # Rich allows one live display: both share it
            inner.update(2, note="loss 0.100")
        bar.update(3, 3, "done 3 failed 0")
    text = out.getvalue()
    assert "start [bold]as is[/]" in text
    assert "3/3 done 3 failed 0" in text and "2/2 loss 0.100" in text


def test_transient_bars_leave_nothing_open() -> None:
    progress = RichProgress(Console(file=io.StringIO(), force_terminal=True), transient=True)
    for _ in range(2):
        with progress.task("study", total=None) as bar:
            bar.update(1, 4)
    assert progress._bars is None
