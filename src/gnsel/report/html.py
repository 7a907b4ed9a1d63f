"""The HTML renderer: a whole :class:`~.document.Report` as one self-contained page.

No external resources: the style sheet is inline and figures are ``data:`` URIs of their PNG bytes.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterator
from itertools import count
from pathlib import Path

from .document import ABOUT_ID, Figure, Finding, Report, Section, Table
from .format import Grid, format_grid, inline_html, one_line, paragraphs, plain, truncation_note

__all__ = ["render_html"]

_CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --zebra: #f6f8fa;
  --accent: #0969da; --box: #eef6ff; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff; line-height: 1.55;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  "Noto Sans", sans-serif; font-size: 16px; }
main { max-width: 1000px; margin: 0 auto; padding: 2rem 1.25rem 4rem; }
h1 { font-size: 1.9rem; line-height: 1.25; margin: 0 0 .75rem; }
h2 { font-size: 1.4rem; margin: 2.5rem 0 .75rem; padding-bottom: .3rem;
  border-bottom: 1px solid var(--line); }
a { color: var(--accent); }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: .88em; background: var(--zebra); padding: .1em .3em; border-radius: 4px; }
.question { font-size: 1.08rem; color: var(--muted); }
.verdict { background: var(--box); border: 1px solid #b6d4fe; border-left: 5px solid var(--accent);
  border-radius: 6px; padding: .5rem 1.25rem 1rem; margin: 1.5rem 0; }
.verdict h2 { border: 0; margin: .5rem 0; font-size: 1.2rem; }
ul.findings { list-style: none; padding-left: 0; }
ul.findings li { margin: .45rem 0; }
.tag { display: inline-block; font-size: .72rem; font-weight: 600; text-transform: uppercase;
  letter-spacing: .03em; padding: .1rem .45rem; border-radius: 999px; margin-right: .4rem;
  vertical-align: .1em; color: #fff; white-space: nowrap; }
.tag-helps { background: #1a7f37; }
.tag-does-not-help { background: #cf222e; }
.tag-mixed { background: #bf8700; }
.tag-inconclusive { background: #8250df; }
.tag-confirmed { background: #0969da; }
.tag-refuted { background: #953800; }
.tag-info { background: #6e7781; }
nav.toc { font-size: .95rem; }
nav.toc ol { margin: .25rem 0; }
figure { margin: 1.5rem 0; }
figcaption { color: var(--muted); font-size: .92rem; margin: .4rem 0; }
figure.plot img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figure.plot figcaption { text-align: center; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: .9rem; margin: .25rem 0; }
th, td { padding: .3rem .65rem; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: top; }
th { background: #eaeef2; font-weight: 600; }
tbody tr:nth-child(even) { background: var(--zebra); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.more { color: var(--muted); font-size: .85rem; }
a.csv { font-size: .8rem; margin-left: .4rem; }
.notes { color: var(--muted); font-size: .93rem; }
table.meta td:first-child { font-weight: 600; }
"""


def render_html(report: Report, pngs: dict[str, bytes]) -> str:
    """The whole report as one self-contained HTML page (figures from pngs: file name -> bytes)."""
    tables, figures = count(1), count(1)
    body = [f"<h1>{inline_html(report.title)}</h1>"]
    body += [f'<p class="question">{inline_html(p)}</p>' for p in paragraphs(report.question)]
    if report.verdict:
        body.append(
            '<section class="verdict"><h2>Verdict</h2>'
            f"{_html_findings(report.verdict)}</section>"
        )
    body.append(_html_toc(report))
    body += [_html_section(s, pngs, tables, figures) for s in report.sections]
    body.append(
        f'<section id="{ABOUT_ID}"><h2>About this run</h2>{_html_meta(report.meta)}</section>'
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(plain(report.title))}</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )


