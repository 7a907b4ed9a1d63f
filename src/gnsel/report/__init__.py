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

The modules, one job each: :mod:`.document` (the data and its validation), :mod:`.format`
(inline markup, cell values), :mod:`.markdown` and :mod:`.html` (the renderers),
:mod:`.write` (the files, atomically) and :mod:`.browser` (the Chromium check).
"""

from __future__ import annotations

from .browser import _chromium_binary, render_check
from .document import VERDICTS, Figure, Finding, Report, Section, Table
from .format import format_value, inline_html
from .html import render_html
from .markdown import render_markdown
from .write import write_report

__all__ = [
    "VERDICTS", "Figure", "Finding", "Report", "Section", "Table", "inline_html", "render_check",
    "write_report",
]  # fmt: skip

# Importable from here as before the split, though not in __all__: format_value, render_markdown,
# render_html, and _chromium_binary (the study test skips its Chromium check with it).
