"""Text shared by the markdown and HTML renderers: inline markup, cell values, formatted tables.

Inline text (captions, intro, findings, notes) may use `` `code` ``, ``**bold**``,
``*italic*`` and ``[text](url)``; the markdown keeps it as is, :func:`inline_html` converts it
after escaping everything else. :func:`format_grid` turns a :class:`~.document.Table` into string cells.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from numbers import Integral, Real

import pandas as pd

from .document import Table

__all__ = ["Grid", "format_grid", "format_value", "inline_html", "one_line", "paragraphs", "plain", "truncation_note"]

_NA = "-"
_CODE_RE = re.compile(r"`([^`\n]+)`")
_LINK_RE = re.compile(r"\[([^\]\n]+)\]\(([^()\s]+)\)")
_BOLD_RE = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_ITALIC_RE = re.compile(r"(?<![*\w])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![*\w])")
_SAFE_URL_RE = re.compile(r"^(?:https?:|mailto:|#|[^:]*$)", re.IGNORECASE)
_HOLD_RE = re.compile("\x00(\\d+)\x00")


def inline_html(text: str) -> str:
    """Escape text, then turn `code`, **bold**, *italic* and [text](url) into HTML."""
    held: list[str] = []

    def hold(fragment: str) -> str:
        held.append(fragment)
        return f"\x00{len(held) - 1}\x00"

    out = html.escape(str(text).replace("\x00", ""))
    out = _CODE_RE.sub(lambda m: hold(f"<code>{m.group(1)}</code>"), out)
    out = _LINK_RE.sub(lambda m: hold(_link(m.group(1), m.group(2))), out)
    out = _emphasis(out)
    while _HOLD_RE.search(out):
        out = _HOLD_RE.sub(lambda m: held[int(m.group(1))], out)
    return out


def _emphasis(escaped: str) -> str:
    """Apply **bold** then *italic* to already-escaped text."""
    escaped = _BOLD_RE.sub(r"<strong>\1</strong>", escaped)
    return _ITALIC_RE.sub(r"<em>\1</em>", escaped)


def _link(escaped_text: str, escaped_url: str) -> str:
    """An <a> for safe URLs (http(s), mailto, anchors, relative); other schemes stay text."""
    label = _emphasis(escaped_text)
    if not _SAFE_URL_RE.match(html.unescape(escaped_url)):
        return f"[{label}]({escaped_url})"
    return f'<a href="{escaped_url}">{label}</a>'


def plain(text: str) -> str:
    """Inline text without its markup, for alt attributes and titles."""
    text = _CODE_RE.sub(r"\1", str(text))
    text = _LINK_RE.sub(r"\1", text)
    text = _BOLD_RE.sub(r"\1", text)
    return _ITALIC_RE.sub(r"\1", text)


def paragraphs(text: str) -> list[str]:
    """Split text into paragraphs at blank lines, dropping empty ones."""
    return [p.strip() for p in re.split(r"\n\s*\n", text or "") if p.strip()]


def format_value(value: object, digits: int = 3) -> str:
    """One cell as shown in md/html: floats with digits decimals, NaN/None as '-', ints as ints."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return _NA
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        return f"{float(value):.{digits}f}"
    return str(value)


def _is_number(value: object) -> bool:
    """Whether a cell value is a (non-bool) number."""
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_numeric_column(col: pd.Series) -> bool:
    """Whether a column holds numbers (right-aligned): numeric dtype or all non-null values numbers."""
    if pd.api.types.is_bool_dtype(col):
        return False
    if pd.api.types.is_numeric_dtype(col):
        return True
    values = col.dropna()
    return len(values) > 0 and all(_is_number(v) for v in values)


def _column_label(label: object) -> str:
    """A header label; tuple labels (MultiIndex columns) joined with ' / ', empty levels dropped."""
    if isinstance(label, tuple):
        return " / ".join(str(x) for x in label if str(x) != "")
    return str(label)


@dataclass
class Grid:
    """A table ready to print: header, string cells, which columns are numeric, truncation."""

    header: list[str]
    rows: list[list[str]]
    numeric: list[bool]
    shown: int
    total: int


def format_grid(table: Table) -> Grid:
    """Format a Table's frame (index as first columns if asked; at most max_rows rows)."""
    frame = table.frame.reset_index(allow_duplicates=True) if table.index else table.frame
    total = len(frame)
    if table.max_rows is not None:
        frame = frame.iloc[: table.max_rows]
    columns = [frame.iloc[:, j] for j in range(frame.shape[1])]
    rows = [
        [format_value(col.iloc[i], table.digits) for col in columns] for i in range(len(frame))
    ]
    return Grid(
        header=[_column_label(c) for c in frame.columns],
        rows=rows,
        numeric=[_is_numeric_column(col) for col in columns],
        shown=len(frame),
        total=total,
    )


def truncation_note(table: Table, grid: Grid) -> str | None:
    """The '(first N of M rows; ...)' note when rows were cut, else None."""
    if grid.shown >= grid.total:
        return None
    return f"(first {grid.shown} of {grid.total} rows; all in tables/{table.name}.csv)"


def one_line(text: str) -> str:
    """Collapse whitespace runs (incl. newlines) to single spaces."""
    return " ".join(str(text).split())
