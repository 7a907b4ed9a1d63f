"""The markdown renderer: a whole :class:`~.document.Report` as ``report.md`` text (inline markup kept)."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count
from pathlib import Path

from .document import Figure, Finding, Report, Section, Table
from .format import Grid, format_grid, one_line, paragraphs, plain, truncation_note

__all__ = ["render_markdown"]


def render_markdown(report: Report) -> str:
    """The whole report as markdown (inline markup kept as is)."""
    tables, figures = count(1), count(1)
    parts = [f"# {report.title}", report.question.strip()]
    if report.verdict:
        parts += ["## Verdict", _md_findings(report.verdict)]
    for section in report.sections:
        parts.append(_md_section(section, tables, figures))
    parts += ["## About this run", _md_meta(report.meta)]
    return "\n\n".join(p for p in parts if p) + "\n"


def _md_findings(findings: list[Finding]) -> str:
    """Findings as a bullet list, each led by its verdict in bold."""
    return "\n".join(f"- **[{f.verdict}]** {one_line(f.text)}" for f in findings)


def _md_section(section: Section, tables: Iterator[int], figures: Iterator[int]) -> str:
    """One section: heading, intro, findings, tables, figures, notes."""
    parts = [f"## {section.title}", *paragraphs(section.intro)]
    if section.findings:
        parts.append(_md_findings(section.findings))
    parts += [_md_table(t, next(tables)) for t in section.tables]
    parts += [_md_figure(f, next(figures)) for f in section.figures]
    if section.notes:
        parts.append("Notes:\n\n" + "\n".join(f"- {one_line(n)}" for n in section.notes))
    return "\n\n".join(parts)


def _md_table(table: Table, number: int) -> str:
    """Caption line, pipe table and truncation note."""
    grid = format_grid(table)
    parts = [f"**Table {number}.** {one_line(table.caption)}", _pipe_table(grid)]
    note = truncation_note(table, grid)
    if note:
        parts.append(note)
    return "\n\n".join(parts)


def _pipe_table(grid: Grid) -> str:
    """A markdown pipe table, numeric columns right-aligned."""
    if not grid.header:
        return "*(empty table)*"
    lines = [_pipe_row(grid.header)]
    lines.append("|" + "|".join("---:" if n else "---" for n in grid.numeric) + "|")
    lines += [_pipe_row(row) for row in grid.rows]
    return "\n".join(lines)


def _pipe_row(cells: list[str]) -> str:
    """One pipe-table row, escaping '|' and flattening newlines."""
    return "| " + " | ".join(one_line(c).replace("|", "\\|") for c in cells) + " |"


def _md_figure(figure: Figure, number: int) -> str:
    """Image link to figures/<name> plus an italic caption line."""
    alt = plain(one_line(figure.caption)).replace("[", "\\[").replace("]", "\\]")
    name = Path(figure.path).name
    return f"![{alt}](figures/{name})\n\n*Figure {number}. {one_line(figure.caption)}*"


def _md_meta(meta: dict[str, str]) -> str:
    """Run metadata as a two-column pipe table."""
    if not meta:
        return "No run information recorded."
    rows = [[str(k), str(v)] for k, v in meta.items()]
    return _pipe_table(Grid(["key", "value"], rows, [False, False], len(rows), len(rows)))
