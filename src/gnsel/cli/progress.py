"""The Rich implementation of :class:`gnsel.progress.Progress`: what the CLI passes to long work.

``RichProgress(console)`` prints ``log`` lines as plain text (no markup, no highlighting) and shows
each ``task`` as a bar in the look of the bars the layers below drew themselves before issue #10::

    zoo ━━━━━━━━━━━━━━━━━━━━━━━━ 12/36 done 12 failed 0 0:01:02 left 0:03:10

(label in bold, bar, done/total, the latest note, elapsed, remaining). Tasks opened while another is
running share one live display (Rich allows one per console), so a study's bar may hold a zoo's
bar which holds a run's. ``transient=True`` clears each bar when its task ends, as the study's bars
did; by default a finished bar stays on screen, as the zoo's and the training's did.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as _RichBars

from ..progress import SILENT, Bar

__all__ = ["RichProgress"]


class _RichBar:
    """One task of the shared display; counts as in :class:`gnsel.progress.Bar`."""

    def __init__(self, bars: _RichBars, task: TaskID) -> None:
        self._bars, self._task = bars, task

    def advance(self, steps: int = 1, note: str = "") -> None:
        self._bars.update(self._task, advance=steps, note=note)

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        if total is None:
            self._bars.update(self._task, completed=done, note=note)
        else:
            self._bars.update(self._task, completed=done, total=total, note=note)


class RichProgress:
    """:class:`gnsel.progress.Progress` on a Rich console: lines above, bars below while tasks run."""

    def __init__(self, console: Console | None = None, *, transient: bool = False, bars: bool = True) -> None:
        self.console = console if console is not None else Console()
        self.transient, self.bars = transient, bars
        self._bars: _RichBars | None = None
        self._open = 0

    def log(self, message: str) -> None:
        """One line, printed as is (above any bar)."""
        self.console.print(message, highlight=False, markup=False)

    @contextlib.contextmanager
    def task(self, label: str, total: int | None = None, done: int = 0) -> Iterator[Bar]:
        """A bar for ``label`` (``total=None``: not known yet, an indeterminate bar); none if ``bars`` is off."""
        if not self.bars:
            with SILENT.task(label, total, done) as bar:
                yield bar
            return
        if self._bars is None:
            self._bars = _RichBars(
                TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[note]}", markup=False), TimeElapsedColumn(), TextColumn("left"),
                TimeRemainingColumn(), console=self.console, transient=self.transient,
            )  # fmt: skip
            self._bars.start()
        bars = self._bars
        task = bars.add_task(escape(label), total=total, completed=done, note="")
        self._open += 1
        try:
            yield _RichBar(bars, task)
        finally:
            self._open -= 1
            if self.transient:
                bars.remove_task(task)
            if self._open == 0:
                bars.stop()
                self._bars = None
