"""What every command shares: the console, the one-line error exit, JSON options, the checks of the
options several commands take (``--device``, ``--out``), and SIGTERM handled as Ctrl-C is.

Every error a user can cause ends in :func:`fail`: one line ``error: <what is wrong>``, exit code 2, no
traceback. An interrupted command (Ctrl-C, or SIGTERM from a scheduler or ``kill``) prints one line
saying so and exits 130 (Ctrl-C) or 143 (SIGTERM), the shell's 128 + signal number; the same cleanup
runs either way, so a rerun of the same command continues (:func:`interruptible`).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

__all__ = [
    "INTERRUPTED", "NO_CUDA", "TERMINATED", "Terminated", "check_device", "check_out_dir", "console", "fail",
    "interruptible", "parse_kwargs", "stopped",
]  # fmt: skip

console = Console()

INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C
TERMINATED = 143  # 128 + SIGTERM
NO_CUDA = "CUDA is not available on this machine; use --device cpu or auto"


def fail(message: str, out: Console | None = None) -> NoReturn:
    """Print ``error: <message>`` on one line (plain text, not Rich markup, never wrapped) and exit with code 2."""
    line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    (out or console).print(f"[bold red]error:[/] {escape(line)}", soft_wrap=True)
    raise typer.Exit(code=2)


def parse_kwargs(text: Optional[str], what: str) -> dict:
    """A JSON object option (``--model-kwargs '{"width": 128}'``); ``{}`` when not given."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        fail(f"{what} must be a JSON object, e.g. '{{\"width\": 128}}': {err}")
    if not isinstance(value, dict):
        fail(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def check_device(device: str | None, out: Console | None = None) -> None:
    """``--device``: ``auto`` (or not given), or a device this machine has; otherwise one line and exit 2."""
    if device is None or device == "auto":
        return
    # heavy: torch and the engine load only when a command checks a device
    import torch

    from ..gradnorm import resolve_device

    try:
        resolve_device(device)
    except ValueError as err:
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            fail(NO_CUDA, out)
        fail(f"--device {device}: {err}", out)


def check_out_dir(path: Path, option: str = "--out", out: Console | None = None) -> None:
    """An output folder option: it may be missing (it is made) or a folder, but not a file (nor inside one)."""
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            where = "" if p == path else f" ({p} is a file)"
            fail(f"{option} {path} is not a folder{where}: give a folder, or a new path for one", out)


# ------------------------------------------------------------------------------ interruptions
class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be, so that the same cleanup runs."""


_STATE = threading.local()


def _on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM as Ctrl-C: whoever handles Ctrl-C now handles it (e.g. Ray Tune stops a search and saves it)."""
    _STATE.sigterm = True
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not signal.default_int_handler:
        handler(signal.SIGINT, frame)
        return
    raise Terminated("SIGTERM")


@contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """Route SIGTERM to :func:`_on_sigterm` for the duration (main thread only: elsewhere signals cannot be set).

    Ray gets in the way twice, and both are undone for the command: ``ray.init`` sets its own SIGTERM
    handler (``sys.exit``, which skips every Ctrl-C path) -- while the command runs, a SIGTERM handler set
    by anyone else is not installed (``signal.signal`` keeps ours); and a Ray driver's C++ failure-signal
    handler (abseil's) arms a 3 s alarm on SIGTERM that aborts the process (exit 134, a core dump) if the
    cleanup takes longer, as shutting Ray down does -- Ray's documented switch turns it off (unless set).
    """
    _STATE.sigterm = False
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ours = "RAY_DISABLE_FAILURE_SIGNAL_HANDLER" not in os.environ
    if ours:
        os.environ["RAY_DISABLE_FAILURE_SIGNAL_HANDLER"] = "1"
    set_handler = signal.signal
    previous = set_handler(signal.SIGTERM, _on_sigterm)

    def keep_ours(signum: int, handler: Any) -> Any:
        return _on_sigterm if signum == signal.SIGTERM else set_handler(signum, handler)

    signal.signal = keep_ours
    try:
        yield
    finally:
        signal.signal = set_handler
        set_handler(signal.SIGTERM, previous)
        if ours:
            os.environ.pop("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", None)


def stopped(note: str = "", out: Console | None = None) -> NoReturn:
    """Print the one line of an interrupted command and exit 130 (Ctrl-C) or 143 (SIGTERM)."""
    term = getattr(_STATE, "sigterm", False)
    how = "interrupted by SIGTERM" if term else "interrupted"
    (out or console).print(f"[yellow]{how}[/]; {escape(note + '; ' if note else '')}run the same command again "
                           "to continue", soft_wrap=True)  # fmt: skip
    raise typer.Exit(code=TERMINATED if term else INTERRUPTED)


def interruptible(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with SIGTERM handled as Ctrl-C and an interruption ended by :func:`stopped`.

    A command that reports its own interruption with exit code 130 (``gnsel tune``: Ray Tune stops the
    search on Ctrl-C and saves it) keeps its line, and exits 143 after a SIGTERM. ``SystemExit(15)``, what
    a SIGTERM handler of Ray's would raise, is taken for SIGTERM too.
    """
    if getattr(command, "__gnsel_interruptible__", False):
        return command

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        with _sigterm_as_ctrl_c():
            try:
                return command(*args, **kwargs)
            except KeyboardInterrupt:
                stopped()
            except SystemExit as err:
                if err.code != signal.SIGTERM:
                    raise
                _STATE.sigterm = True
                stopped()
            except typer.Exit as err:
                if err.exit_code == INTERRUPTED and getattr(_STATE, "sigterm", False):
                    raise typer.Exit(code=TERMINATED) from None
                raise

    run.__gnsel_interruptible__ = True  # type: ignore[attr-defined]
    return run
