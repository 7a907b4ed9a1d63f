"""Tests for the cost part of the study (gnsel.study.cost): tiny cases, CPU only, a few seconds."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from gnsel.progress import Recorder
from gnsel.study.cost import (
    FRAME_COLUMNS,
    METHODS,
    SUMMARY_COLUMNS,
    CostCase,
    cost_summary,
    measure_costs,
    plot_costs,
)

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
