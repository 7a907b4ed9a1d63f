"""Tests for gnsel.analysis: rank correlations, granulated Kendall, CMI, sign error, CIs, plots."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gnsel.analysis import (
    CI,
    Score,
    bootstrap_ci,
    combine_epoch_scores,
    conditional_mutual_information,
    granulated_kendall,
    hoeffding_threshold,
    hoeffding_weight,
    kendall,
    per_epoch,
    sign_error,
    spearman,
)


def _grid(values: dict[str, list], seeds: int = 1) -> pd.DataFrame:
    """Complete grid, one row per (config, seed)."""
    rows = [dict(zip(values, combo), seed=s)
            for combo in itertools.product(*values.values()) for s in range(seeds)]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- kendall / spearman


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kendall_spearman_match_scipy_with_ties_and_nan(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, size=80).astype(float)        # many ties
    y = x + rng.integers(-3, 4, size=80)                  # ties and correlation
    x[[3, 17]] = np.nan
    y[[17, 40, 41]] = np.nan
    keep = ~(np.isnan(x) | np.isnan(y))
    k, s = kendall(x, y), spearman(x, y)
    ref_k = stats.kendalltau(x[keep], y[keep])
    ref_s = stats.spearmanr(x[keep], y[keep])
    assert isinstance(k, Score) and k.n == s.n == int(keep.sum()) == 76
    assert k.value == pytest.approx(ref_k.statistic, abs=1e-12)
    assert k.p_value == pytest.approx(ref_k.pvalue, rel=1e-9)
    assert s.value == pytest.approx(ref_s.statistic, abs=1e-12)
    assert s.p_value == pytest.approx(ref_s.pvalue, rel=1e-9)


def test_rank_correlation_degenerate_inputs() -> None:
    assert np.isnan(kendall([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]).value)
    assert np.isnan(spearman([1.0, np.nan], [2.0, 3.0]).value)
    assert kendall([1.0, np.nan], [2.0, 3.0]).n == 1
    assert float(kendall([1, 2, 3], [3, 2, 1])) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        kendall([1, 2], [1, 2, 3])


# --------------------------------------------------------------------------- granulated Kendall


def test_granulated_monotone_and_antimonotone() -> None:
    df = _grid({"A": [0, 1, 2, 3], "B": [0, 1, 2]})
    df["gap"] = df.A + df.B
    df["mu"] = df.A - df.B            # agrees with the gap along A, disagrees along B
    res = granulated_kendall(df, "mu", "gap", ["A", "B"])
    assert res.psi == {"A": pytest.approx(1.0), "B": pytest.approx(-1.0)}
    assert res.value == pytest.approx(0.0) and res.n_defined == 2
    assert res.n_groups == {"A": 3, "B": 4} and res.n_skipped == {"A": 0, "B": 0}
    assert res.n_pairs == {"A": 3 * 6, "B": 4 * 3}
    frame = res.to_frame()
    assert list(frame.index) == ["A", "B"] and frame.loc["B", "psi"] == pytest.approx(-1.0)


def test_granulated_ties_skips_and_tau_variants() -> None:
    # one group along A (B=0) with a measure tie: mu=[1,1,2], gap=[1,2,3]
    df = pd.DataFrame({"A": [0, 1, 2, 0], "B": [0, 0, 0, 1],
                       "mu": [1.0, 1.0, 2.0, 5.0], "gap": [1.0, 2.0, 3.0, 0.0]})
    jiang = granulated_kendall(df, "mu", "gap", ["A", "B"])
    # pairs: tie -> 0, then +1, +1 => plain pairwise sign average 2/3
    assert jiang.psi["A"] == pytest.approx(2 / 3)
    assert jiang.n_groups["A"] == 1 and jiang.n_skipped["A"] == 1     # the B=1 singleton
    # along B: group A=0 holds rows 0 and 3: gap 1 -> 0, mu 1 -> 5 => -1; A=1, A=2 singletons
    assert jiang.psi["B"] == pytest.approx(-1.0) and jiang.n_skipped["B"] == 2
    assert jiang.value == pytest.approx((2 / 3 - 1) / 2)
    tau_b = granulated_kendall(df, "mu", "gap", ["A", "B"], tau="b")
    assert tau_b.psi["A"] == pytest.approx(stats.kendalltau([1, 1, 2], [1, 2, 3]).statistic)
    # replicates of one config do not make a group that varies A
    rep = pd.DataFrame({"A": [0, 0], "B": [0, 0], "mu": [1.0, 2.0], "gap": [1.0, 2.0]})
    out = granulated_kendall(rep, "mu", "gap", ["A", "B"])
    assert np.isnan(out.psi["A"]) and np.isnan(out.value) and out.n_defined == 0


def test_granulated_drops_nan_rows() -> None:
    df = _grid({"A": [0, 1, 2], "B": [0, 1]})
    df["gap"] = df.A + df.B
    df["mu"] = df.gap.astype(float)
    df.loc[0, "mu"] = np.nan
    res = granulated_kendall(df, "mu", "gap", ["A", "B"])
    assert res.value == pytest.approx(1.0)
    assert res.n_pairs["A"] == 1 + 3                     # group B=0 lost a model


# --------------------------------------------------------------------------- CMI


def _cmi_frame(seed: int = 0, seeds: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = _grid({"A": [0, 1, 2, 3, 4], "B": [0, 1, 2, 3], "C": [0, 1, 2, 3]}, seeds=seeds)
    df["gap"] = 1.0 * df.A + 0.3 * df.B + 0.1 * df.C + 0.2 * rng.standard_normal(len(df))
    return df


def test_cmi_measure_equal_to_gap_is_one() -> None:
    df = _cmi_frame()
    res = conditional_mutual_information(df, "gap", "gap", ["A", "B", "C"])
    assert res.value == pytest.approx(1.0, abs=1e-9)
    assert len(res.per_subset) == 1 + 3 + 3            # |S| = 0, 1, 2
    assert res.n_models == len(df) and res.n_pairs == len(df) * (len(df) - 1)
    assert set(res.to_frame()["k"]) == {0, 1, 2}


def test_cmi_independent_measure_is_near_zero() -> None:
    df = _cmi_frame()
    df["noise"] = np.random.default_rng(5).standard_normal(len(df))
    res = conditional_mutual_information(df, "noise", "gap", ["A", "B", "C"])
    assert 0.0 <= res.value < 0.02
    assert all(v < 0.1 for v in res.per_subset.values())


def test_cmi_measure_explained_by_hparam_is_low_once_conditioned() -> None:
    df = _cmi_frame()
    df["mu"] = 2.0 * df.A + 0.01 * np.random.default_rng(3).standard_normal(len(df))
    res = conditional_mutual_information(df, "mu", "gap", ["A", "B", "C"])
    assert res.per_subset[()] > 0.3                     # correlated unconditionally
    assert res.per_subset[("A",)] < 0.1                 # nothing left once A is known
    assert res.value < 0.1 and "A" in res.argmin
    constant = conditional_mutual_information(df.assign(c=1.0), "c", "gap", ["A", "B", "C"])
    assert constant.value == pytest.approx(0.0, abs=1e-12)


def _kit_reference(df: pd.DataFrame, mu: str, gap: str, hps: list[str]) -> float:
    """Loop transcription of the documented kit rules (self-pairs, strict >, |S|=2, mean ratio)."""
    best = np.inf
    rows = list(df[[mu, gap, *hps]].itertuples(index=False))
    for h1, h2 in itertools.permutations(range(len(hps)), 2):
        v1, v2 = sorted(df[hps[h1]].unique()), sorted(df[hps[h2]].unique())
        cells = {key: np.zeros((2, 2)) for key in itertools.product(v1, v1, v2, v2)}
        for r, s in itertools.product(rows, rows):
            key = (r[2 + h1], s[2 + h1], r[2 + h2], s[2 + h2])
            cells[key][0 if r[1] > s[1] else 1, 0 if r[0] > s[0] else 1] += 1
        mis, hs = [], []
        for t in cells.values():
            p = t / t.sum()
            pg, pm = p.sum(1), p.sum(0)
            mis.append(sum(p[a, b] * np.log2(p[a, b] / (pg[a] * pm[b]))
                           for a in range(2) for b in range(2) if p[a, b] > 0))
            hs.append(-np.sum(pg * np.log2(pg + 1e-12)))
        best = min(best, np.mean(mis) / np.mean(hs))
    return best


def test_cmi_pgdl_kit_quirks_reproduce_the_kit_rules() -> None:
    rng = np.random.default_rng(7)
    df = _grid({"a": [1, 2, 3], "b": [5, 7], "c": [0, 4]})
    df["gap"] = np.round(0.1 * df.a + 0.05 * df.b * rng.random(len(df)), 2)
    df["mu"] = np.round(df.gap + 0.1 * rng.standard_normal(len(df)), 1)   # ties on purpose
    res = conditional_mutual_information(df, "mu", "gap", ["a", "b", "c"], pgdl_kit_quirks=True)
    assert res.quirks and set(res.per_subset) == {("a", "b"), ("a", "c"), ("b", "c")}
    assert res.value == pytest.approx(_kit_reference(df, "mu", "gap", ["a", "b", "c"]), abs=1e-12)
    assert res.n_pairs == len(df) ** 2                   # self-pairs included
    exact = conditional_mutual_information(df, "gap", "gap", ["a", "b", "c"], pgdl_kit_quirks=True)
    assert exact.value == pytest.approx(1.0, abs=1e-9)


def test_cmi_pgdl_kit_quirks_need_a_complete_unique_grid() -> None:
    df = _grid({"a": [1, 2], "b": [1, 2]})
    df["gap"] = [0.1, 0.2, 0.3, 0.4]
    with pytest.raises(ValueError, match="complete grid"):
        conditional_mutual_information(df.iloc[:3], "gap", "gap", ["a", "b"], pgdl_kit_quirks=True)
    with pytest.raises(ValueError, match="complete grid"):
        conditional_mutual_information(pd.concat([df, df]), "gap", "gap", ["a", "b"],
                                       pgdl_kit_quirks=True)
    with pytest.raises(ValueError, match=">= 2"):
        conditional_mutual_information(df, "gap", "gap", ["a"], pgdl_kit_quirks=True)


# --------------------------------------------------------------------------- sign error


def _coupled() -> pd.DataFrame:
    """2x2 grid: lr envs agree at w=16 and disagree at w=32; width envs agree at lr=.1, not at .01."""
    return pd.DataFrame({
        "lr": [0.1, 0.01, 0.1, 0.01],
        "w": [16, 16, 32, 32],
        "gap": [0.10, 0.30, 0.20, 0.40],
        "mu": [1.0, 3.0, 2.0, 1.5],
    })


def test_sign_error_hand_built_environments() -> None:
    res = sign_error(_coupled(), "mu", "gap", ["lr", "w"], n_test=10_000)
    env = res.environments.set_index(["family", "value_a", "value_b"]).sort_index()
    assert len(env) == 4 and env["kept"].all()
    lr = res.environments[res.environments.family == "lr"].sort_values("sign_error")
    assert lr["sign_error"].tolist() == [0.0, 1.0]
    assert res.per_family.loc["lr", "mean"] == 0.5 and res.per_family.loc["w", "max"] == 1.0
    assert res.mean == 0.5 and res.max == 1.0 and res.value == 0.5
    assert res.quantiles == {0.5: 0.5, 0.9: pytest.approx(1.0)}
    assert res.worst_family == "lr" and res.n_dropped == 0
    # soft weight = (w_H - 0.5)_+ with w_H ~ 1 for a 0.1 to 0.2 gap difference at n_test=1e4
    assert np.allclose(res.environments["weight"], 0.5)


def test_sign_error_measure_ties_count_half() -> None:
    df = _coupled().assign(mu=1.0)
    res = sign_error(df, "mu", "gap", ["lr", "w"], n_test=10_000)
    assert res.mean == 0.5 and res.max == 0.5


def test_sign_error_hoeffding_filter_excludes_tiny_gap_differences() -> None:
    n_test, delta = 10_000, 0.5
    eps = hoeffding_threshold(n_test, delta)
    assert hoeffding_weight(eps, n_test) == pytest.approx(1 - delta)
    assert 0.019 < eps < 0.02
    base = _coupled()
    # a third lr whose gap differs from lr=0.1 by far less than eps; its measure disagrees
    tiny = pd.DataFrame({"lr": [0.05, 0.05], "w": [16, 32], "gap": [0.101, 0.201], "mu": [0.0, 5.0]})
    df = pd.concat([base, tiny], ignore_index=True)
    for weighting in ("soft", "hard"):
        res = sign_error(df, "mu", "gap", ["lr", "w"], n_test=n_test, delta=delta, weighting=weighting)
        env = res.environments
        tiny_envs = env[(env.family == "lr") & ((env.value_a == 0.05) | (env.value_b == 0.05))
                        & (env[["value_a", "value_b"]].isin([0.1]).any(axis=1))]
        assert len(tiny_envs) == 2 and not tiny_envs["kept"].any()
        assert (tiny_envs["weight"] == 0).all()
        assert res.n_dropped == 2
    unfiltered = sign_error(df, "mu", "gap", ["lr", "w"], weighting="none")
    assert unfiltered.n_dropped == 0 and len(unfiltered.environments) == len(env)
    # w=16: mu 0 < 1 while gap 0.101 > 0.100 -> error 1; w=32: mu 5 > 2, gap .201 > .200 -> 0
    envs = unfiltered.environments
    pair = envs[envs[["value_a", "value_b"]].apply(lambda r: {r.iloc[0], r.iloc[1]} == {0.1, 0.05}, axis=1)]
    assert sorted(pair["sign_error"]) == [0.0, 1.0]
    assert unfiltered.mean > sign_error(df, "mu", "gap", ["lr", "w"], n_test=n_test).mean


def test_sign_error_seeds_ess_and_coupling() -> None:
    rng = np.random.default_rng(0)
    df = pd.concat([_coupled().assign(seed=s, gap=lambda d: d.gap + 0.001 * rng.standard_normal(4))
                    for s in range(3)], ignore_index=True)
    res = sign_error(df, "mu", "gap", ["lr", "w"], n_test=10_000)
    assert (res.environments["n_pairs"] == 9).all()                      # 3 x 3 seeds crossed
    assert res.environments["ess"].between(8.9, 9.0 + 1e-9).all()
    assert res.mean == pytest.approx(0.5)
    strict = sign_error(df, "mu", "gap", ["lr", "w"], n_test=10_000, min_ess=12)
    assert np.isnan(strict.mean) and strict.n_dropped == 4 and strict.worst_family is None
    coupled = sign_error(df, "mu", "gap", ["lr", "w"], n_test=10_000, couple_on="seed")
    assert (coupled.environments["n_pairs"] == 3).all()


def test_sign_error_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="n_test"):
        sign_error(_coupled(), "mu", "gap", ["lr", "w"])
    with pytest.warns(UserWarning, match="bounded"):
        sign_error(_coupled().assign(gap=lambda d: 100 * d.gap), "mu", "gap", ["lr", "w"], n_test=100)


# --------------------------------------------------------------------------- bootstrap


def _correlated(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    return pd.DataFrame({"mu": x, "gap": x + rng.standard_normal(n)})


def test_bootstrap_ci_contains_estimate_and_shrinks() -> None:
    fn = lambda d: kendall(d["mu"], d["gap"])  # noqa: E731
    small = bootstrap_ci(fn, _correlated(40), n_boot=300, seed=1)
    large = bootstrap_ci(fn, _correlated(400), n_boot=300, seed=1)
    for ci in (small, large):
        assert isinstance(ci, CI) and ci.low <= ci.estimate <= ci.high
    assert (large.high - large.low) < 0.6 * (small.high - small.low)
    est, low, high = bootstrap_ci(fn, _correlated(40), n_boot=300, seed=1)
    assert (est, low, high) == tuple(small)                              # seeded


def test_bootstrap_ci_by_groups_on_a_structured_score() -> None:
    df = _grid({"A": [0, 1, 2], "B": [0, 1]}, seeds=4)
    rng = np.random.default_rng(0)
    df["gap"] = df.A + df.B + 0.5 * rng.standard_normal(len(df))
    df["mu"] = df.gap + 0.5 * rng.standard_normal(len(df))
    ci = bootstrap_ci(lambda d: granulated_kendall(d, "mu", "gap", ["A", "B"]), df,
                      n_boot=100, groups="seed")
    assert -1.0 <= ci.low <= ci.estimate <= ci.high <= 1.0


# --------------------------------------------------------------------------- per epoch + plots


def _epochs(n_runs: int = 20, n_epochs: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frames = []
    for e in range(1, n_epochs + 1):
        gap = rng.random(n_runs)
        frames.append(pd.DataFrame({"run": range(n_runs), "epoch": e, "gap": gap,
                                    "gn": gap * e + rng.standard_normal(n_runs),
                                    "width": np.tile([16, 32], n_runs // 2)}))
    return pd.concat(frames, ignore_index=True)


def test_per_epoch_shapes() -> None:
    table = _epochs()
    fn = lambda d: kendall(d["gn"], d["gap"])  # noqa: E731
    plain = per_epoch(table, fn)
    assert plain.shape == (3, 2) and list(plain.columns) == ["score", "n"]
    assert list(plain.index) == [1, 2, 3] and (plain["n"] == 20).all()
    assert plain.loc[2, "score"] == pytest.approx(fn(table[table.epoch == 2]).value)
    with_ci = per_epoch(table, fn, epochs=[3, 1, 9], ci=True, n_boot=50)
    assert with_ci.shape == (3, 4) and list(with_ci.index) == [3, 1, 9]
    assert with_ci.loc[9, "n"] == 0 and np.isnan(with_ci.loc[9, "score"])
    assert (with_ci.loc[[1, 3], "low"] <= with_ci.loc[[1, 3], "high"]).all()
    wide = combine_epoch_scores({"gn": with_ci, "plain": plain})
    assert {"gn", "gn_low", "gn_high", "plain"} <= set(wide.columns)


def _is_png(path: Path) -> bool:
    return path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_write_png(tmp_path: Path) -> None:
    from gnsel.analysis.plots import scatter_measure_vs_gap, score_over_epochs

    table = _epochs()
    last = table[table.epoch == 3]
    assert _is_png(scatter_measure_vs_gap(last, "gn", "gap", tmp_path / "a.png"))
    assert _is_png(scatter_measure_vs_gap(last, "gn", "gap", tmp_path / "b" / "c.png", hue="width"))
    assert _is_png(scatter_measure_vs_gap(last, "gn", "gap", tmp_path / "d.png", hue="run"))
    fn = lambda d: kendall(d["gn"], d["gap"])  # noqa: E731
    frames = {"gn": per_epoch(table, fn, ci=True, n_boot=30),
              "neg": per_epoch(table, lambda d: -fn(d).value)}
    assert _is_png(score_over_epochs(frames, tmp_path / "e.png", "Kendall over epochs"))
    assert _is_png(score_over_epochs(combine_epoch_scores(frames), tmp_path / "f.png", "wide"))
    assert _is_png(score_over_epochs(frames["gn"], tmp_path / "g.png", "single"))
