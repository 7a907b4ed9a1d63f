"""Constrained GN objectives (``gn_full | train_loss<=0.01``), the weight of ``val_loss + w * gn`` tuned on
validation data, and the one verdict rule of every part."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from brute_selection import brute_expected

from gnsel.study.common import ACC_MARGIN, TAU_MARGIN, oriented, verdict_of
from gnsel.study.hpo_tuned import tuned_effects, tuned_findings
from gnsel.tune.exact import (
    expected_selected,
    selection_table,
    weight_curve,
    weight_table,
)
from gnsel.tune.live import search_name
from gnsel.tune.lookup import Lookup
from gnsel.tune.objectives import INFEASIBLE, parse_objective
from gnsel.tune.replay import run_replay, split_objectives
from gnsel.tune.selection import TrialRecord, select

ROW = {"gn_full": 2.0, "gn_fc": 0.5, "train_loss": 0.005, "train_acc": 0.99, "val_loss": 0.3, "val_acc": 0.9}


# ------------------------------------------------------------------------------------------ syntax
def test_constraint_met_gives_the_sum_and_violated_gives_the_penalty_plus_violation():
    o = parse_objective("gn_full | train_loss<=0.01")
    assert o(ROW) == 2.0
    assert o({**ROW, "train_loss": 0.05}) == pytest.approx(INFEASIBLE + 0.04)
    assert math.isnan(o({**ROW, "train_loss": math.nan}))
    assert o.metrics == ["gn_full", "train_loss"] and o.gn_scopes == ("full",) and o.uses_gn and o.gn_only


def test_several_constraints_sum_their_violations_and_ge_works():
    o = parse_objective("val_loss+0.1*gn_fc | train_error<=0.005 & val_error>=0.2")
    assert not o.gn_only and o.uses_gn
    # train_error 0.01 (0.005 over) and val_error 0.1 (0.1 under its lower bound)
    assert o(ROW) == pytest.approx(INFEASIBLE + 0.005 + 0.1)
    assert o({**ROW, "train_acc": 1.0, "val_acc": 0.7}) == pytest.approx(0.3 + 0.05)


def test_constraints_inside_a_multi_objective_apply_to_their_own_part():
    o = parse_objective("[val_loss, gn_full | train_loss<=0.001]")
    assert o.multi and o(ROW) == pytest.approx((0.3, INFEASIBLE + 0.004))
    assert split_objectives("val_loss,gn_full | train_loss<=0.01,[val_loss, gn_fc | train_loss<=0.1]") == [
        "val_loss", "gn_full | train_loss<=0.01", "[val_loss, gn_fc | train_loss<=0.1]"]  # fmt: skip


@pytest.mark.parametrize("bad, match", [
    ("gn_full |", "one '|'"), ("gn_full | train_loss<=0.01 | val_error<=1", "one '|'"),
    ("gn_full | foo<=1", "cannot read constraint"), ("gn_full | train_loss<1", "cannot read constraint"),
    ("gn_full | train_loss<=x", "cannot read constraint"), ("gn_full | train_loss<=1e999", "finite"),
    ("| train_loss<=1", "cannot read objective term"),
])  # fmt: skip
def test_bad_constraints_are_one_line_errors(bad, match):
    with pytest.raises(ValueError, match=match) as err:
        parse_objective(bad)
    assert "\n" not in str(err.value)


def test_live_search_names_keep_constraint_directions_apart():
    a, b = search_name("tpe", "gn_full | train_loss<=0.01"), search_name("tpe", "gn_full | train_loss>=0.01")
    assert a != b and search_name("tpe", "val_loss+0.1*gn_fc") == "tpe-val_loss_0_1_gn_fc"


def _records() -> list[TrialRecord]:
    """Three trials at one epoch: the least GN did not fit (infeasible), the second least did."""
    rows = [{"gn_full": 0.1, "train_loss": 2.3, "test_acc": 0.1}, {"gn_full": 0.5, "train_loss": 0.008, "test_acc": 0.9},
            {"gn_full": 0.9, "train_loss": 0.002, "test_acc": 0.8}]  # fmt: skip
    return [TrialRecord(trial_id=f"t{i}", config={"i": i}, status="TERMINATED", rows=[{**r, "epoch": 1}])
            for i, r in enumerate(rows)]  # fmt: skip


def test_a_constrained_search_selects_the_least_gn_among_fitted_models():
    assert select(_records(), "gn_full").selected_trial == "t0"
    assert select(_records(), "gn_full | train_loss<=0.01").selected_trial == "t1"
    # nothing feasible: the least infeasible is still selected
    assert select(_records(), "gn_full | train_loss<=0.001").selected_trial == "t2"


# ------------------------------------------------------------------------------ exact, constrained
def _lookup(n: int = 10, reps: int = 1, epochs: int = 2, seed: int = 0) -> Lookup:
    """``n`` configurations; GN is smallest where the model did not fit (large training loss, low accuracy)."""
    rng = np.random.default_rng(seed)
    shape = (n, reps, epochs + 1)
    fit = rng.uniform(0, 1, shape)  # 0 = fits well
    metrics = {"val_loss": 0.2 + fit + rng.normal(0, 0.05, shape), "val_acc": 0.95 - 0.5 * fit,
               "gn_full": 1.5 - fit + rng.uniform(0, 0.3, shape), "gn_fc": 1.0 - 0.5 * fit + rng.uniform(0, 0.2, shape),
               "train_loss": 0.02 * fit / 0.5, "train_acc": 1 - 0.3 * fit, "test_acc": 0.95 - 0.5 * fit,
               "train_seconds": np.ones(shape), "eval_seconds": np.full(shape, 0.1),
               "measure_seconds": np.full(shape, 0.2)}  # fmt: skip
    labels = [f"c{i:02d}" for i in range(n)]
    return Lookup(params={"cfg": labels}, configs=[{"cfg": s} for s in labels],
                  index={(s,): i for i, s in enumerate(labels)}, epochs=epochs, metrics=metrics,
                  n_replicates=np.full(n, reps), run_ids=[[f"r{i}-{r}" for r in range(reps)] for i in range(n)])  # fmt: skip


@pytest.mark.parametrize("replacement", [False, True])
def test_exact_expectation_of_a_constrained_objective_matches_brute_force(replacement):
    lk = _lookup()
    table = selection_table(lk, ["gn_full", "gn_full | train_loss<=0.01"])
    v = table["gn_full | train_loss<=0.01"].to_numpy(float)
    feasible = lk.mean("train_loss")[:, lk.epochs] <= 0.01
    assert 0 < feasible.sum() < len(v)
    assert np.all(v[~feasible] > INFEASIBLE) and np.all(v[feasible] < INFEASIBLE)
    acc = table["test_acc"].to_numpy(float)
    for k in (1, 2, 3):
        assert expected_selected(v, acc, k, replacement) == pytest.approx(brute_expected(v, acc, k, replacement))
    # with the constraint the search no longer rewards the models that did not fit
    gn = table["gn_full"].to_numpy(float)
    assert expected_selected(v, acc, 4, replacement) > expected_selected(gn, acc, 4, replacement)


def test_replay_searches_take_constrained_objectives():
    lk = _lookup(n=12)
    res = run_replay(lk, ["random", "tpe"], ["gn_full | train_loss<=0.01"], seeds=2, budget=6 * lk.epochs)
    assert len(res.runs) == 4 and res.runs["test_acc"].notna().all()


# ---------------------------------------------------------------------------------- tuned weights
def test_weight_curve_is_exact_and_chooses_by_validation_error_only():
    lk = _lookup(n=9, seed=3)
    weights = [0.0, 0.1, 1.0, 10.0]
    table = weight_table(lk, ["gn_fc"], weights)
    curve = weight_curve(table, "gn_fc", 3, True, weights)
    assert list(curve["weight"]) == weights and curve["chosen"].sum() == 1
    crit, acc = table["val_error"].to_numpy(float), table["test_acc"].to_numpy(float)
    for r in curve.itertuples():
        v = (table["val_loss"] + r.weight * lk.mean("gn_fc")[:, lk.epochs]).to_numpy(float)
        assert r.expected_val_error == pytest.approx(brute_expected(v, crit, 3, True))
        assert r.expected_test_acc == pytest.approx(brute_expected(v, acc, 3, True))
    chosen = curve.loc[curve["chosen"]].iloc[0]
    assert chosen.expected_val_error == curve["expected_val_error"].min()
    # the choice never reads the test set: scrambling test accuracy leaves it unchanged
    lk2 = _lookup(n=9, seed=3)
    lk2.metrics["test_acc"] = lk2.metrics["test_acc"][::-1].copy()
    curve2 = weight_curve(weight_table(lk2, ["gn_fc"], weights), "gn_fc", 3, True, weights)
    assert list(curve2["chosen"]) == list(curve["chosen"])


def test_weight_ties_go_to_the_smaller_weight():
    lk = _lookup(n=6)
    lk.metrics["gn_fc"] = np.zeros_like(lk.metrics["gn_fc"])  # every weight selects alike
    curve = weight_curve(weight_table(lk, ["gn_fc"], [0, 1, 3]), "gn_fc", 2, False, [0, 1, 3])
    assert curve.loc[curve["chosen"], "weight"].tolist() == [0.0]


def test_tuned_effects_rechoose_the_weight_on_every_resample():
    lk = _lookup(n=10, reps=2)
    t = tuned_effects(lk, ["gn_full", "gn_fc"], ["grid", "random", "tpe"], budget=4 * lk.epochs,
                      weights=[0, 0.1, 1], resamples=25, seed=1)  # fmt: skip
    assert set(t.effects["algorithm"]) == {"grid", "random"}  # tpe has no exact expectation
    assert set(t.effects["objective"]) == {"val_loss+w*gn_full", "val_loss+w*gn_fc"}
    assert len(t.samples) == 25 * 4 and set(t.samples["weight"]) <= {0.0, 0.1, 1.0}
    for r in t.effects.itertuples():
        assert r.low <= r.effect <= r.high and r.resamples == 25
        assert r.verdict == verdict_of(r.low, r.high, ACC_MARGIN)
        curve = t.curves[(t.curves["algorithm"] == r.algorithm) & (t.curves["gn"] == r.gn)]
        assert curve.loc[curve["chosen"], "weight"].item() == r.weight
        base = curve.loc[curve["weight"] == 0, "expected_test_acc"].item()
        assert r.effect == pytest.approx(curve.loc[curve["chosen"], "expected_test_acc"].item() - base)
    texts = [f.text for f in tuned_findings(t, 10, 25)]
    assert len(texts) == 2 and all("never the test set" in x and "w = " in x for x in texts)


# ---------------------------------------------------------------------------------------- verdicts
@pytest.mark.parametrize("low, high, margin, verdict", [
    (0.001, 0.01, ACC_MARGIN, "helps"),
    (-0.0016, 0.0006, ACC_MARGIN, "does not help"),  # contains 0 but excludes a benefit above the margin
    (-0.03, -0.01, ACC_MARGIN, "does not help"),
    (-0.002, 0.02, ACC_MARGIN, "inconclusive"),
    (-0.26, 0.43, TAU_MARGIN, "inconclusive"),
    (-0.05, 0.08, TAU_MARGIN, "does not help"),
    (math.nan, 0.1, TAU_MARGIN, "inconclusive"),
])  # fmt: skip
def test_one_verdict_rule(low, high, margin, verdict):
    assert verdict_of(low, high, margin) == verdict


def test_oriented_flips_an_interval_whose_hoped_sign_is_negative():
    assert oriented(-0.4, -0.1, -1) == (0.1, 0.4) and oriented(0.1, 0.2, 1) == (0.1, 0.2)
    assert pd.isna(pd.Series([verdict_of(*oriented(math.nan, 0.1, -1), TAU_MARGIN)])).sum() == 0


def test_helps_needs_the_adjusted_p_where_a_family_is_tested():
    assert verdict_of(0.001, 0.01, ACC_MARGIN, p_adjusted=0.01) == "helps"
    assert verdict_of(0.001, 0.01, ACC_MARGIN, p_adjusted=0.098) == "inconclusive"
    assert verdict_of(-0.001, 0.001, ACC_MARGIN, p_adjusted=0.5) == "does not help"
    assert verdict_of(0.001, 0.01, ACC_MARGIN, p_adjusted=math.nan) == "helps"  # no family: the interval alone
