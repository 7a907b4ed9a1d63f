"""Tests for the statistics of gnsel.analysis: partial/stratified Kendall, cluster bootstrap, Holm, separated ranks."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gnsel.analysis import (
    BootstrapResult,
    bootstrap_pvalue,
    cluster_bootstrap,
    holm,
    partial_kendall,
    quantile_strata,
    rank_text,
    separated_ranks,
    stratified_kendall,
)


def _tau_by_hand(a: list[float], b: list[float]) -> float:
    """Kendall tau-b by counting concordant, discordant and tied pairs (no scipy)."""
    n = len(a)
    concordant = discordant = tied_a = tied_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0:
                tied_a += 1
            if db == 0:
                tied_b += 1
            if da * db > 0:
                concordant += 1
            elif da * db < 0:
                discordant += 1
    n0 = n * (n - 1) / 2
    return (concordant - discordant) / math.sqrt((n0 - tied_a) * (n0 - tied_b))


# --------------------------------------------------------------------------- partial / stratified Kendall


def test_partial_kendall_matches_the_formula_on_a_hand_counted_example() -> None:
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    y = [2.0, 1.0, 4.0, 3.0, 6.0, 5.0]
    z = [1.0, 3.0, 3.0, 2.0, 6.0, 4.0]  # one tie in z
    t_xy, t_xz, t_yz = _tau_by_hand(x, y), _tau_by_hand(x, z), _tau_by_hand(y, z)
    assert t_xy == pytest.approx(stats.kendalltau(x, y).statistic)  # the hand count is tau-b
    expected = (t_xy - t_xz * t_yz) / math.sqrt((1 - t_xz**2) * (1 - t_yz**2))
    assert partial_kendall(x, y, z) == pytest.approx(expected, abs=1e-12)
    # NaN rows are dropped, pandas Series are fine
    xs = pd.Series([*x, np.nan, 7.0])
    ys = pd.Series([*y, 1.0, 7.0])
    zs = pd.Series([*z, 1.0, np.nan])
    assert partial_kendall(xs, ys, zs) == pytest.approx(expected, abs=1e-12)


def test_partial_kendall_undefined_cases_are_nan() -> None:
    assert math.isnan(partial_kendall([1, 2], [1, 2], [2, 1]))  # under 3 rows
    assert math.isnan(partial_kendall([1, 2, 3], [3, 1, 2], [5, 5, 5]))  # constant z: tau undefined
    assert math.isnan(partial_kendall([1, 2, 3], [1, 3, 2], [1, 2, 3]))  # t_xz = 1: denominator 0
    assert math.isnan(partial_kendall([1, np.nan, 3, 4], [1, 2, np.nan, 4], [1, 2, 3, np.nan]))
    with pytest.raises(ValueError, match="length"):
        partial_kendall([1, 2, 3], [1, 2, 3], [1, 2])


def test_partial_kendall_of_an_independent_x_given_the_driver_of_y_is_near_zero() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    z = rng.normal(size=n)
    x = rng.normal(size=n)                              # independent of y and z
    y = np.exp(z) + 0.05 * rng.normal(size=n)           # a monotone function of z (plus a little noise)
    assert stats.kendalltau(y, z).statistic > 0.9
    assert abs(partial_kendall(x, y, z)) < 0.05
    # x driven by z as well: the marginal tau is large, the partial tau much smaller
    x2 = z + 0.3 * rng.normal(size=n)
    marginal = stats.kendalltau(x2, y).statistic
    assert marginal > 0.6
    assert abs(partial_kendall(x2, y, z)) < marginal / 2


def test_stratified_kendall_is_the_pair_weighted_mean_of_within_stratum_taus() -> None:
    x = [1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2]
    y = [1, 3, 2, 4, 9, 8, 7, 6, 5, 3, 3]
    s = ["a", "a", "a", "a", "b", "b", "b", "b", "b", "c", "c"]  # c: constant y, tau undefined
    t_a = _tau_by_hand(x[:4], y[:4])
    t_b = _tau_by_hand(x[4:9], y[4:9])
    expected = (6 * t_a + 10 * t_b) / 16
    assert stratified_kendall(x, y, s) == pytest.approx(expected, abs=1e-12)
    # a single-row stratum, a NaN row and a missing label are skipped
    x2, y2, s2 = [*x, 5, 6, np.nan], [*y, 1, 2, 3], [*s, "d", None, "a"]
    assert stratified_kendall(x2, y2, s2) == pytest.approx(expected, abs=1e-12)
    assert math.isnan(stratified_kendall([1, 2, 3], [3, 2, 1], ["a", "b", "c"]))
    assert math.isnan(stratified_kendall([], [], []))


def test_stratified_kendall_with_z_constant_within_strata_removes_its_effect() -> None:
    rng = np.random.default_rng(1)
    z = np.repeat(np.arange(8), 50).astype(float)  # constant within each stratum
    x = z + rng.normal(size=z.size)
    y = 2.0 * z + rng.normal(size=z.size)          # x and y related only through z
    assert stats.kendalltau(x, y).statistic > 0.5
    assert abs(stratified_kendall(x, y, z)) < 0.08
    assert abs(stratified_kendall(x, y, quantile_strata(z, n_bins=8))) < 0.08
    # with a within-stratum link the stratified tau finds it
    y_linked = 2.0 * z + x + 0.5 * rng.normal(size=z.size)
    assert stratified_kendall(x, y_linked, z) > 0.5


def test_quantile_strata_bins_by_quantiles_and_marks_nan() -> None:
    z = pd.Series([1, 2, 3, 4, 5, np.nan, 7, 8])
    labels = quantile_strata(z, n_bins=4)
    assert labels.dtype.kind == "i"
    assert labels.tolist() == [0, 0, 1, 1, 2, -1, 3, 3]
    # duplicate edges dropped: quartile edges 1, 1, 1.5, 3.25, 5 -> three bins
    assert quantile_strata([1, 1, 1, 1, 2, 3, 4, 5], n_bins=4).tolist() == [0, 0, 0, 0, 1, 1, 2, 2]
    assert quantile_strata([3, 3, 3], n_bins=2).tolist() == [0, 0, 0]
    assert quantile_strata([np.nan, np.nan]).tolist() == [-1, -1]
    big = quantile_strata(np.random.default_rng(2).normal(size=400), n_bins=4)
    assert np.bincount(big).tolist() == [100, 100, 100, 100]
    with pytest.raises(ValueError):
        quantile_strata([1, 2], n_bins=0)


# --------------------------------------------------------------------------- cluster bootstrap


def _mean(d: pd.DataFrame) -> float:
    return float(d["v"].mean())


def test_cluster_bootstrap_covers_the_true_mean_most_of_the_time() -> None:
    rng = np.random.default_rng(3)
    hits = 0
    for rep in range(40):
        frame = pd.DataFrame({"v": rng.normal(loc=2.0, size=20)})
        res = cluster_bootstrap(frame, _mean, group=None, n_boot=200, seed=rep)
        assert res.low <= res.estimate <= res.high
        hits += res.low <= 2.0 <= res.high
    assert hits >= 32  # nominal 95 %: about 37 of 40


def test_cluster_bootstrap_is_deterministic_for_a_seed() -> None:
    frame = pd.DataFrame({"g": np.repeat(np.arange(6), 3), "v": np.arange(18.0) ** 1.5})
    a = cluster_bootstrap(frame, _mean, group="g", n_boot=100, seed=7)
    b = cluster_bootstrap(frame, _mean, group="g", n_boot=100, seed=7)
    c = cluster_bootstrap(frame, _mean, group="g", n_boot=100, seed=8)
    assert isinstance(a, BootstrapResult)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert (a.low, a.high, a.n_failed) == (b.low, b.high, b.n_failed)
    assert not np.array_equal(a.samples, c.samples)
    assert a.estimate == pytest.approx(_mean(frame))
    assert a.width == pytest.approx(a.high - a.low) and a.width > 0
    assert a.samples.shape == (100,) and a.n_failed == 0


def test_cluster_bootstrap_draws_groups_then_seeds_within_the_drawn_group() -> None:
    sizes = {"g0": 1, "g1": 2, "g2": 3, "g3": 4}
    rows = [{"cfg": g, "seed": s, "v": float(10 * k + s)} for k, (g, n) in enumerate(sizes.items()) for s in range(n)]
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # groups interleaved in the frame
    seen: list[pd.DataFrame] = []

    def record(d: pd.DataFrame) -> float:
        seen.append(d.copy())
        return _mean(d)

    cluster_bootstrap(frame, record, group="cfg", n_boot=200, seed=0)
    resamples = seen[1:]  # seen[0] is the estimate on the original frame
    assert len(resamples) == 200
    partial_draw = False
    for d in resamples:
        counts = d["cfg"].value_counts()
        # a drawn group contributes whole draws: size x (times drawn) rows; len(sizes) groups in all
        draws = {g: c / sizes[g] for g, c in counts.items()}
        assert all(float(k).is_integer() for k in draws.values())
        assert sum(draws.values()) == len(sizes)
        # every row of a group is one of that group's own seeds
        assert ((d["v"] // 10).map(lambda k: f"g{int(k)}") == d["cfg"]).all()
        assert (d["seed"] < d["cfg"].map(sizes)).all()
        # the second stage: seeds drawn with replacement, so a drawn group need not hold all its seeds
        for g, part in d.groupby("cfg"):
            if part["seed"].nunique() < sizes[g]:
                partial_draw = True
    assert partial_draw
    # group=None is a plain row bootstrap: n rows, each an original row
    seen.clear()
    cluster_bootstrap(frame, record, group=None, n_boot=20, seed=0)
    assert all(len(d) == len(frame) for d in seen)
    with pytest.raises(KeyError):
        cluster_bootstrap(frame, _mean, group="nope", n_boot=5)


def test_cluster_bootstrap_counts_failed_resamples() -> None:
    frame = pd.DataFrame({"v": np.arange(30.0)})
    calls = {"n": 0}

    def flaky(d: pd.DataFrame) -> float:
        k = calls["n"]
        calls["n"] += 1
        if k > 0 and k % 3 == 0:
            raise ValueError("cannot score this resample")
        if k > 0 and k % 5 == 0:
            return float("inf") if k % 2 else float("nan")
        return _mean(d)

    res = cluster_bootstrap(frame, flaky, group=None, n_boot=50, seed=0)
    raised = sum(1 for k in range(1, 51) if k % 3 == 0)
    non_finite = sum(1 for k in range(1, 51) if k % 3 and k % 5 == 0)
    assert res.n_failed == raised + non_finite == 23
    assert res.samples.size == 50 - 23 and np.isfinite(res.samples).all()
    assert math.isfinite(res.low) and math.isfinite(res.high)
    # under 10 finite resamples: NaN interval, the estimate stays
    calls["n"] = 0

    def only_the_estimate(d: pd.DataFrame) -> float:
        calls["n"] += 1
        return _mean(d) if calls["n"] == 1 else float("nan")

    few = cluster_bootstrap(frame, only_the_estimate, group=None, n_boot=12)
    assert few.estimate == pytest.approx(14.5)
    assert few.n_failed == 12 and few.samples.size == 0
    assert math.isnan(few.low) and math.isnan(few.high) and math.isnan(few.width)
    with pytest.raises(ValueError):
        cluster_bootstrap(frame, _mean, group=None, level=1.5)
    with pytest.raises(ValueError):
        cluster_bootstrap(frame, _mean, group=None, n_boot=0)


def test_bootstrap_pvalue_formula() -> None:
    samples = np.array([0.1, 0.2, 0.3, 0.4, np.nan])
    assert bootstrap_pvalue(samples, 0.2, "greater") == pytest.approx((1 + 2) / (1 + 4))
    assert bootstrap_pvalue(samples, 0.2, "less") == pytest.approx((1 + 3) / (1 + 4))
    assert bootstrap_pvalue([0.5, 0.6, 0.7], 0.0, "greater") == pytest.approx(1 / 4)
    assert bootstrap_pvalue([0.5, 0.6, 0.7], 0.0, "less") == pytest.approx(4 / 4)
    assert math.isnan(bootstrap_pvalue([np.nan, np.nan], 0.0, "greater"))
    with pytest.raises(ValueError, match="bogus"):
        bootstrap_pvalue(samples, 0.0, "bogus")


# --------------------------------------------------------------------------- Holm


def test_holm_on_a_hand_computed_family_in_every_container() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    expected = [0.03, 0.06, 0.06, 0.02]  # sorted: .005*4, .01*3, .03*2 (.06), .04*1 -> max so far .06
    out = holm(p)
    assert isinstance(out, list) and all(isinstance(v, float) for v in out)
    assert out == pytest.approx(expected)
    arr = holm(np.array(p))
    assert isinstance(arr, np.ndarray)
    np.testing.assert_allclose(arr, expected)
    keys = ["gn", "loss", "sharp", "pac"]
    d = holm(dict(zip(keys, p)))
    assert isinstance(d, dict) and list(d) == keys
    assert [d[k] for k in keys] == pytest.approx(expected)
    s = holm(pd.Series(p, index=keys, name="p"))
    assert isinstance(s, pd.Series) and list(s.index) == keys and s.name == "p"
    np.testing.assert_allclose(s.to_numpy(), expected)


def test_holm_leaves_nan_out_of_the_family() -> None:
    out = holm([0.01, float("nan"), 0.04])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    s = holm(pd.Series({"a": np.nan, "b": 0.3, "c": 0.6}))
    assert math.isnan(s["a"]) and s["b"] == pytest.approx(0.6) and s["c"] == pytest.approx(0.6)
    assert all(math.isnan(v) for v in holm([np.nan, np.nan]))
    assert holm([]) == []
    assert holm([0.9, 0.3]) == pytest.approx([0.9, 0.6])  # .3*2, then max(.6, .9*1)
    assert holm([0.8, 0.9]) == pytest.approx([1.0, 1.0])  # .8*2 capped at 1, kept monotone
    with pytest.raises(ValueError):
        holm([0.5, 1.5])


# --------------------------------------------------------------------------- separated ranks


@pytest.fixture()
def intervals() -> pd.DataFrame:
    return pd.DataFrame(
        {"estimate": [0.80, 0.75, 0.50, 0.45, np.nan, 0.05],
         "low": [0.70, 0.65, 0.40, 0.35, 0.1, 0.00],
         "high": [0.90, 0.85, 0.60, 0.62, 0.2, 0.10]},
        index=pd.Index(["a", "b", "c", "d", "e", "f"], name="measure"),
    )


def test_separated_ranks_share_a_rank_while_intervals_overlap(intervals: pd.DataFrame) -> None:
    t = intervals
    ranks = separated_ranks(t["estimate"], t["low"], t["high"])
    assert str(ranks.dtype) == "Int64"
    assert list(ranks.index) == list(t.index)
    assert ranks.drop("e").tolist() == [1, 1, 3, 3, 5]  # a, b overlap; c, d below both; f below all
    assert ranks.isna().tolist() == [False, False, False, False, True, False]
    lower = separated_ranks(t["estimate"], t["low"], t["high"], higher_is_better=False)
    assert lower.drop("e").tolist() == [4, 4, 2, 2, 1]  # f below all, c and d above f only
    # bounds in another order are aligned on the index
    again = separated_ranks(t["estimate"], t["low"][::-1], t["high"].sort_values())
    pd.testing.assert_series_equal(again, ranks)
    with pytest.raises(ValueError):
        separated_ranks(t["estimate"], t["high"], t["low"])  # low > high
    with pytest.raises(ValueError):
        separated_ranks(t["estimate"], t["low"].rename(lambda k: k + "x"), t["high"])


def test_rank_text_words_ties_and_totals(intervals: pd.DataFrame) -> None:
    t = intervals
    ranks = separated_ranks(t["estimate"], t["low"], t["high"])
    assert rank_text("a", ranks) == "#1 of 5 (tied with 1 other)"
    assert rank_text("d", ranks) == "#3 of 5 (tied with 1 other)"
    assert rank_text("f", ranks) == "#5 of 5"
    assert rank_text("e", ranks) == "unranked"
    wide = pd.Series([1, 1, 1, 1, 2], index=list("pqrst"), dtype="Int64")
    assert rank_text("p", wide) == "#1 of 5 (tied with 3 others)"
    with pytest.raises(KeyError):
        rank_text("zz", ranks)
