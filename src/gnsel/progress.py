"""How long work talks to the user: a small interface that the layers below the CLI take as an argument.

Nothing below ``gnsel.cli`` prints to a console; a function that runs for long takes a
``progress: Progress`` (default :data:`SILENT`) and calls ``log`` for a line and ``task`` for a bar:

    with progress.task("zoo", total=len(configs)) as bar:
        for ...:
            bar.advance(1, "done 3 failed 0")

The CLI passes a Rich implementation (``gnsel.cli.progress``); tests pass :class:`Recorder`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Bar", "Progress", "Recorder", "SILENT", "Silent"]


class Bar(Protocol):
    """One task's bar: ``advance`` by a number of steps, ``update`` to an absolute count and total."""

    def advance(self, steps: int = 1, note: str = "") -> None: ...

    def update(self, done: int, total: int | None = None, note: str = "") -> None: ...


class Progress(Protocol):
    """Where long work reports: lines (``log``) and bars (``task``)."""

    def log(self, message: str) -> None: ...

    def task(self, label: str, total: int | None = None, done: int = 0) -> contextlib.AbstractContextManager[Bar]: ...


class _NoBar:
    def advance(self, steps: int = 1, note: str = "") -> None:
        pass

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        pass


class Silent:
    """Says nothing (the default everywhere below the CLI)."""

    def log(self, message: str) -> None:
        pass

    @contextlib.contextmanager
    def task(self, label: str, total: int | None = None, done: int = 0) -> Iterator[Bar]:
        yield _NoBar()


SILENT = Silent()


@dataclass
class _RecordedBar:
    owner: Recorder
    label: str
    done: int
    total: int | None

    def advance(self, steps: int = 1, note: str = "") -> None:
        self.update(self.done + steps, self.total, note)

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        self.done, self.total = done, total if total is not None else self.total
        self.owner.events.append(("update", self.label, self.done, self.total, note))


@dataclass
class Recorder:
    """Keeps every line and bar update (for tests, or to replay into a log)."""

    events: list[tuple] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        return [e[1] for e in self.events if e[0] == "log"]

    def log(self, message: str) -> None:
        self.events.append(("log", message))

    @contextlib.contextmanager
    def task(self, label: str, total: int | None = None, done: int = 0) -> Iterator[Bar]:
        self.events.append(("start", label, done, total))
        bar = _RecordedBar(self, label, done, total)
        try:
            yield bar
        finally:
            self.events.append(("end", label, bar.done, bar.total))
