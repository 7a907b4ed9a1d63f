"""Tests for the cost part of the study (gnsel.study.cost): tiny cases, CPU only, a few seconds."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
import torch
from study_tiny import TINY

from gnsel.progress import Recorder
from gnsel.report import Section, Table
from gnsel.study import load_study, run_study
from gnsel.study.cost import (
    FRAME_COLUMNS,
    METHODS,
    SUMMARY_COLUMNS,
    CostCase,
    cost_summary,
    measure_costs,
    plot_costs,
)
from gnsel.study.cost_claim import (
    CLAIM2_COLUMNS,
    ESTIMATE_KEYS,
    claim2_findings,
    claim2_table,
    paired_ratios,
    ratio_text,
)
from gnsel.study.cost_part import claim2_estimate
from gnsel.study.part import table_of

DATA = {"num_samples": 1000}  # small mnist1d: 720 training examples with the default validation split
N, NAIVE, REPEATS = 256, 16, 2
CASES = [
    CostCase("mlp (width 16)", "mlp", {"width": 16}, dataset_kwargs=DATA, batch_size=64, n_examples=N),
    CostCase("cnn1d (channels 4)", "cnn1d", {"channels": 4}, dataset_kwargs=DATA, batch_size=64, n_examples=N),
]


pytestmark = pytest.mark.usefixtures("isolated_data_root", "one_torch_thread")


@pytest.fixture(scope="module")
def measured():
    progress = Recorder()
    frame = measure_costs(CASES, device="cpu", repeats=REPEATS, naive_examples=NAIVE, progress=progress)
    return frame, progress.lines


@pytest.fixture(scope="module")
def summary(measured):
    return cost_summary(measured[0])


def test_frame_has_every_case_method_repeat(measured):
    frame, _ = measured
    assert list(frame.columns) == list(FRAME_COLUMNS)
    assert len(frame) == len(CASES) * len(METHODS) * REPEATS
    keys = set(zip(frame["case"], frame["method"], frame["repeat"]))
    assert keys == {(c.label, m, r) for c in CASES for m in METHODS for r in range(1, REPEATS + 1)}
    assert (frame["seconds"] > 0).all()
    assert (frame["n_examples"] == N).all() and (frame["naive_examples"] == NAIVE).all()
    assert (frame["device"] == "cpu").all() and (frame["params"] > 0).all()
    assert (frame.groupby("case")["params"].nunique() == 1).all()


def test_engine_matches_naive_loop(measured):
    frame, _ = measured
    assert (frame["max_rel_diff"] < 1e-4).all()


def test_progress_messages(measured):
    _, messages = measured
    assert "cost: mlp (width 16): gn_full 2/2" in messages
    assert all(m.startswith("cost: ") for m in messages)


def test_summary_ratios(summary):
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    assert len(summary) == len(CASES) * len(METHODS)
    assert list(dict.fromkeys(summary["case"])) == [c.label for c in CASES]  # case order kept
    assert summary["method"].tolist()[: len(METHODS)] == list(METHODS)
    assert (summary["ratio_low"] <= summary["ratio_to_epoch"]).all()
    assert (summary["ratio_to_epoch"] <= summary["ratio_high"]).all()
    epoch = summary[summary["method"] == "train_epoch"]
    assert (epoch["ratio_to_epoch"] == 1.0).all() and (epoch["ratio_low"] == 1.0).all()
    assert (summary["per_example_us"] > 0).all()
    row = summary.iloc[1]
    assert row["per_example_us"] == pytest.approx(row["seconds_median"] / N * 1e6)


def test_summary_pairs_repeats(measured):
    frame = measured[0].copy()
    sel = frame["case"] == CASES[0].label
    frame.loc[sel & (frame["method"] == "train_epoch"), "seconds"] = [1.0, 2.0]
    frame.loc[sel & (frame["method"] == "gn_full"), "seconds"] = [3.0, 2.0]
    row = cost_summary(frame).set_index(["case", "method"]).loc[(CASES[0].label, "gn_full")]
    assert (row["ratio_low"], row["ratio_to_epoch"], row["ratio_high"]) == (1.0, 2.0, 3.0)
    assert row["seconds_median"] == 2.5


def test_naive_loop_is_much_slower_than_engine_on_mlp(summary):
    mlp = summary[summary["case"] == CASES[0].label].set_index("method")
    assert mlp.loc["naive", "per_example_us"] > 3 * mlp.loc["gn_full", "per_example_us"]


def test_plot_writes_png(summary, tmp_path):
    out = plot_costs(summary, tmp_path / "fig" / "cost.png")
    assert out.is_file() and out.stat().st_size > 5000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"repeats": 0}, "repeats"),
        ({"naive_examples": 0}, "naive_examples"),
        ({"gn_batch_size": 0}, "gn_batch_size"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        measure_costs(CASES[:1], device="cpu", **kwargs)


def test_unknown_model_and_too_few_examples():
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        measure_costs([CostCase("bad", "nope", dataset_kwargs=DATA, n_examples=8)], device="cpu", repeats=1)
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        measure_costs([CostCase("bad", "mlp", dataset="nope", n_examples=8)], device="cpu", repeats=1)
    with pytest.raises(ValueError, match=r"case 'big'.*fewer than n_examples=100000"):
        measure_costs([CostCase("big", "mlp", dataset_kwargs=DATA, n_examples=100_000)], device="cpu", repeats=1)


def test_summary_needs_train_epoch():
    frame = pd.DataFrame([{"case": "a", "method": "gn_full", "repeat": 1, "seconds": 1.0, "n_examples": 1}])
    with pytest.raises(ValueError, match="no train_epoch"):
        cost_summary(frame)
    with pytest.raises(ValueError, match="missing column"):
        cost_summary(frame.drop(columns="seconds"))


def test_naive_examples_capped_at_n_and_rng_untouched():
    state = torch.random.get_rng_state()
    case = CostCase("mlp (width 8)", "mlp", {"width": 8}, dataset_kwargs=DATA, batch_size=16, n_examples=32)
    frame = measure_costs([case], device="cpu", repeats=1, naive_examples=1000)
    assert (frame["naive_examples"] == 32).all() and len(frame) == len(METHODS)
    assert torch.equal(torch.random.get_rng_state(), state)


# ------------------------------------------------------------------------------------------ claim 2
def _long(seconds: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    """A measure_costs-like long frame from {case: {method: [seconds per round]}}, rows in reverse order."""
    rows = [{"case": case, "model": "m", "params": 10, "input_shape": "3x32x32", "n_examples": 64, "method": method,
             "repeat": r, "seconds": s}
            for case, methods in seconds.items() for method, secs in methods.items()
            for r, s in enumerate(secs, start=1)]  # fmt: skip
    return pd.DataFrame(rows[::-1])


HAND = _long({
    "a": {"train_epoch": [1, 1, 1], "gn_full": [3, 4, 16], "gn_fc": [1, 2, 8], "naive": [12, 40, 20]},
    "b": {"train_epoch": [1, 1, 1], "gn_full": [2, 2, 2], "gn_fc": [1, 1, 1], "naive": [100, 110, 120]},
})  # fmt: skip


def test_paired_ratios_divide_round_by_round():
    r = paired_ratios(HAND, "naive", "gn_fc")
    assert list(r.columns) == ["case", "repeat", "ratio"] and r["case"].tolist() == ["b"] * 3 + ["a"] * 3
    a = r[r["case"] == "a"].set_index("repeat")["ratio"]
    assert a.to_dict() == {1: 12.0, 2: 20.0, 3: 2.5}  # unpaired medians would give 20 / 2 = 10


def test_claim2_table_median_and_spread_over_rounds():
    t = claim2_table(HAND, paper_cases=["a"]).set_index("case")
    assert list(claim2_table(HAND).columns) == list(CLAIM2_COLUMNS)
    a = t.loc["a"]
    assert (a.naive_over_fc_low, a.naive_over_fc, a.naive_over_fc_high) == (2.5, 12.0, 20.0)
    assert (a.exact_over_fc_low, a.exact_over_fc, a.exact_over_fc_high) == (2.0, 2.0, 3.0)
    assert a.rounds == 3 and a.spread == pytest.approx(8.0) and a.paper_case
    assert a.input_shape == "3x32x32" and a.params == 10
    assert t.loc["b", "naive_over_fc"] == 110.0 and t.loc["b", "spread"] == pytest.approx(1.2) and not t.loc["b", "paper_case"]


def _section(table: pd.DataFrame) -> Section:
    return Section(key="cost", title="t", intro="", findings=[], tables=[Table("cost_claim2", table, "c")])


def test_claim2_estimate_on_a_hand_made_section():
    t = claim2_table(_long({
        c: {"gn_full": [e, e], "gn_fc": [1, 1], "naive": [lo, hi]}
        for c, e, lo, hi in [("p", 2, 100, 300), ("q", 3, 10, 30), ("r", 5, 1000, 2000), ("s", 7, 50, 50)]
    }), paper_cases=["p", "r"])  # fmt: skip
    est = claim2_estimate(_section(t))
    assert set(est) == set(ESTIMATE_KEYS) and est["n_cases"] == 4 and est["paper_cases"] == 2
    assert est["estimate"] == 50.0  # medians 200, 20, 1500, 50: the lower middle case (s), a measured value
    assert (est["low"], est["high"]) == (10.0, 2000.0)
    assert (est["exact_estimate"], est["exact_low"], est["exact_high"]) == (3.0, 2.0, 7.0)
    assert (est["paper_estimate"], est["paper_low"], est["paper_high"]) == (200.0, 100.0, 2000.0)
    none = claim2_estimate(_section(t.assign(paper_case=False)))
    assert all(math.isnan(none[k]) for k in ("paper_estimate", "paper_low", "paper_high"))
    assert claim2_estimate(None) is None
    assert claim2_estimate(Section(key="cost", title="t", intro="", findings=[])) is None


def test_warning_when_rounds_disagree():
    words = claim2_findings(claim2_table(HAND))
    warnings = [f for f in words if f.text.startswith("Warning:")]
    assert len(warnings) == 1 and "rounds of a disagree" in warnings[0].text and warnings[0].verdict == "info"
    assert "[2.50, 20.0] around 12.0x" in warnings[0].text
    assert not [f for f in claim2_findings(claim2_table(HAND), spread_warning=10) if f.text.startswith("Warning")]


def _numbers(text: str) -> list[str]:
    return re.findall(r"(\d[\d.]*)x\b", text) + [n for pair in re.findall(r"\[([\d.]+), ([\d.]+)\]", text) for n in pair]


def test_every_ratio_in_the_words_is_a_value_of_the_table():
    t = claim2_table(HAND, paper_cases=["b"])
    shown = {ratio_text(v) for c in t.columns if c.endswith(("_fc", "_low", "_high")) for v in t[c]}
    texts = [f.text for f in claim2_findings(t)]
    assert texts[0].startswith("Over all timed architectures, the fc approximation is ")
    assert "faster than the naive per-example exact GN (the paper's comparison" in texts[0]
    assert "On the paper's architectures at their input shape (b)" in texts[1]
    for text in texts:
        nums = _numbers(text)
        assert nums and set(nums) <= shown | {ratio_text(v) for v in t["spread"]}, text


def test_cost_part_writes_claim2_with_paper_cases(tmp_path):
    cost = {"cases": [{"label": "mlp w16", "model": "mlp", "model_kwargs": {"width": 16}}],
            "dataset_kwargs": {"num_samples": 1200}, "n_examples": 128, "batch_size": 64, "repeats": 2,
            "naive_examples": 8, "paper_cases": [{"label": "resnet20 (width 0.25)", "model": "resnet20",
                                                  "model_kwargs": {"width_mult": 0.25}}],
            "paper_dataset_kwargs": {"shape": [3, 16, 16], "n_classes": 10, "n_samples": 100},
            "paper_n_examples": 16, "paper_batch_size": 8, "paper_repeats": 2, "paper_naive_examples": 4}  # fmt: skip
    result = run_study({**TINY, "cost": cost}, tmp_path, parts="cost", workers=1)
    section = result.sections["cost"]
    t = table_of(section, "cost_claim2")
    assert list(t.columns) == list(CLAIM2_COLUMNS) and t["paper_case"].tolist() == [False, True]
    assert t["input_shape"].tolist() == ["40", "3x16x16"] and (t["rounds"] == 2).all()
    assert (result.files["tables"] / "cost_claim2.csv").exists()
    est = claim2_estimate(section)
    assert est["n_cases"] == 2 and est["paper_estimate"] == t["naive_over_fc"].iloc[1]
    claim = next(f.text for f in section.findings if f.text.startswith("Over all timed architectures"))
    faster = re.findall(r"is ([\d.]+)x faster", claim) + re.findall(r"and ([\d.]+)x faster", claim)
    assert len(faster) == 2
    assert faster[0] in {ratio_text(v) for v in t["naive_over_fc"]}
    assert faster[1] in {ratio_text(v) for v in t["exact_over_fc"]}
    first = section.findings[0].text
    summary = table_of(section, "cost_summary")
    assert all(n in {ratio_text(v) for c in ("ratio_to_epoch", "ratio_low", "ratio_high") for v in summary[c]}
               for n in _numbers(first))  # fmt: skip


def test_paper_cases_settings_are_checked():
    with pytest.raises(ValueError, match="used twice"):
        load_study({**TINY, "cost": {**TINY["cost"], "paper_cases": [{"label": "mlp w16", "model": "mlp"}]}})
    with pytest.raises(ValueError, match="paper_repeats"):
        load_study({**TINY, "cost": {**TINY["cost"], "paper_repeats": 0}})
    with pytest.raises(ValueError, match="spread_warning"):
        load_study({**TINY, "cost": {**TINY["cost"], "spread_warning": 1.0}})
    with pytest.raises(ValueError, match=r"cost.paper_cases\[0\]"):
        load_study({**TINY, "cost": {**TINY["cost"], "paper_cases": [{"modl": "vgg11"}]}})
