"""A study part is a plug-in: a toy part registered from this module runs through ``run_study`` into the
report (its section, table, finding and sentence of the answer), its settings are checked like the built-in
parts', and once unregistered the study no longer knows it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from study_tiny import TINY

from gnsel.progress import Recorder
from gnsel.report import Finding, Section, Table
from gnsel.study import PARTS, StudyContext, StudyPart, load_study, parse_parts, run_study, study_part
from gnsel.study.part import check_positive

pytestmark = pytest.mark.usefixtures("isolated_data_root", "one_torch_thread")

TITLE = "Toy part: the squares of the first numbers"


class Toy(StudyPart):
    """Squares ``size`` numbers; says so in a finding that takes a side and in a sentence of the answer."""

    name = "toy"
    defaults = {"size": 3, "offset": 0}

    def validate(self, settings: dict[str, Any]) -> None:
        check_positive(settings["size"], "toy.size")
        if not isinstance(settings["offset"], int):
            raise ValueError(f"toy.offset must be an integer, got {settings['offset']!r}")

    def run(self, ctx: StudyContext) -> Section:
        size, offset = ctx.spec.parts["toy"]["size"], ctx.spec.parts["toy"]["offset"]
        ctx.progress.log(f"  toy: squaring {size} numbers")
        rows = []
        with ctx.progress.task("toy squares", total=size) as bar:
            for i in range(offset, offset + size):
                rows.append({"number": i, "square": i * i})
                bar.advance()
        frame = pd.DataFrame(rows)
        return Section(key="toy", title=TITLE, intro="A part registered by a test.",
                       findings=[Finding(f"The toy part squared {size} numbers; the largest square is "
                                         f"{int(frame['square'].max())}.", "helps")],
                       tables=[Table("toy_squares", frame, "Toy squares, one row per number.")])  # fmt: skip

    def answer(self, section: Section) -> list[tuple[str, int | None]]:
        return [(f"the toy part squared {len(section.tables[0].frame)} numbers", None)]


@contextlib.contextmanager
def registered(cls: type[StudyPart]) -> Iterator[StudyPart]:
    """The part registered for the duration, unregistered after (even if the test fails)."""
    study_part(cls)
    try:
        yield PARTS.get(cls.name)
    finally:
        PARTS.unregister(cls.name)


def test_a_registered_part_runs_into_the_report_and_is_gone_after(tmp_path):
    with registered(Toy):
        assert list(PARTS)[-1] == "toy" and parse_parts("toy") == ["toy"]
        spec = {**TINY, "toy": {"size": 4}}
        rec = Recorder()
        result = run_study(spec, tmp_path, parts="toy", workers=1, progress=rec)
        assert result.computed == ["toy"] and not result.reused
        section = result.sections["toy"]
        md, html = result.files["md"].read_text(), result.files["html"].read_text()
        assert TITLE in md and TITLE in html and 'id="toy"' in html
        back = pd.read_csv(result.files["tables"] / "toy_squares.csv")
        assert back.to_dict("list") == {"number": [0, 1, 2, 3], "square": [0, 1, 4, 9]}
        assert "Toy squares, one row per number." in md
        finding = "The toy part squared 4 numbers; the largest square is 9."
        assert section.findings[0].text == finding and finding in md and finding in html
        verdict = md.split("## Verdict", 1)[1]
        assert "In short, on this run: the toy part squared 4 numbers." in verdict
        assert verdict.count(finding) >= 1  # it takes a side, so it goes to the verdict too
        assert "not run yet (gnsel study --part cost)" in md and "toy part" in md
        assert "toy: running" in rec.lines and "  toy: squaring 4 numbers" in rec.lines
        assert ("start", "toy squares", 0, 4) in rec.events and ("end", "toy squares", 4, 4) in rec.events
        again = run_study(spec, tmp_path, parts="toy", workers=1)
        assert again.reused == ["toy"] and not again.computed
    assert "toy" not in PARTS and list(PARTS) == ["correlation", "cost", "hpo", "architectures", "claims"]
    with pytest.raises(ValueError, match="unknown part"):
        parse_parts("toy")
    with pytest.raises(ValueError, match="'toy'"):
        load_study({**TINY, "toy": {"size": 4}})


def test_a_registered_part_runs_beside_a_real_one_in_study_order(tmp_path):
    with registered(Toy):
        result = run_study(TINY, tmp_path, parts="toy,cost", workers=1)
        assert result.computed == ["cost", "toy"]
        md = result.files["md"].read_text()
        assert md.index(result.sections["cost"].title) < md.index(TITLE)
        summary = md.split("## Verdict", 1)[1].lstrip().splitlines()[0]
        assert "a training epoch; the toy part squared 3 numbers." in summary  # cost's sentence, then the toy's
        assert (result.files["tables"] / "toy_squares.csv").exists()
        assert (result.files["tables"] / "cost_summary.csv").exists()


@pytest.mark.parametrize(
    "settings, needle",
    [({"size": 0}, "toy.size"), ({"size": "3"}, "toy.size"), ({"offset": 0.5}, "toy.offset"), ({"sise": 3}, "sise")],
)
def test_a_registered_parts_bad_settings_are_refused_naming_the_key(settings, needle):
    with registered(Toy):
        with pytest.raises(ValueError) as err:
            load_study({**TINY, "toy": settings})
        assert needle in str(err.value)
        assert load_study({**TINY, "toy": {"size": 2}}).parts["toy"] == {"size": 2, "offset": 0}
    assert "toy" not in PARTS


def test_a_part_name_is_registered_once():
    with registered(Toy):
        with pytest.raises(ValueError, match="already registered"):
            study_part(type("Toy2", (Toy,), {}))
    assert "toy" not in PARTS
