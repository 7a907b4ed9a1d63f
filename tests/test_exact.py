"""Exact expectations of grid and random search (order statistics) against brute-force enumeration, ties, NaN,
the selection table of a lookup, and a replay of random search over a small lookup as a check."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from brute_selection import brute_expected

from gnsel.tune.exact import (
    exact_expectations,
    expected_selected,
    rank_probabilities,
    selection_table,
)
from gnsel.tune.lookup import Lookup
from gnsel.tune.replay import run_replay

VALUES = np.array([0.31, 0.12, 0.55, 0.08, 0.47, 0.29, 0.90])
ACC = np.array([0.70, 0.81, 0.60, 0.85, 0.65, 0.72, 0.40])


@pytest.mark.parametrize("replacement", [False, True])
@pytest.mark.parametrize("k", range(1, 8))
def test_exact_matches_brute_force(k, replacement):
    assert expected_selected(VALUES, ACC, k, replacement) == pytest.approx(brute_expected(VALUES, ACC, k, replacement), abs=1e-12)


@pytest.mark.parametrize("replacement", [False, True])
def test_ties_share_their_mass_and_nan_is_never_selected(replacement):
    values = np.array([0.2, 0.2, 0.5, np.nan, 0.1, 0.5, np.nan])
    acc = np.array([0.9, 0.5, 0.3, 1.0, 0.6, 0.8, 1.0])
    ok = np.isfinite(values)
    for k in range(1, 6):
        want = brute_expected(values[ok], acc[ok], k, replacement)
        assert expected_selected(values, acc, k, replacement) == pytest.approx(want, abs=1e-12)
    assert math.isnan(expected_selected([np.nan, np.nan], [0.5, 0.6], 1, replacement))


def test_k_equal_to_n_selects_the_best_by_objective_and_probabilities_sum_to_one():
    assert expected_selected(VALUES, ACC, len(VALUES), False) == pytest.approx(ACC[np.argmin(VALUES)])
    assert expected_selected(VALUES, ACC, 200, True) == pytest.approx(ACC[np.argmin(VALUES)], abs=1e-9)
    assert expected_selected(VALUES, ACC, 1, False) == pytest.approx(ACC.mean())
    for n, k, rep in ((5000, 16, False), (5000, 4000, False), (5000, 16, True), (100000, 3000, True)):
        p = rank_probabilities(n, k, rep)
        assert np.all(np.isfinite(p)) and p.sum() == pytest.approx(1.0) and np.all(np.diff(p) <= 1e-15)
    with pytest.raises(ValueError, match="k must be"):
        expected_selected(VALUES, ACC, 8, False)


def _lookup(n: int = 12, reps: int = 2, epochs: int = 3, seed: int = 0) -> Lookup:
    """A synthetic lookup of ``n`` configurations (one parameter) with ``reps`` seeds each."""
    rng = np.random.default_rng(seed)
    shape = (n, reps, epochs + 1)
    val_loss = rng.uniform(0.2, 1.5, shape)
    metrics = {"val_loss": val_loss, "val_acc": 1 - val_loss / 2, "gn_fc": rng.uniform(0, 3, shape),
               "test_acc": 1 - val_loss / 2 + rng.normal(0, 0.05, shape), "train_seconds": np.ones(shape),
               "eval_seconds": np.full(shape, 0.1), "measure_seconds": np.full(shape, 0.2)}  # fmt: skip
    labels = [f"c{i:02d}" for i in range(n)]
    return Lookup(params={"cfg": labels}, configs=[{"cfg": s} for s in labels], index={(s,): i for i, s in enumerate(labels)},
                  epochs=epochs, metrics=metrics, n_replicates=np.full(n, reps),
                  run_ids=[[f"r{i}-{r}" for r in range(reps)] for i in range(n)])  # fmt: skip


def test_selection_table_has_one_row_per_configuration_with_seed_means():
    lk = _lookup()
    table = selection_table(lk, ["val_loss", "val_error", "val_loss+0.1*gn_fc", "[val_loss, gn_fc]"])
    assert list(table.columns) == ["config", "val_loss", "val_error", "val_loss+0.1*gn_fc", "test_acc"]
    assert len(table) == 12 and table["config"].tolist() == [lk.label(c) for c in range(12)]
    e = lk.epochs
    np.testing.assert_allclose(table["val_loss"], lk.metrics["val_loss"][:, :, e].mean(axis=1))
    np.testing.assert_allclose(table["val_error"], 1 - lk.metrics["val_acc"][:, :, e].mean(axis=1))
    np.testing.assert_allclose(table["val_loss+0.1*gn_fc"],
                               (lk.metrics["val_loss"] + 0.1 * lk.metrics["gn_fc"])[:, :, e].mean(axis=1))
    np.testing.assert_allclose(table["test_acc"], lk.metrics["test_acc"][:, :, e].mean(axis=1))
    early = selection_table(lk, ["val_loss"], epoch=1)
    np.testing.assert_allclose(early["val_loss"], lk.metrics["val_loss"][:, :, 1].mean(axis=1))


def test_exact_expectations_rows_and_columns():
    table = pd.DataFrame({"config": list("abcdefg"), "val_loss": VALUES, "test_acc": ACC})
    ex = exact_expectations(table, ["val_loss", "[val_loss, gn_fc]"], ks=[1, 7, 16])
    assert list(ex.columns) == ["algorithm", "objective", "k", "replacement", "expected_test_acc"]
    got = set(zip(ex["algorithm"], ex["k"], ex["replacement"]))
    assert got == {("grid", 1, False), ("random", 1, False), ("random", 1, True), ("grid", 7, False),
                   ("random", 7, False), ("random", 7, True), ("random", 16, True)}  # fmt: skip
    assert set(ex["objective"]) == {"val_loss"}


def test_replayed_random_search_agrees_with_the_exact_value():
    """A check, with a loose tolerance: Optuna's random sampler over one categorical draws with replacement."""
    lk = _lookup(n=12, reps=1, epochs=3)
    res = run_replay(lk, ["random", "grid"], ["val_loss"], seeds=60, budget=4 * lk.epochs)
    table = selection_table(lk, ["val_loss"])
    for alg, rep in (("random", True), ("grid", False)):
        exact = expected_selected(table["val_loss"], table["test_acc"], 4, rep)
        got = res.runs.loc[res.runs["algorithm"] == alg, "test_acc"]
        assert abs(got.mean() - exact) < 4 * got.std(ddof=1) / math.sqrt(len(got)) + 1e-9, (alg, got.mean(), exact)