def _html_findings(findings: list[Finding]) -> str:
    """Findings as a list, each with a coloured verdict tag."""
    items = "".join(
        f"<li>{_tag(f.verdict)}{inline_html(f.text)}</li>" for f in findings
    )
    return f'<ul class="findings">{items}</ul>'


def _tag(verdict: str) -> str:
    """A small coloured pill naming the verdict."""
    slug = verdict.replace(" ", "-")
    return f'<span class="tag tag-{slug}">{html.escape(verdict)}</span>'


def _html_toc(report: Report) -> str:
    """Table of contents linking to every section and to the run metadata."""
    items = [
        f'<li><a href="#{html.escape(s.key)}">{inline_html(s.title)}</a></li>'
        for s in report.sections
    ]
    items.append(f'<li><a href="#{ABOUT_ID}">About this run</a></li>')
    return f'<nav class="toc"><h2>Contents</h2><ol>{"".join(items)}</ol></nav>'


def _html_section(
    section: Section, pngs: dict[str, bytes], tables: Iterator[int], figures: Iterator[int]
) -> str:
    """One section with its anchor id."""
    parts = [f"<h2>{inline_html(section.title)}</h2>"]
    parts += [f"<p>{inline_html(p)}</p>" for p in paragraphs(section.intro)]
    if section.findings:
        parts.append(_html_findings(section.findings))
    parts += [_html_table(t, next(tables)) for t in section.tables]
    parts += [_html_figure(f, pngs, next(figures)) for f in section.figures]
    if section.notes:
        notes = "".join(f"<li>{inline_html(n)}</li>" for n in section.notes)
        parts.append(f'<div class="notes"><strong>Notes</strong><ul>{notes}</ul></div>')
    return f'<section id="{html.escape(section.key)}">\n' + "\n".join(parts) + "\n</section>"


def _html_table(table: Table, number: int) -> str:
    """A table in a <figure> with caption, CSV link and truncation note."""
    grid = format_grid(table)
    csv = html.escape(f"tables/{table.name}.csv")
    caption = (
        f"<figcaption><strong>Table {number}.</strong> {inline_html(table.caption)}"
        f'<a class="csv" href="{csv}">csv</a></figcaption>'
    )
    note = truncation_note(table, grid)
    more = f'<p class="more">{html.escape(note)}</p>' if note else ""
    table_id = html.escape(f"table-{table.name}")
    return (
        f'<figure class="table" id="{table_id}">{caption}'
        f'<div class="scroll">{_html_grid(grid)}</div>{more}</figure>'
    )


def _html_grid(grid: Grid, css_class: str = "") -> str:
    """A formatted grid as an HTML table, numeric cells right-aligned."""
    def cell(tag: str, text: str, numeric: bool) -> str:
        attr = ' class="num"' if numeric else ""
        return f"<{tag}{attr}>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", h, n) for h, n in zip(grid.header, grid.numeric))
    rows = "".join(
        "<tr>" + "".join(cell("td", c, n) for c, n in zip(row, grid.numeric)) + "</tr>"
        for row in grid.rows
    )
    cls = f' class="{css_class}"' if css_class else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _html_figure(figure: Figure, pngs: dict[str, bytes], number: int) -> str:
    """A figure with the PNG inlined as a data: URI, alt text and caption."""
    data = base64.b64encode(pngs[Path(figure.path).name]).decode("ascii")
    alt = html.escape(plain(one_line(figure.caption)))
    return (
        f'<figure class="plot"><img src="data:image/png;base64,{data}" alt="{alt}">'
        f"<figcaption><strong>Figure {number}.</strong> {inline_html(figure.caption)}"
        "</figcaption></figure>"
    )


def _html_meta(meta: dict[str, str]) -> str:
    """Run metadata as a two-column table."""
    if not meta:
        return "<p>No run information recorded.</p>"
    rows = [[str(k), str(v)] for k, v in meta.items()]
    return _html_grid(Grid(["key", "value"], rows, [False, False], len(rows), len(rows)), "meta")
