"""shim: the CLI passes a Progress after the merge. A Rich console as a :class:`gnsel.progress.Progress`,
for callers of :func:`gnsel.study.run_study` that still pass ``console=`` (the CLI, the study tests)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from ..progress import Bar


class _RichBar:
    def __init__(self, bar: Progress, task: TaskID, done: int) -> None:
        self._bar, self._task, self._done = bar, task, done

    def advance(self, steps: int = 1, note: str = "") -> None:
        self.update(self._done + steps, None, note)

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        self._done = done
        self._bar.update(self._task, completed=done, **({} if total is None else {"total": total}))


class _NoBar:
    def advance(self, steps: int = 1, note: str = "") -> None:
        pass

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        pass


class ConsoleProgress:
    """Lines printed on ``console`` as plain text; bars (transient) only if ``bars``."""

    def __init__(self, console: Console, bars: bool = True) -> None:
        self.console, self.bars = console, bars

    def log(self, message: str) -> None:
        self.console.print(message, highlight=False, markup=False)

    @contextlib.contextmanager
    def task(self, label: str, total: int | None = None, done: int = 0) -> Iterator[Bar]:
        if not self.bars:
            yield _NoBar()
            return
        with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=self.console, transient=True) as bar:  # fmt: skip
            yield _RichBar(bar, bar.add_task(label, total=total, completed=done), done)
