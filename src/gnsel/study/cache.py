"""A finished part of a study, saved as data (CSV tables, PNG figures, JSON text) and read back on a rerun."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from ..report import Figure, Finding, Section, Table

SECTION_FILE = "section.json"


def save_section(section: Section, folder: Path, key: str, seconds: float) -> Path:
    """Write the section's tables as CSV and its text as JSON (atomically, last), tagged with the settings key."""
    tables = folder / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    spec = {
        "key": key,
        "seconds": seconds,
        "section": {
            "key": section.key, "title": section.title, "intro": section.intro, "notes": list(section.notes),
            "findings": [asdict(f) for f in section.findings],
            "figures": [{"path": str(Path(f.path).resolve()), "caption": f.caption} for f in section.figures],
            "tables": [{"name": t.name, "caption": t.caption, "index": t.index, "digits": t.digits,
                        "max_rows": t.max_rows} for t in section.tables],
        },
    }  # fmt: skip
    for t in section.tables:
        t.frame.to_csv(tables / f"{t.name}.csv", index=t.index)
    path = folder / SECTION_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(spec, indent=2, default=str))
    os.replace(tmp, path)
    return path


def load_section(folder: Path, key: str) -> tuple[Section, float] | None:
    """The saved section and its compute seconds if it was made with the same settings and all its files exist."""
    path = folder / SECTION_FILE
    if not path.exists():
        return None
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if spec.get("key") != key:
        return None
    s = spec["section"]
    figures = [Figure(Path(f["path"]), f["caption"]) for f in s["figures"]]
    csvs = [folder / "tables" / f"{t['name']}.csv" for t in s["tables"]]
    if not all(f.path.exists() for f in figures) or not all(p.exists() for p in csvs):
        return None
    tables = [
        Table(t["name"], pd.read_csv(p, index_col=0 if t["index"] else None), t["caption"], index=t["index"],
              digits=t["digits"], max_rows=t["max_rows"])
        for t, p in zip(s["tables"], csvs)
    ]  # fmt: skip
    section = Section(key=s["key"], title=s["title"], intro=s["intro"], notes=list(s["notes"]),
                      findings=[Finding(**f) for f in s["findings"]], figures=figures, tables=tables)  # fmt: skip
    return section, float(spec.get("seconds", 0.0))
