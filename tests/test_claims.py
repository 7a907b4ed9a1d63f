"""The claims part's verdicts: stated margins, one-sided tests, Holm across the claims."""

from __future__ import annotations

import math

from gnsel.study.claims import CLAIM_COLUMNS, PRACTICAL, STRONG_TAU, Claim, claims_table


def _verdicts(claims):
    table, tests = claims_table(claims)
    assert list(table.columns) == CLAIM_COLUMNS
    return dict(zip(table["claim"], table["verdict"])), tests.set_index("claim")


def test_margins_decide_and_a_null_result_is_inconclusive():
    v, tests = _verdicts([
        Claim(1, "tau", 0.45, 0.35, 0.55, STRONG_TAU),          # interval above 0.2: strong
        Claim(2, "speed-up", 900.0, 300.0, 5000.0, 200.0, tested=False),
        Claim(3, "effect", 0.001, -0.02, 0.022, 0.0),          # contains 0, wide: inconclusive, never "does not help"
        Claim(4, "gap", -0.03, -0.05, -0.01, -PRACTICAL, claim_side=-1),  # below -0.005: BOHB worse
        Claim(5, "tau", 0.5, 0.4, 0.6, STRONG_TAU, claim_side=-1),  # GN strong across architectures: refuted
    ])  # fmt: skip
    assert v == {1: "confirmed", 2: "confirmed", 3: "inconclusive", 4: "confirmed", 5: "refuted"}
    assert tests.loc[5, "direction"] == "against it" and tests.loc[1, "direction"] == "for the claim"
    assert math.isnan(tests.loc[2, "p"])  # a measured range, not a test


def test_tau_below_the_strong_margin_refutes_claim_1_even_if_above_0():
    v, _ = _verdicts([Claim(1, "tau", 0.1, 0.05, 0.15, STRONG_TAU)])
    assert v[1] == "refuted"  # positive, but not strong


def test_claim_2_range_straddling_200_is_inconclusive_and_below_is_refuted():
    assert _verdicts([Claim(2, "x", 250.0, 90.0, 400.0, 200.0, tested=False)])[0][2] == "inconclusive"
    assert _verdicts([Claim(2, "x", 50.0, 20.0, 120.0, 200.0, tested=False)])[0][2] == "refuted"


def test_holm_turns_a_lone_marginal_result_inconclusive_among_four_tests():
    # one-sided p of claim 1 alone: z = (0.32 - 0.2) / (0.2 / 3.92) = 2.35, p = 0.0094; Holm over 4 with the
    # smallest p elsewhere: the others are far from significant, so claim 1 is adjusted to 4 * 0.0094 = 0.038
    strong = Claim(1, "tau", 0.32, 0.22, 0.42, STRONG_TAU)
    weak = [Claim(3, "e", 0.0, -0.01, 0.01, 0.0), Claim(4, "g", -0.005, -0.02, 0.01, -PRACTICAL, claim_side=-1),
            Claim(5, "t", 0.2, 0.0, 0.4, STRONG_TAU, claim_side=-1)]  # fmt: skip
    v, tests = _verdicts([strong, *weak])
    assert abs(tests.loc[1, "p_holm"] - 4 * tests.loc[1, "p"]) < 1e-12 and v[1] == "confirmed"
    # just significant alone (p = 0.03 one-sided) but not after Holm over four
    near = Claim(1, "tau", 0.296, 0.196, 0.396, STRONG_TAU)
    v, tests = _verdicts([near, *weak])
    assert tests.loc[1, "p"] < 0.05 <= tests.loc[1, "p_holm"] and v[1] == "inconclusive"


def test_a_claim_not_measured_is_inconclusive():
    v, _ = _verdicts([Claim(1, "not measured", math.nan, math.nan, math.nan, STRONG_TAU)])
    assert v[1] == "inconclusive"


def test_table_cells_read_as_true_only_when_true():
    import numpy as np
    import pandas as pd

    from gnsel.study.correlation import is_true

    column = pd.array([True, False, pd.NA], dtype="boolean")  # a nullable column hands out numpy bools
    assert [is_true(v) for v in column] == [True, False, False]
    assert is_true(np.True_) and not is_true(float("nan")) and not is_true(None)
