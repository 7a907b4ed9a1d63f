"""Render a study's results as ``report.md``, a self-contained ``report.html`` and CSV tables.

A :class:`Report` is plain data: a question, a headline verdict (a list of :class:`Finding`)
and :class:`Section` s holding findings, :class:`Table` s (pandas frames), :class:`Figure` s
(existing PNG files) and notes. :func:`write_report` writes, under ``out_dir``::

    report.md        markdown; figures linked as figures/<name>.png
    report.html      one file, no external resources: inline <style>, PNGs as data: URIs
    tables/<name>.csv  every table at full precision
    figures/<name>.png copies of the figure files

Everything is validated and rendered in memory before the first file is written, and every
file is written atomically (temp file in the same folder, then ``os.replace``), so a bad
report raises ``ValueError`` leaving an earlier report intact, and an interrupted write never
leaves a half-written file.

Inline text (captions, intro, findings, notes) may use `` `code` ``, ``**bold**``,
``*italic*`` and ``[text](url)``; the markdown keeps it as is, the HTML converts it after
escaping everything else.

:func:`render_check` opens a report in headless Chromium and says whether every image
decoded, for a documented end-to-end check of the HTML.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count
from numbers import Integral, Real
from pathlib import Path

import pandas as pd

__all__ = [
    "VERDICTS",
    "Figure",
    "Finding",
    "Report",
    "Section",
    "Table",
    "inline_html",
    "render_check",
    "write_report",
]

VERDICTS = ("helps", "does not help", "mixed", "info")

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TABLE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_ABOUT_ID = "about-this-run"
_NA = "-"


@dataclass
class Table:
    """A frame shown in the report and written in full to ``tables/<name>.csv``."""

    name: str
    frame: pd.DataFrame
    caption: str
    index: bool = False
    digits: int = 3
    max_rows: int | None = None


@dataclass
class Figure:
    """An existing PNG file with its caption; copied to ``figures/`` and inlined in HTML."""

    path: Path
    caption: str


@dataclass
class Finding:
    """One or two sentences with numbers, tagged with a verdict from :data:`VERDICTS`."""

    text: str
    verdict: str = "info"


@dataclass
class Section:
    """A titled part of the report; ``key`` is its HTML anchor."""

    key: str
    title: str
    intro: str = ""
    findings: list[Finding] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    """A whole report: question, headline verdict, sections and run metadata."""

    title: str
    question: str
    verdict: list[Finding]
    sections: list[Section]
    meta: dict[str, str]


# --------------------------------------------------------------------------- public API


def write_report(report: Report, out_dir: str | Path) -> dict[str, Path]:
    """Write report.md, report.html (self-contained) and tables/*.csv; return {'md':..., 'html':..., 'tables': dir, 'figures': dir}."""
    out = Path(out_dir)
    sources = _validate(report)
    pngs = {name: src.read_bytes() for name, src in sources.items()}
    files: dict[str, bytes] = {}
    for table in _tables(report):
        files[f"tables/{table.name}.csv"] = _csv_bytes(table)
    figures_dir = out / "figures"
    for name, src in sources.items():
        if not _same_dir(src.parent, figures_dir):
            files[f"figures/{name}"] = pngs[name]
    files["report.md"] = render_markdown(report).encode("utf-8")
    files["report.html"] = render_html(report, pngs).encode("utf-8")
    _write_files(out, files)
    figures_dir.mkdir(parents=True, exist_ok=True)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    return {
        "md": out / "report.md",
        "html": out / "report.html",
        "tables": out / "tables",
        "figures": figures_dir,
    }


def render_check(html_path: str | Path, screenshot: str | Path | None = None) -> list[bool]:
    """Load a report in headless Chromium and return, per <img>, whether it decoded (for an end-to-end check)."""
    binary = _chromium_binary()
    page = Path(html_path).resolve()
    with tempfile.TemporaryDirectory(prefix="gnsel-render-") as tmp:
        probe = Path(tmp) / f"probe-{page.name}"
        probe.write_text(_inject_probe(page.read_text(encoding="utf-8")), encoding="utf-8")
        dom = _run_chromium(binary, tmp, ["--dump-dom", probe.as_uri()])
        status = _parse_probe_title(dom)
        if screenshot is not None:
            shot = Path(screenshot).resolve()
            shot.parent.mkdir(parents=True, exist_ok=True)
            shot.unlink(missing_ok=True)
            args = [f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri()]
            _run_chromium(binary, tmp, args)
            if not shot.is_file():
                raise RuntimeError(f"chromium did not write the screenshot {shot}")
    return status


# --------------------------------------------------------------------------- validation


def _sections_findings(report: Report) -> Iterator[Finding]:
    """Every finding in the report, verdict box first."""
    yield from report.verdict
    for section in report.sections:
        yield from section.findings


def _tables(report: Report) -> Iterator[Table]:
    """Every table in report order."""
    for section in report.sections:
        yield from section.tables


def _figures(report: Report) -> Iterator[Figure]:
    """Every figure in report order."""
    for section in report.sections:
        yield from section.figures


def _validate(report: Report) -> dict[str, Path]:
    """Check the whole report before writing anything; return figure file name -> resolved source."""
    _check_verdicts(report)
    _check_section_keys(report)
    _check_tables(report)
    return _check_figures(report)


def _check_verdicts(report: Report) -> None:
    """Every finding's verdict must be one of VERDICTS."""
    for finding in _sections_findings(report):
        if finding.verdict not in VERDICTS:
            raise ValueError(
                f"bad verdict {finding.verdict!r} for finding {finding.text[:60]!r}; "
                f"expected one of {VERDICTS}"
            )


def _check_section_keys(report: Report) -> None:
    """Section keys are HTML ids: non-empty, no whitespace, unique, not the reserved one."""
    seen: set[str] = set()
    for section in report.sections:
        key = section.key
        if not key or re.search(r"\s", key):
            raise ValueError(f"section key {key!r} must be non-empty without whitespace")
        if key in seen or key == _ABOUT_ID:
            raise ValueError(f"duplicate or reserved section key {key!r}")
        seen.add(key)


def _check_tables(report: Report) -> None:
    """Table names are unique, safe file stems; frames are DataFrames; digits/max_rows sane."""
    seen: set[str] = set()
    for table in _tables(report):
        if not _TABLE_NAME_RE.match(table.name or ""):
            raise ValueError(f"table name {table.name!r} is not a plain file stem [A-Za-z0-9_.-]")
        if table.name in seen:
            raise ValueError(f"duplicate table name {table.name!r}")
        seen.add(table.name)
        if not isinstance(table.frame, pd.DataFrame):
            raise TypeError(f"table {table.name!r}: frame is not a pandas DataFrame")
        if table.digits < 0 or (table.max_rows is not None and table.max_rows < 1):
            raise ValueError(f"table {table.name!r}: digits must be >= 0 and max_rows >= 1")


def _check_figures(report: Report) -> dict[str, Path]:
    """Figures are existing PNGs whose file names identify them; return name -> source."""
    sources: dict[str, Path] = {}
    for figure in _figures(report):
        path = Path(figure.path)
        if not path.is_file():
            raise ValueError(f"figure {str(path)!r} does not exist or is not a file")
        if path.suffix.lower() != ".png" or not _is_png(path):
            raise ValueError(f"figure {str(path)!r} is not a PNG file")
        src = path.resolve()
        other = sources.setdefault(path.name, src)
        if other != src:
            raise ValueError(f"two different figures named {path.name!r}: {other} and {src}")
    return sources


def _is_png(path: Path) -> bool:
    """Whether the file starts with the PNG signature."""
    with path.open("rb") as fh:
        return fh.read(len(_PNG_MAGIC)) == _PNG_MAGIC


def _same_dir(a: Path, b: Path) -> bool:
    """Whether two folders are the same one (b need not exist)."""
    return a.resolve() == b.resolve()


# --------------------------------------------------------------------------- writing


def _write_files(out: Path, files: dict[str, bytes]) -> None:
    """Write each relative path -> bytes under out, atomically, in the given order."""
    for rel, data in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, data)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, then os.replace it over path (umask-respecting mode)."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _csv_bytes(table: Table) -> bytes:
    """The table's full frame as CSV (index included when table.index)."""
    return table.frame.to_csv(index=table.index).encode("utf-8")


# --------------------------------------------------------------------------- inline text

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


def _plain(text: str) -> str:
    """Inline text without its markup, for alt attributes and titles."""
    text = _CODE_RE.sub(r"\1", str(text))
    text = _LINK_RE.sub(r"\1", text)
    text = _BOLD_RE.sub(r"\1", text)
    return _ITALIC_RE.sub(r"\1", text)


def _paragraphs(text: str) -> list[str]:
    """Split text into paragraphs at blank lines, dropping empty ones."""
    return [p.strip() for p in re.split(r"\n\s*\n", text or "") if p.strip()]


# --------------------------------------------------------------------------- cell formatting


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
class _Grid:
    """A table ready to print: header, string cells, which columns are numeric, truncation."""

    header: list[str]
    rows: list[list[str]]
    numeric: list[bool]
    shown: int
    total: int


def _grid(table: Table) -> _Grid:
    """Format a Table's frame (index as first columns if asked; at most max_rows rows)."""
    frame = table.frame.reset_index(allow_duplicates=True) if table.index else table.frame
    total = len(frame)
    if table.max_rows is not None:
        frame = frame.iloc[: table.max_rows]
    columns = [frame.iloc[:, j] for j in range(frame.shape[1])]
    rows = [
        [format_value(col.iloc[i], table.digits) for col in columns] for i in range(len(frame))
    ]
    return _Grid(
        header=[_column_label(c) for c in frame.columns],
        rows=rows,
        numeric=[_is_numeric_column(col) for col in columns],
        shown=len(frame),
        total=total,
    )


def _truncation_note(table: Table, grid: _Grid) -> str | None:
    """The '(first N of M rows; ...)' note when rows were cut, else None."""
    if grid.shown >= grid.total:
        return None
    return f"(first {grid.shown} of {grid.total} rows; all in tables/{table.name}.csv)"


# --------------------------------------------------------------------------- markdown


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
    return "\n".join(f"- **[{f.verdict}]** {_one_line(f.text)}" for f in findings)


def _md_section(section: Section, tables: Iterator[int], figures: Iterator[int]) -> str:
    """One section: heading, intro, findings, tables, figures, notes."""
    parts = [f"## {section.title}", *_paragraphs(section.intro)]
    if section.findings:
        parts.append(_md_findings(section.findings))
    parts += [_md_table(t, next(tables)) for t in section.tables]
    parts += [_md_figure(f, next(figures)) for f in section.figures]
    if section.notes:
        parts.append("Notes:\n\n" + "\n".join(f"- {_one_line(n)}" for n in section.notes))
    return "\n\n".join(parts)


def _md_table(table: Table, number: int) -> str:
    """Caption line, pipe table and truncation note."""
    grid = _grid(table)
    parts = [f"**Table {number}.** {_one_line(table.caption)}", _pipe_table(grid)]
    note = _truncation_note(table, grid)
    if note:
        parts.append(note)
    return "\n\n".join(parts)


def _pipe_table(grid: _Grid) -> str:
    """A markdown pipe table, numeric columns right-aligned."""
    if not grid.header:
        return "*(empty table)*"
    lines = [_pipe_row(grid.header)]
    lines.append("|" + "|".join("---:" if n else "---" for n in grid.numeric) + "|")
    lines += [_pipe_row(row) for row in grid.rows]
    return "\n".join(lines)


def _pipe_row(cells: list[str]) -> str:
    """One pipe-table row, escaping '|' and flattening newlines."""
    return "| " + " | ".join(_one_line(c).replace("|", "\\|") for c in cells) + " |"


def _md_figure(figure: Figure, number: int) -> str:
    """Image link to figures/<name> plus an italic caption line."""
    alt = _plain(_one_line(figure.caption)).replace("[", "\\[").replace("]", "\\]")
    name = Path(figure.path).name
    return f"![{alt}](figures/{name})\n\n*Figure {number}. {_one_line(figure.caption)}*"


def _md_meta(meta: dict[str, str]) -> str:
    """Run metadata as a two-column pipe table."""
    if not meta:
        return "No run information recorded."
    rows = [[str(k), str(v)] for k, v in meta.items()]
    return _pipe_table(_Grid(["key", "value"], rows, [False, False], len(rows), len(rows)))


def _one_line(text: str) -> str:
    """Collapse whitespace runs (incl. newlines) to single spaces."""
    return " ".join(str(text).split())


# --------------------------------------------------------------------------- html

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
    body += [f'<p class="question">{inline_html(p)}</p>' for p in _paragraphs(report.question)]
    if report.verdict:
        body.append(
            '<section class="verdict"><h2>Verdict</h2>'
            f"{_html_findings(report.verdict)}</section>"
        )
    body.append(_html_toc(report))
    body += [_html_section(s, pngs, tables, figures) for s in report.sections]
    body.append(
        f'<section id="{_ABOUT_ID}"><h2>About this run</h2>{_html_meta(report.meta)}</section>'
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(_plain(report.title))}</title>\n"
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
    items.append(f'<li><a href="#{_ABOUT_ID}">About this run</a></li>')
    return f'<nav class="toc"><h2>Contents</h2><ol>{"".join(items)}</ol></nav>'


def _html_section(
    section: Section, pngs: dict[str, bytes], tables: Iterator[int], figures: Iterator[int]
) -> str:
    """One section with its anchor id."""
    parts = [f"<h2>{inline_html(section.title)}</h2>"]
    parts += [f"<p>{inline_html(p)}</p>" for p in _paragraphs(section.intro)]
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
    grid = _grid(table)
    csv = html.escape(f"tables/{table.name}.csv")
    caption = (
        f"<figcaption><strong>Table {number}.</strong> {inline_html(table.caption)}"
        f'<a class="csv" href="{csv}">csv</a></figcaption>'
    )
    note = _truncation_note(table, grid)
    more = f'<p class="more">{html.escape(note)}</p>' if note else ""
    table_id = html.escape(f"table-{table.name}")
    return (
        f'<figure class="table" id="{table_id}">{caption}'
        f'<div class="scroll">{_html_grid(grid)}</div>{more}</figure>'
    )


def _html_grid(grid: _Grid, css_class: str = "") -> str:
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
    alt = html.escape(_plain(_one_line(figure.caption)))
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
    return _html_grid(_Grid(["key", "value"], rows, [False, False], len(rows), len(rows)), "meta")


# --------------------------------------------------------------------------- chromium

_CHROMIUM_NAMES = ("chromium", "chromium-browser")
_CHROMIUM_TIMEOUT_S = 60
_PROBE = """<script>
window.addEventListener("load", function () {
  var ok = Array.prototype.map.call(document.images, function (img) {
    return img.complete && img.naturalWidth > 0;
  });
  document.title = JSON.stringify({count: document.images.length, ok: ok});
});
</script>
"""


def _chromium_binary() -> str:
    """Path of a chromium binary on PATH, or a clear RuntimeError."""
    for name in _CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        "no chromium binary found (looked for chromium, chromium-browser on PATH); "
        "on Debian/Ubuntu: apt-get install -y chromium"
    )


def _inject_probe(page: str) -> str:
    """The page with a script before </body> that reports image decode status in the title."""
    at = page.lower().rfind("</body>")
    if at < 0:
        return page + _PROBE
    return page[:at] + _PROBE + page[at:]


def _run_chromium(binary: str, profile_dir: str, args: list[str]) -> str:
    """Run headless chromium with a throwaway profile; return stdout or raise RuntimeError."""
    cmd = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile_dir}/profile",
        "--virtual-time-budget=5000", *args,
    ]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=_CHROMIUM_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"chromium timed out after {_CHROMIUM_TIMEOUT_S} s: {cmd}") from exc
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def _parse_probe_title(dom: str) -> list[bool]:
    """Per-image decode status from the <title> the probe script wrote."""
    match = re.search(r"<title>(.*?)</title>", dom, re.DOTALL | re.IGNORECASE)
    try:
        probe = json.loads(html.unescape(match.group(1)))
        ok = [bool(x) for x in probe["ok"]]
    except (AttributeError, ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(f"the probe did not report (page not loaded?): {dom[:300]!r}") from exc
    if probe.get("count") != len(ok):
        raise RuntimeError(f"probe count {probe.get('count')} != {len(ok)} statuses")
    return ok
