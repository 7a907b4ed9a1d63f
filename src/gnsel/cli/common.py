"""What every command shares: the console, the one-line error exit, JSON options, the checks of the
options several commands take (``--device``, ``--out``).

Every error a user can cause ends in :func:`fail`: one line ``error: <what is wrong>``, exit code 2, no
traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["NO_CUDA", "check_device", "check_out_dir", "console", "fail", "parse_kwargs"]

console = Console()

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
