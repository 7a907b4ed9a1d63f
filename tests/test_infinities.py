"""Non-finite measures and targets in every scorer of gnsel.analysis, one rule (package docstring):
NaN is missing (dropped, counted in ``n_nan``); ``+inf``/``-inf`` are ordered values, above/below every
finite value, equal infinities tied. Hence each score equals the score with the infinities replaced by
finite values beyond the others; hand-computed values where the old arithmetic went wrong."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest

from gnsel.analysis import (
    bootstrap_ci,
    cluster_bootstrap,
    conditional_mutual_information,
    granulated_kendall,
    kendall,
    partial_kendall,
    quantile_strata,
    sign_error,
    spearman,
    stratified_kendall,
)

INF = np.inf


def _replaced(v: np.ndarray) -> np.ndarray:
    """``v`` with +inf -> a value above every finite one, -inf -> below (equal infinities stay equal)."""
    v = np.asarray(v, dtype=np.float64).copy()
    finite = v[np.isfinite(v)]
    top, bottom = (finite.max(), finite.min()) if finite.size else (0.0, 0.0)
    v[v == INF] = top + 1.0
    v[v == -INF] = bottom - 1.0
    return v


def _with_infinities(rng: np.random.Generator, n: int, share: float = 0.3) -> np.ndarray:
    v = rng.integers(0, 5, size=n).astype(np.float64)  # ties on purpose
    v[rng.random(n) < share / 2] = INF
    v[rng.random(n) < share / 2] = -INF
    return v


def _grid(seeds: int = 2, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [{"a": a, "b": b, "c": c, "seed": s}
            for a, b, c in itertools.product([0, 1, 2], [0, 1], [0.1, 0.2]) for s in range(seeds)]
    df = pd.DataFrame(rows)
    df["m"] = _with_infinities(rng, len(df))
    df["g"] = _with_infinities(rng, len(df))
    return df


def _same(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["m"], out["g"] = _replaced(df["m"]), _replaced(df["g"])
    return out


# ------------------------------------------------------------------------------- rank correlations


def test_kendall_and_spearman_order_infinities() -> None:
    assert kendall([1, 2, INF], [1, 2, 3]).value == 1.0
    assert spearman([1, 2, INF], [1, 2, 3]).value == 1.0
    assert kendall([-INF, 2, INF], [3, 2, 1]).value == -1.0
    # equal infinities tie: tau-b of (1, 9, 9) vs (1, 2, 3) = 2 / sqrt(2 * 3)
    assert kendall([1, INF, INF], [1, 2, 3]).value == pytest.approx(2 / np.sqrt(6))
    assert np.isnan(kendall([INF, INF, INF], [1, 2, 3]).value)  # a constant measure


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rank_correlations_equal_the_substituted_values(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y = _with_infinities(rng, 40), _with_infinities(rng, 40)
    for fn in (kendall, spearman):
        got, want = fn(x, y), fn(_replaced(x), _replaced(y))
        assert got.value == pytest.approx(want.value, abs=1e-12)
        assert got.p_value == pytest.approx(want.p_value, rel=1e-9)
        assert got.n == want.n == 40


def test_nan_pairs_are_dropped_and_counted() -> None:
    res = kendall([1, np.nan, 3, INF], [1, 2, np.nan, 4])
    assert res.n == 2 and res.n_nan == 2 and res.value == 1.0


def test_partial_and_stratified_kendall_order_infinities() -> None:
    rng = np.random.default_rng(3)
    x, y, z = (_with_infinities(rng, 30) for _ in range(3))
    assert partial_kendall(x, y, z) == pytest.approx(partial_kendall(_replaced(x), _replaced(y), _replaced(z)))
    strata = quantile_strata(z, 3)
    assert np.array_equal(strata, quantile_strata(_replaced(z), 3))
    assert stratified_kendall(x, y, strata) == pytest.approx(stratified_kendall(_replaced(x), _replaced(y), strata))


def test_quantile_strata_bin_infinities_by_order() -> None:
    # the median of (1, 2, 3, inf, inf) is 3: interpolating between infinities gave NaN edges, one stratum
    assert quantile_strata([1, 2, 3, INF, INF], 2).tolist() == [0, 0, 0, 1, 1]
    assert quantile_strata([-INF, 2, 3, 4, np.nan], 2).tolist() == [0, 0, 1, 1, -1]
    assert quantile_strata([-INF, -INF, INF, INF], 2).tolist() == [0, 0, 1, 1]


# ---------------------------------------------------------------------------------- granulated


def _square() -> pd.DataFrame:
    """A 2 x 2 grid; three of the four measures are +inf (ties among them)."""
    return pd.DataFrame({"a": [0, 1, 0, 1], "b": [0, 0, 1, 1],
                         "m": [1.0, INF, INF, INF], "g": [1.0, 2.0, 3.0, 4.0]})


def test_granulated_kendall_keeps_every_axis() -> None:
    res = granulated_kendall(_square(), "m", "g", ["a", "b"])
    # psi_a: group b=0 (1 < inf, 1 < 2): +1; group b=1 (inf = inf): 0 -> 1/2; psi_b alike
    assert res.psi == {"a": 0.5, "b": 0.5} and res.n_defined == 2 and res.value == 0.5
    tau_b = granulated_kendall(_square(), "m", "g", ["a", "b"], tau="b")
    assert tau_b.psi == {"a": 1.0, "b": 1.0}  # the tied groups have no tau-b and are skipped


def test_granulated_kendall_equals_the_substituted_values() -> None:
    df = _grid()
    for tau in ("jiang", "b"):
        got = granulated_kendall(df, "m", "g", ["a", "b", "c"], tau=tau)
        want = granulated_kendall(_same(df), "m", "g", ["a", "b", "c"], tau=tau)
        assert got.psi == pytest.approx(want.psi, nan_ok=True) and got.n_pairs == want.n_pairs
        assert got.value == pytest.approx(want.value)


def test_granulated_kendall_counts_nan_rows() -> None:
    df = _square()
    df.loc[0, "g"] = np.nan
    assert granulated_kendall(df, "m", "g", ["a", "b"]).n_nan == 1


# ------------------------------------------------------------------------------------------- CMI


def test_cmi_by_hand_with_tied_infinities() -> None:
    # mu = (1, inf, inf), g = (1, 2, 3), S empty: V_mu = -, + or tie (prob 1/3, then V_g is a coin):
    # H(V_g) = 1, H(V_g | V_mu) = 1/3, so I / H = 2/3 (the old arithmetic raised in np.bincount)
    df = pd.DataFrame({"m": [1.0, INF, INF], "g": [1.0, 2.0, 3.0], "h": [0, 1, 2]})
    res = conditional_mutual_information(df, "m", "g", ["h"], ks=(0,))
    assert res.value == pytest.approx(2 / 3)


def test_cmi_equals_the_substituted_values() -> None:
    df = _grid()
    got = conditional_mutual_information(df, "m", "g", ["a", "b", "c"])
    want = conditional_mutual_information(_same(df), "m", "g", ["a", "b", "c"])
    assert got.value == pytest.approx(want.value) and got.argmin == want.argmin
    assert got.per_subset == pytest.approx(want.per_subset, nan_ok=True)
    kit = _grid(seeds=1)
    got = conditional_mutual_information(kit, "m", "g", ["a", "b", "c"], pgdl_kit_quirks=True)
    want = conditional_mutual_information(_same(kit), "m", "g", ["a", "b", "c"], pgdl_kit_quirks=True)
    assert got.per_subset == pytest.approx(want.per_subset, nan_ok=True)


def test_cmi_counts_nan_rows() -> None:
    df = _grid()
    df.loc[[0, 5], "m"] = np.nan
    res = conditional_mutual_information(df, "m", "g", ["a", "b", "c"])
    assert res.n_nan == 2 and res.n_models == len(df) - 2


# ------------------------------------------------------------------------------------ sign error


def _env(m: list[float], g: list[float]) -> pd.DataFrame:
    """One environment: two configurations differing in ``h``, one run each."""
    return pd.DataFrame({"h": [0, 1], "m": m, "g": g})


def test_sign_error_of_an_environment_with_both_measures_infinite_is_a_tie() -> None:
    res = sign_error(_env([INF, INF], [0.1, 0.3]), "m", "g", ["h"], weighting="none")
    assert res.mean == 0.5  # a tie in the measure: SE = 1/2 (NaN, skipped by pandas' sum, scored 0)
    res = sign_error(_env([INF, INF], [0.1, 0.3]), "m", "g", ["h"], n_test=10_000)
    assert res.mean == 0.5 and res.n_dropped == 0


def test_sign_error_with_infinite_targets() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "target exceeds 1": infinities do
        both = sign_error(_env([1.0, 2.0], [INF, INF]), "m", "g", ["h"], n_test=10_000)
        one = sign_error(_env([1.0, 2.0], [0.1, INF]), "m", "g", ["h"], n_test=10_000)
        minus = sign_error(_env([-INF, 2.0], [-INF, 0.2]), "m", "g", ["h"], n_test=10_000)
    # equal infinite targets differ by 0: weight 0, the environment is not kept
    assert np.isnan(both.mean) and both.n_dropped == 1
    assert both.environments.loc[0, "weight"] == 0.0
    # an infinite difference is certain: Hoeffding weight 1 (soft: 1 - 0.5), concordant: SE 0
    assert one.mean == 0.0 and one.environments.loc[0, "weight"] == 0.5
    assert minus.mean == 0.0
    unweighted = sign_error(_env([1.0, 2.0], [INF, INF]), "m", "g", ["h"], weighting="none")
    assert unweighted.mean == 0.5  # a tie in the target


def test_sign_error_equals_the_substituted_values() -> None:
    df = _grid()
    for weighting in ("none", "hard", "soft"):
        kw = {} if weighting == "none" else {"n_test": 50}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            got = sign_error(df, "m", "g", ["a", "b", "c"], weighting=weighting, **kw)
        kept = got.environments[got.environments["kept"].astype(bool)]
        assert kept["sign_error"].between(0.0, 1.0).all()  # no NaN among the kept environments
        if weighting == "none":  # unweighted, only signs count; Hoeffding weights see the sizes too
            want = sign_error(_same(df), "m", "g", ["a", "b", "c"], weighting=weighting)
            assert len(kept) == len(got.environments)
            assert got.mean == pytest.approx(want.mean) and got.max == pytest.approx(want.max)


def test_sign_error_counts_nan_rows() -> None:
    df = _env([1.0, 2.0], [0.1, 0.3])
    df.loc[2] = [1, np.nan, 0.5]
    assert sign_error(df, "m", "g", ["h"], weighting="none").n_nan == 1


# ------------------------------------------------------------------------------------- resampling


def test_bootstraps_of_scores_with_infinities_equal_the_substituted_values() -> None:
    df = _grid()
    score = lambda d: kendall(d["m"], d["g"])  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        got = bootstrap_ci(score, df, n_boot=60, seed=1)
        want = bootstrap_ci(score, _same(df), n_boot=60, seed=1)
    assert got == pytest.approx(want)
    got = cluster_bootstrap(df, lambda d: kendall(d["m"], d["g"]).value, group="a", n_boot=60, seed=2)
    want = cluster_bootstrap(_same(df), lambda d: kendall(d["m"], d["g"]).value, group="a", n_boot=60, seed=2)
    assert (got.low, got.high, got.n_failed) == pytest.approx((want.low, want.high, want.n_failed))


def test_an_infinite_statistic_is_a_failed_resample() -> None:
    df = pd.DataFrame({"x": np.arange(20.0)})
    res = cluster_bootstrap(df, lambda d: INF if d["x"].iloc[0] < 5 else float(d["x"].mean()),
                            group=None, n_boot=50, seed=0)
    assert res.n_failed > 0 and res.samples.size == 50 - res.n_failed
    assert np.isfinite(res.samples).all()
