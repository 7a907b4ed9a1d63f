"""Write a report: ``report.md``, ``report.html``, ``tables/<name>.csv`` and ``figures/<name>.png``.

Everything is validated and rendered in memory before the first file is written, and every
file is written atomically (temp file in the same folder, then ``os.replace``), so a bad
report raises ``ValueError`` leaving an earlier report intact, and an interrupted write never
leaves a half-written file.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .document import Report, Table, all_tables, validate
from .html import render_html
from .markdown import render_markdown

__all__ = ["write_report"]


def write_report(report: Report, out_dir: str | Path) -> dict[str, Path]:
    """Write report.md, report.html (self-contained) and tables/*.csv; return {'md':..., 'html':..., 'tables': dir, 'figures': dir}."""
    out = Path(out_dir)
    sources = validate(report)
    pngs = {name: src.read_bytes() for name, src in sources.items()}
    files: dict[str, bytes] = {}
    for table in all_tables(report):
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


def _same_dir(a: Path, b: Path) -> bool:
    """Whether two folders are the same one (b need not exist)."""
    return a.resolve() == b.resolve()


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
