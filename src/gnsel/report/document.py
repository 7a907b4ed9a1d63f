"""A report as plain data, and the checks a whole document must pass before anything is written.

A :class:`Report` is a question, a headline verdict (a list of :class:`Finding`) and
:class:`Section` s holding findings, :class:`Table` s (pandas frames), :class:`Figure` s
(existing PNG files) and notes. :func:`validate` checks verdicts, section keys, table names and
figure files, and raises ``ValueError`` (``TypeError`` for a frame that is not a DataFrame).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = [
    "ABOUT_ID",
    "VERDICTS",
    "Figure",
    "Finding",
    "Report",
    "Section",
    "Table",
    "all_figures",
    "all_findings",
    "all_tables",
    "validate",
]

VERDICTS = ("helps", "does not help", "mixed", "inconclusive", "confirmed", "refuted", "info")
ABOUT_ID = "about-this-run"  # the HTML id of the run-metadata section (no section may take it)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TABLE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


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


def all_findings(report: Report) -> Iterator[Finding]:
    """Every finding in the report, verdict box first."""
    yield from report.verdict
    for section in report.sections:
        yield from section.findings


def all_tables(report: Report) -> Iterator[Table]:
    """Every table in report order."""
    for section in report.sections:
        yield from section.tables


def all_figures(report: Report) -> Iterator[Figure]:
    """Every figure in report order."""
    for section in report.sections:
        yield from section.figures


def validate(report: Report) -> dict[str, Path]:
    """Check the whole report before writing anything; return figure file name -> resolved source."""
    _check_verdicts(report)
    _check_section_keys(report)
    _check_tables(report)
    return _check_figures(report)


def _check_verdicts(report: Report) -> None:
    """Every finding's verdict must be one of VERDICTS."""
    for finding in all_findings(report):
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
        if key in seen or key == ABOUT_ID:
            raise ValueError(f"duplicate or reserved section key {key!r}")
        seen.add(key)


def _check_tables(report: Report) -> None:
    """Table names are unique, safe file stems; frames are DataFrames; digits/max_rows sane."""
    seen: set[str] = set()
    for table in all_tables(report):
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
    for figure in all_figures(report):
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
