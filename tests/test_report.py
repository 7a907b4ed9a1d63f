"""Tests for gnsel.report: files written, CSV round trip, markdown, self-contained HTML, errors."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure as MplFigure

from gnsel.report import (
    Figure,
    Finding,
    Report,
    Section,
    Table,
    format_value,
    inline_html,
    render_check,
    write_report,
)

TEXT_LINK = "https://example.org/paper?a=1&b=2"


def _png(path: Path, power: int) -> Path:
    """A small real PNG made with matplotlib (Agg canvas, no pyplot state)."""
    fig = MplFigure(figsize=(3, 2), dpi=60)
    fig.add_subplot().plot(np.arange(10) ** power)
    fig.savefig(path, format="png")
    return path


@pytest.fixture
def pngs(tmp_path: Path) -> list[Path]:
    src = tmp_path / "src"
    src.mkdir()
    return [_png(src / "epochs.png", 1), _png(src / "search.png", 2)]


def _tables() -> list[Table]:
    """Three tables: one with NaN, one long with max_rows, one with an index."""
    corr = pd.DataFrame(
        {
            "measure": ["gn_full", "traj_gn", "random"],
            "kendall": [-0.1171234, 0.2414, float("nan")],
            "models": [64, 64, 21],
        }
    )
    long = pd.DataFrame({"step": np.arange(40), "loss": np.linspace(2.0, 0.1, 40)})
    idx = pd.DataFrame(
        {"best_acc": [0.91234, 0.88], "trials": [30, 30]},
        index=pd.Index(["gn", "val_loss"], name="objective"),
    )
    return [
        Table("correlation", corr, f"Kendall *tau* of `gn_full` vs **gap**, see [paper]({TEXT_LINK})."),
        Table("trajectory", long, "Loss per step <script>alert(1)</script>.", digits=2, max_rows=5),
        Table("search", idx, "Best accuracy per objective.", index=True),
    ]


def _report(pngs: list[Path], tables: list[Table] | None = None) -> Report:
    """A two-section report over the given PNGs."""
    t = _tables() if tables is None else tables
    return Report(
        title="Does GN select models?",
        question="Does the gradient norm rank models by their generalization gap?",
        verdict=[
            Finding("GN at the end of training does not rank by gap: tau -0.12 [-0.30, 0.05].", "does not help"),
            Finding("Trajectory GN does: tau +0.24 [0.08, 0.39].", "helps"),
        ],
        sections=[
            Section(
                key="correlation",
                title="Correlation",
                intro="First paragraph.\n\nSecond *paragraph*.",
                findings=[Finding("Depends on the phase of training.", "mixed")],
                tables=t[:2],
                figures=[Figure(pngs[0], "Kendall tau by epoch")],
                notes=["One seed per configuration.", "A note with <script>x</script>."],
            ),
            Section(
                key="search",
                title="Search",
                tables=t[2:],
                figures=[Figure(pngs[1], "Best accuracy **so far**")],
            ),
        ],
        meta={"preset": "quick", "torch": "2.14.1", "seconds": "12.5"},
    )


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder, by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_paths_returned_and_csvs_round_trip(tmp_path: Path, pngs: list[Path]) -> None:
    out = tmp_path / "out"
    paths = write_report(_report(pngs), out)
    assert paths == {
        "md": out / "report.md",
        "html": out / "report.html",
        "tables": out / "tables",
        "figures": out / "figures",
    }
    for table in _tables():
        csv = out / "tables" / f"{table.name}.csv"
        assert csv.is_file()
        back = pd.read_csv(csv, index_col=0 if table.index else None)
        pd.testing.assert_frame_equal(back, table.frame, check_exact=False, rtol=1e-12)
    assert not list(out.rglob("*.tmp"))


def test_markdown_has_captions_figures_and_meta(tmp_path: Path, pngs: list[Path]) -> None:
    out = tmp_path / "out"
    write_report(_report(pngs), out)
    md = (out / "report.md").read_text()
    for table in _tables():
        assert table.caption in md
    assert "![Kendall tau by epoch](figures/epochs.png)" in md
    assert "![Best accuracy so far](figures/search.png)" in md
    assert "*Figure 2. Best accuracy **so far***" in md
    for png in pngs:
        assert (out / "figures" / png.name).read_bytes() == png.read_bytes()
    assert "## About this run" in md
    assert "| preset | quick |" in md
    assert "- **[helps]** Trajectory GN does: tau +0.24 [0.08, 0.39]." in md


def test_number_formatting_and_max_rows(tmp_path: Path, pngs: list[Path]) -> None:
    out = tmp_path / "out"
    write_report(_report(pngs), out)
    md = (out / "report.md").read_text()
    assert "| measure | kendall | models |\n|---|---:|---:|" in md
    assert "| gn_full | -0.117 | 64 |" in md
    assert "| random | - | 21 |" in md
    assert "| objective | best_acc | trials |" in md
    assert "| gn | 0.912 | 30 |" in md
    assert "| 4 | 1.81 |" in md
    assert "| 5 |" not in md
    note = "(first 5 of 40 rows; all in tables/trajectory.csv)"
    assert note in md
    page = (out / "report.html").read_text()
    assert note in page
    assert '<td class="num">-</td>' in page
    assert '<td class="num">-0.117</td>' in page
    assert format_value(np.float32(1.23456), 2) == "1.23"
    assert format_value(np.int64(7)) == "7"
    assert format_value(None) == format_value(pd.NA) == "-"
    assert format_value("abc") == "abc"


def test_html_is_self_contained(tmp_path: Path, pngs: list[Path]) -> None:
    out = tmp_path / "out"
    write_report(_report(pngs), out)
    page = (out / "report.html").read_text()
    data = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)">', page)
    assert page.count("data:image/png;base64,") == len(data) == len(pngs)
    assert [base64.b64decode(d) for d, _ in data] == [p.read_bytes() for p in pngs]
    assert [alt for _, alt in data] == ["Kendall tau by epoch", "Best accuracy so far"]
    assert page.count("<figcaption>") >= len(pngs)
    assert "<style>" in page
    lowered = page.lower()
    for bad in ("<script", "<link", "@import", "url(", 'src="http', "src='http", "<iframe"):
        assert bad not in lowered, bad
    # the only absolute links are those written in the text
    assert re.findall(r'href="(http[^"]*)"', page) == ["https://example.org/paper?a=1&amp;b=2"]
    for key in ("correlation", "search", "about-this-run"):
        assert f'<a href="#{key}">' in page
        assert f'<section id="{key}">' in page
    assert '<section class="verdict">' in page
    assert '<span class="tag tag-does-not-help">does not help</span>' in page
    assert '<span class="tag tag-helps">helps</span>' in page
    assert '<span class="tag tag-mixed">mixed</span>' in page


def test_inline_markup_and_escaping(tmp_path: Path, pngs: list[Path]) -> None:
    got = inline_html("a `x<y` **b** *c* [d](https://e.org/?q=1&r=2) <script>z</script>")
    assert got == (
        "a <code>x&lt;y</code> <strong>b</strong> <em>c</em> "
        '<a href="https://e.org/?q=1&amp;r=2">d</a> &lt;script&gt;z&lt;/script&gt;'
    )
    assert inline_html("`**not bold**`") == "<code>**not bold**</code>"
    assert inline_html("2*3*4 and a * b") == "2*3*4 and a * b"
    assert inline_html("[x](javascript:alert(1))") == "[x](javascript:alert(1))"
    assert inline_html('[x](a"b)') == "<a href=\"a&quot;b\">x</a>"
    out = tmp_path / "out"
    write_report(_report(pngs), out)
    page = (out / "report.html").read_text()
    assert "Kendall <em>tau</em> of <code>gn_full</code> vs <strong>gap</strong>" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<li>A note with &lt;script&gt;x&lt;/script&gt;.</li>" in page
    assert "<p>Second <em>paragraph</em>.</p>" in page
    md = (out / "report.md").read_text()
    assert "Second *paragraph*." in md


def _duplicate_table(report: Report, pngs: list[Path]) -> None:
    report.sections[1].tables.append(Table("correlation", pd.DataFrame({"a": [1]}), "dup"))


def _missing_figure(report: Report, pngs: list[Path]) -> None:
    report.sections[1].figures.append(Figure(pngs[0].parent / "nope.png", "missing"))


def _not_png(report: Report, pngs: list[Path]) -> None:
    fake = pngs[0].parent / "fake.png"
    fake.write_text("not a png")
    report.sections[1].figures.append(Figure(fake, "fake"))


def _bad_verdict(report: Report, pngs: list[Path]) -> None:
    report.sections[0].findings.append(Finding("x", "maybe"))


def _same_name_figures(report: Report, pngs: list[Path]) -> None:
    other = pngs[0].parent / "other"
    other.mkdir()
    report.sections[1].figures.append(Figure(_png(other / pngs[0].name, 3), "clash"))


@pytest.mark.parametrize(
    ("spoil", "match"),
    [
        (_duplicate_table, "correlation"),
        (_missing_figure, "nope.png"),
        (_not_png, "fake.png"),
        (_bad_verdict, "maybe"),
        (_same_name_figures, "epochs.png"),
    ],
)
def test_errors_write_nothing(tmp_path: Path, pngs: list[Path], spoil, match: str) -> None:
    out = tmp_path / "out"
    write_report(_report(pngs, _tables()[:1]), out)
    before = _snapshot(out)
    report = _report(pngs)
    spoil(report, pngs)
    with pytest.raises(ValueError, match=match):
        write_report(report, out)
    assert _snapshot(out) == before
    fresh = tmp_path / "fresh"
    with pytest.raises(ValueError, match=match):
        write_report(report, fresh)
    assert not fresh.exists()


def test_figure_already_in_figures_folder(tmp_path: Path, pngs: list[Path]) -> None:
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    inside = _png(out / "figures" / "inside.png", 1)
    report = _report(pngs)
    report.sections[0].figures.append(Figure(inside, "Already there"))
    report.sections[1].figures.append(Figure(pngs[0], "Same source twice"))
    write_report(report, out)
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["epochs.png", "inside.png", "search.png"]
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4
    assert "![Already there](figures/inside.png)" in (out / "report.md").read_text()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary on PATH")
def test_report_renders_in_chromium(tmp_path: Path, pngs: list[Path]) -> None:
    out = tmp_path / "out"
    paths = write_report(_report(pngs), out)
    assert "<script" not in paths["html"].read_text().lower()
    shot = tmp_path / "shot.png"
    status = render_check(paths["html"], screenshot=shot)
    assert status == [True] * len(pngs)
    assert shot.is_file()
    assert shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # negative control: a corrupt image must be reported as not decoded
    broken = tmp_path / "broken.html"
    page = paths["html"].read_text()
    broken.write_text(re.sub(r"base64,[A-Za-z0-9+/=]+", "base64,iVBORw0KGgoAAAA", page, count=1))
    assert render_check(broken) == [False] + [True] * (len(pngs) - 1)


def test_render_check_without_chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="no chromium binary"):
        render_check(tmp_path / "report.html")
