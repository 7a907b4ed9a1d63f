"""Per-algorithm effects of an objective with bootstrap intervals over the zoo's configurations (seeds nested):
resampling a lookup, determinism, and the hpo part's new tables on the tiny study."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from study_tiny import TINY

from gnsel.progress import Recorder
from gnsel.study import run_study
from gnsel.study.hpo_effects import (
    BOOT_PARAM,
    bootstrap_draws,
    effect_samples,
    resample_lookup,
)
from gnsel.tune.lookup import Lookup
from gnsel.tune.objectives import parse_objective

pytestmark = pytest.mark.usefixtures("isolated_data_root", "one_torch_thread")


def _lookup(n: int = 10, epochs: int = 3, seed: int = 0) -> Lookup:
    """Two parameters, 1 to 3 seeds per configuration (NaN-padded), the metrics a replay needs."""
    rng = np.random.default_rng(seed)
    n_rep = rng.integers(1, 4, size=n)
    shape = (n, 3, epochs + 1)
    val_loss = rng.uniform(0.2, 1.5, shape)
    metrics = {"val_loss": val_loss, "val_acc": 1 - val_loss / 2, "gn_fc": rng.uniform(0, 3, shape),
               "test_acc": 1 - val_loss / 2 + rng.normal(0, 0.05, shape), "train_seconds": np.ones(shape),
               "eval_seconds": np.full(shape, 0.1), "measure_seconds": np.full(shape, 0.2)}  # fmt: skip
    for arr in metrics.values():
        for c in range(n):
            arr[c, n_rep[c]:] = np.nan
    configs = [{"a": str(c % 2), "b": str(c // 2)} for c in range(n)]
    params = {"a": ["0", "1"], "b": [str(i) for i in range((n + 1) // 2)]}
    return Lookup(params=params, configs=configs, index={(c["a"], c["b"]): i for i, c in enumerate(configs)},
                  epochs=epochs, metrics=metrics, n_replicates=n_rep,
                  run_ids=[[f"r{c}-{r}" for r in range(n_rep[c])] for c in range(n)])  # fmt: skip


def test_a_resampled_lookup_keeps_shapes_and_its_labels_distinct():
    lk = _lookup()
    for draw in bootstrap_draws(lk, 5, seed=3):
        rs = resample_lookup(lk, draw)
        cfg, reps = draw
        assert len(rs.configs) == len(lk.configs) and rs.epochs == lk.epochs
        assert all(rs.metrics[k].shape == v.shape for k, v in lk.metrics.items())
        labels = [rs.label(c) for c in range(len(rs.configs))]
        assert len(set(labels)) == len(labels)  # a duplicated configuration is a distinct point
        assert len(rs.index) == len(rs.configs) and all(rs.index[tuple(c[p] for p in rs.params)] == i
                                                        for i, c in enumerate(rs.configs))  # fmt: skip
        assert list(rs.params) == [BOOT_PARAM] and rs.params[BOOT_PARAM] == [c[BOOT_PARAM] for c in rs.configs]
        np.testing.assert_array_equal(rs.n_replicates, lk.n_replicates[cfg])
        for i, (c, r) in enumerate(zip(cfg, reps)):
            assert len(r) == lk.n_replicates[c] and r.max() < lk.n_replicates[c]  # seeds drawn within their config
            np.testing.assert_array_equal(rs.metrics["val_loss"][i, : len(r)], lk.metrics["val_loss"][c, r])
            assert np.isnan(rs.metrics["val_loss"][i, len(r):]).all()
            assert rs.run_ids[i] == [lk.run_ids[c][j] for j in r]
            assert rs.configs[i][BOOT_PARAM].startswith(lk.label(c) + " #")


def test_bootstrap_samples_are_deterministic_from_their_seed():
    lk = _lookup(n=8)
    objs = [parse_objective(t) for t in ("val_loss", "gn_fc", "[val_loss, gn_fc]")]
    kw = {"exact_resamples": 40, "replay_resamples": 3, "replay_seeds": 1}
    a = effect_samples(lk, ["grid", "random", "tpe"], objs, 4 * lk.epochs, seed=5, **kw)
    b = effect_samples(lk, ["grid", "random", "tpe"], objs, 4 * lk.epochs, seed=5, **kw)
    pd.testing.assert_frame_equal(a, b)
    c = effect_samples(lk, ["grid", "random", "tpe"], objs, 4 * lk.epochs, seed=6, **kw)
    assert not a["effect"].equals(c["effect"])
    per = a.groupby(["algorithm", "objective"]).size().to_dict()
    assert per[("grid", "gn_fc")] == 40 and per[("grid", "[val_loss, gn_fc]")] == 3 and per[("tpe", "gn_fc")] == 3


@pytest.fixture(scope="module")
def tiny_hpo(tmp_path_factory):
    out = tmp_path_factory.mktemp("hpo-effects")
    hpo = TINY["hpo"]
    spec = {**TINY, "hpo": {**hpo, "live": {**hpo["live"], "algorithms": []},
                            "replay": {**hpo["replay"], "boot_resamples": 4, "boot_exact_resamples": 200}}}  # fmt: skip
    rec = Recorder()
    result = run_study(spec, out, parts="hpo", workers=1, progress=rec)
    return result, rec, out


def test_hpo_effects_has_a_row_per_algorithm_and_objective_with_its_interval(tiny_hpo):
    result, rec, out = tiny_hpo
    eff = pd.read_csv(result.files["tables"] / "hpo_effects.csv")
    assert list(eff.columns) == ["algorithm", "objective", "effect", "low", "high", "resamples", "method"]
    want = {(a, o) for a in ("random", "hyperband") for o in ("gn_full", "val_loss+0.1*gn_fc")}
    assert set(zip(eff["algorithm"], eff["objective"])) == want and len(eff) == len(want)
    ok = eff.dropna(subset=["effect", "low", "high"])
    assert len(ok) and (ok["low"] <= ok["effect"] + 1e-12).all() and (ok["effect"] <= ok["high"] + 1e-12).all()
    assert dict(zip(eff["algorithm"], eff["method"])) == {"random": "exact", "hyperband": "replay"}
    assert set(eff.loc[eff["method"] == "exact", "resamples"]) <= set(range(150, 201))
    samples = pd.read_csv(out / "hpo" / "effect_samples.csv")
    assert list(samples.columns) == ["resample", "algorithm", "objective", "effect"]
    assert {"random", "hyperband", "hyperband-random"} == set(samples["algorithm"])
    gap = pd.read_csv(result.files["tables"] / "hpo_bandit_gap.csv")
    assert list(gap.columns) == ["algorithm", "objective", "gap", "low", "high", "resamples"]
    assert set(zip(gap["algorithm"], gap["objective"])) == {("hyperband-random", "gn_full"),
                                                            ("hyperband-random", "val_loss+0.1*gn_fc")}  # fmt: skip
    labels = [e[1] for e in rec.events if e[0] == "start"]
    assert any("bootstrap, exact" in s for s in labels) and any("bootstrap, replay" in s for s in labels)
    md = result.files["md"].read_text()
    assert "bootstrap over the zoo's" in md and "seed (Monte Carlo) error" in md


def test_selection_tables_of_the_hpo_part(tiny_hpo):
    result, _, _ = tiny_hpo
    exact = pd.read_csv(result.files["tables"] / "selection_exact.csv")
    assert list(exact.columns) == ["algorithm", "objective", "k", "replacement", "expected_test_acc", "replay_mean",
                                   "replay_se", "replay_z"]
    assert set(exact["objective"]) == {"val_loss", "gn_full", "val_loss+0.1*gn_fc"}
    table = pd.read_csv(result.files["tables"] / "selection_table.csv")
    assert list(table.columns) == ["config", "val_loss", "gn_full", "val_loss+0.1*gn_fc", "test_acc"]
    assert len(table) == 12 and exact["k"].max() <= 12
    # the replay's k (its budget over the zoo's epochs) has the replayed random search's mean beside it
    checked = exact.dropna(subset=["replay_mean"])
    assert set(checked["algorithm"]) == {"random"} and checked["replacement"].all()
    assert (checked["expected_test_acc"] - checked["replay_mean"]).abs().max() < 0.3
    z = (checked["replay_mean"] - checked["expected_test_acc"]) / checked["replay_se"]
    assert np.allclose(checked["replay_z"], z, equal_nan=True) and (checked["replay_se"] >= 0).all()
