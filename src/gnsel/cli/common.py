"""What every command shares: the console, the one-line error exit, JSON options."""

from __future__ import annotations

import json
from typing import NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["console", "fail", "parse_kwargs"]

console = Console()


def fail(message: str, out: Console | None = None) -> NoReturn:
    """Print ``error: <message>`` (the message as plain text, not Rich markup) and exit with code 2."""
    (out or console).print(f"[bold red]error:[/] {escape(message)}")
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
