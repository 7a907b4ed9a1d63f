"""Replay of search algorithms over a finished zoo: lookup, costs, every algorithm, selection, CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from gnsel.cli import app
from gnsel.store import Store
from gnsel.training import TrainConfig
from gnsel.tune.objectives import Objective, Sum, parse_objective, pick_from_front
from gnsel.tune.lookup import Lookup
from gnsel.tune.algorithms import replay_names
from gnsel.tune.replay import parse_objectives, run_algorithm, run_replay, split_objectives
from gnsel.tune.replay_search import Search
from gnsel.zoo import build_zoo, load_grid

TINY = {
    "dataset": "mnist1d",
    "dataset_kwargs": {"num_samples": 1000},
    "models": {"mlp": {"width": [16, 48]}, "cnn1d": {"channels": 4, "depth": 1}},
    "train": {"lr": [0.05, 0.2], "weight_decay": [0.0, 0.0005], "epochs": 4, "probe_size": 32, "n_train": 500,
              "batch_size": 32},
    "seeds": [0],
}
E = 4
MIX = "val_loss;val_loss+0.1*gn_fc;[val_loss, gn_fc]"
ORACLE = Objective((Sum(((-1.0, "test_acc"),), "-test_acc"),), "oracle:-test_acc")  # for testing only


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("replay") / "zoo.sqlite"
    summary = build_zoo(load_grid(TINY).configs, db, workers=1)
    assert summary.done == 12, summary.errors
    return db


@pytest.fixture(scope="module")
def lookup(zoo) -> Lookup:
    return Lookup.from_store(zoo)


@pytest.fixture(scope="module")
def frames(zoo) -> tuple[pd.DataFrame, pd.DataFrame]:
    s = Store(zoo)
    return s.runs_frame(status="done"), s.epochs_frame()


def test_space_is_the_varying_fields_with_the_architecture_as_one(lookup):
    assert list(lookup.params) == ["arch", "lr", "weight_decay"]
    assert lookup.params["arch"] == ["cnn1d(channels=4,depth=1)", "mlp(width=16)", "mlp(width=48)"]
    assert lookup.params["lr"] == ["0.05", "0.2"]
    assert len(lookup.configs) == 12 and lookup.epochs == E
    assert all(n == 1 for n in lookup.n_replicates)


def test_lookup_returns_the_stored_row_and_its_cost(lookup, frames):
    _, epochs = frames
    for c in (0, 7, 11):
        rid = lookup.run_ids[c][0]
        rows = epochs[epochs.run_id == rid].set_index("epoch")
        for b in (1, 3, E):
            got = lookup.row(c, b)
            want = rows.loc[b]
            for k, v in got.items():
                assert v == pytest.approx(float(want[k]), nan_ok=True), k
            done = rows.loc[1:b]
            base = done.train_seconds.sum() + done.eval_seconds.sum()
            assert lookup.cost(c, b, uses_gn=False) == pytest.approx((base, 0.0))
            assert lookup.cost(c, b, uses_gn=True) == pytest.approx(
                (base + done.measure_seconds.sum(), done.measure_seconds.sum()))
    lk_last = Lookup.from_frames(*frames, measure_every_epoch=False)
    r = epochs[epochs.run_id == lk_last.run_ids[2][0]].set_index("epoch")
    want = r.train_seconds.loc[1:3].sum() + r.eval_seconds.loc[3] + r.measure_seconds.loc[3]
    assert lk_last.cost(2, 3, uses_gn=True) == pytest.approx((want, r.measure_seconds.loc[3]))


@pytest.mark.parametrize("algorithm", replay_names())
def test_every_algorithm_runs_end_to_end(lookup, algorithm):
    res = run_replay(lookup, [algorithm], MIX, seeds=2)
    runs = res.runs
    assert len(runs) == 6 and set(runs.objective) == {"val_loss", "val_loss+0.1*gn_fc", "[val_loss, gn_fc]"}
    assert res.budget == 12 * E // 4
    assert (runs.epochs <= res.budget).all() and (runs.evaluations > 0).all()
    assert runs.test_acc.notna().all() and (runs.regret >= 0).all()
    assert (runs.selected_epoch == E).all()  # bandits too: the budget holds a full-budget evaluation
    assert (runs.gn_seconds[runs.objective == "val_loss"] == 0).all()
    assert (runs.gn_seconds[runs.objective != "val_loss"] > 0).all()
    assert runs.front_size[runs.objective == "[val_loss, gn_fc]"].ge(1).all()
    for (_, _, seed), curve in res.curves.groupby(["algorithm", "objective", "seed"]):
        assert curve.epochs.is_monotonic_increasing
    last = res.curves.groupby(["objective", "seed"]).regret.last()
    assert np.allclose(last.sort_index(), runs.set_index(["objective", "seed"]).regret.sort_index())
    s = res.summary
    assert len(s) == 3 and (s.test_acc_low <= s.test_acc).all() and (s.test_acc <= s.test_acc_high).all()


def test_grid_with_the_full_budget_finds_the_best_value(lookup, frames):
    runs_df, epochs = frames
    final = epochs[epochs.epoch == E].set_index("run_id")
    res = run_replay(lookup, ["grid"], "val_loss;val_error", seeds=[0, 5], budget=12 * E)
    for _, r in res.runs.iterrows():
        assert r.evaluations == 12
        if r.objective == "val_loss":
            best = final.val_loss.min()
            assert float(r.selected_value) == pytest.approx(best, rel=1e-5)
            assert r.test_acc == final.test_acc[final.val_loss.idxmin()]
        else:
            best = 1 - final.val_acc.max()
            assert float(r.selected_value) == pytest.approx(best, rel=1e-5)
            assert r.test_acc in set(final.test_acc[final.val_acc == final.val_acc.max()])


def test_oracle_objective_has_zero_regret(lookup):
    res = run_replay(lookup, ["grid", "random", "tpe"], [ORACLE], seeds=2, budget=12 * E)
    grid = res.runs[res.runs.algorithm == "grid"]
    assert (grid.regret == 0).all() and (res.runs.regret >= 0).all()
    assert grid.test_acc.iloc[0] == pytest.approx(res.best_test_acc)


@pytest.mark.parametrize("algorithm", ["random", "tpe", "hyperband", "bohb"])
def test_multi_objective_selection_is_the_documented_pick(lookup, algorithm):
    obj = parse_objective("[val_loss, gn_fc]")
    search = run_algorithm(algorithm, Search(lookup, obj, 24, seed=1, bandit=algorithm in ("hyperband", "bohb")))
    cand = search.candidates()
    assert all(search.records[i].epoch == E for i in cand)
    pick = pick_from_front([search.records[i].values for i in cand])
    assert search.selected is search.records[cand[pick]]


def test_results_are_deterministic_per_seed(lookup):
    cols = ["algorithm", "objective", "seed", "selected", "selected_epoch", "test_acc", "epochs", "seconds"]
    a = run_replay(lookup, ["random", "tpe", "hyperband", "bohb"], "val_loss;[val_loss,gn_fc]", seeds=[3, 4])
    b = run_replay(lookup, ["random", "tpe", "hyperband", "bohb"], "val_loss;[val_loss,gn_fc]", seeds=[4, 3])
    key = ["algorithm", "objective", "seed"]
    pd.testing.assert_frame_equal(a.runs[cols].sort_values(key).reset_index(drop=True),
                                  b.runs[cols].sort_values(key).reset_index(drop=True))
    pd.testing.assert_frame_equal(
        a.curves.sort_values(key + ["evaluation"]).reset_index(drop=True),
        b.curves.sort_values(key + ["evaluation"]).reset_index(drop=True))
    assert not a.runs[a.runs.algorithm == "bohb"].selected.isna().any()


def test_a_configuration_missing_from_the_zoo_is_a_free_failure(frames):
    runs_df, epochs = frames
    holes = Lookup.from_frames(runs_df.iloc[1:], epochs)
    assert len(holes.configs) == 11 and holes.params["arch"][0].startswith("cnn1d")
    res = run_replay(holes, ["random", "hyperband"], "val_loss", seeds=4, budget=10 * E)
    assert res.runs.failed.sum() > 0
    grid_like = res.runs[res.runs.algorithm == "random"]
    assert (grid_like.epochs == grid_like.evaluations * E).all()


def test_several_seeds_average_or_sample(tmp_path):
    store = Store(tmp_path / "zoo.sqlite")
    rows = {}
    for lr in (0.1, 0.2):
        for seed in (0, 1):
            cfg = {"dataset": "mnist1d", "model": "mlp", "model_kwargs": {}, "lr": lr, "epochs": 2, "seed": seed}
            rid = store.register_run(cfg)
            store.claim_run(rid)
            eps = [{"epoch": e, "val_loss": 1.0 + lr + seed + e, "val_acc": 0.5, "test_acc": 0.4 + lr + 0.1 * seed,
                    "gap_acc": 0.0, "gn_fc": 1.0, "train_seconds": float(e > 0) * (1 + seed),
                    "eval_seconds": 0.0, "measure_seconds": 0.5} for e in range(3)]
            store.add_epochs(rid, eps)
            store.finish_run(rid, 1.0)
            rows[(lr, seed)] = eps
    lk = Lookup.from_store(tmp_path / "zoo.sqlite")
    assert list(lk.params) == ["lr"] and list(lk.n_replicates) == [2, 2]
    assert lk.row(0, 2)["val_loss"] == pytest.approx(1.1 + 0.5 + 2)
    assert lk.cost(0, 2, uses_gn=False) == pytest.approx((3.0, 0.0))  # mean of 2 and 4 seconds
    sampled = Lookup.from_store(tmp_path / "zoo.sqlite", seed_mode="sample")
    a = run_replay(sampled, ["grid"], "val_loss", seeds=3, budget=4)
    b = run_replay(sampled, ["grid"], "val_loss", seeds=3, budget=4)
    pd.testing.assert_frame_equal(a.runs, b.runs)
    assert set(a.runs.seconds) <= {4.0, 6.0, 8.0}  # two evaluations, each with one seed's cost (2 or 4 s)
    assert len(set(a.runs.seconds)) > 1  # the seeds draw different replicates
    assert all(np.isclose(v, 0.55) or np.isclose(v, 0.65) for v in a.runs.test_acc)  # seed means


def test_bad_names_fail_before_anything_runs(tmp_path):
    missing = tmp_path / "nope.sqlite"
    with pytest.raises(ValueError, match="choices: grid, random, tpe, hyperband, bohb"):
        run_replay(missing, ["grid", "anneal"], "val_loss")
    with pytest.raises(ValueError, match="val_loss"):
        run_replay(missing, ["grid"], "val_los")
    assert not missing.exists()
    assert split_objectives("val_loss,gn_fc,[val_loss, gn_fc],val_loss+0.1*gn_fc") == [
        "val_loss", "gn_fc", "[val_loss, gn_fc]", "val_loss+0.1*gn_fc"]
    assert [o.text for o in parse_objectives("gn_full;[val_loss,gn_fc]")] == ["gn_full", "[val_loss,gn_fc]"]


def test_cli_rejects_bad_names_and_writes_its_files(zoo, tmp_path):
    runner = CliRunner(env={"COLUMNS": "200"})
    bad = runner.invoke(app, ["hpo-bench", "--store", str(tmp_path / "none.sqlite"), "--algorithms", "grid,smac"])
    assert bad.exit_code == 2 and "smac" in bad.output and "bohb" in bad.output
    bad = runner.invoke(app, ["hpo-bench", "--store", str(zoo), "--objectives", "val_loss,[val_loss"])
    assert bad.exit_code == 2 and "bracketed" in bad.output
    out = tmp_path / "bench"
    res = runner.invoke(app, ["hpo-bench", "--store", str(zoo), "--algorithms", "grid,hyperband",
                                 "--objectives", "val_loss,[val_loss,gn_fc]", "--seeds", "2", "--workers", "1",
                                 "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "hyperband" in res.output and "[val_loss,gn_fc]" in res.output
    for name in ("replay_summary.csv", "replay_runs.csv", "replay_curves.csv", "replay_anytime.csv",
                 "replay_anytime.png", "replay_summary.md"):
        assert (out / name).stat().st_size > 0, name
    summary = pd.read_csv(out / "replay_summary.csv")
    assert len(summary) == 4 and math.isfinite(summary.test_acc.sum())
    assert "| hyperband |" in (out / "replay_summary.md").read_text()


def test_worker_processes_give_the_same_results(lookup):
    one = run_replay(lookup, ["grid", "hyperband"], "val_loss", seeds=2, workers=1)
    two = run_replay(lookup, ["grid", "hyperband"], "val_loss", seeds=50, workers=2)  # 100 searches: 2 processes
    two.runs = two.runs[two.runs.seed < 2].reset_index(drop=True)
    pd.testing.assert_frame_equal(one.runs, two.runs)


def _hand_zoo(path: Path, *runs: dict) -> Path:
    """A finished zoo written by hand (no training): one run per set of TrainConfig fields, 2 epochs each."""
    with Store(path) as s:
        for i, fields in enumerate(runs):
            rid = s.register_run(TrainConfig(**{"dataset": "digits", "epochs": 2, "lr": 0.05 * (1 + i % 2), **fields}).to_dict())
            s.claim_run(rid)
            for e in (0, 1, 2):
                s.add_epoch(rid, e, {"val_loss": 1.0 / (e + 1 + i), "val_acc": 0.5, "test_acc": 0.5 + 0.1 * i,
                                     "train_seconds": 1.0 * (e > 0), "eval_seconds": 0.1, "measure_seconds": 0.1})
            s.finish_run(rid, 1.0)
    return path


@pytest.mark.parametrize("runs, message", [
    (({"n_train": 1000}, {"n_train": 5000}),
     ("the zoo varies n_train (1000, 5000); a search compares models trained on the same data; "
      "build or filter a store per setting")),
    (({"n_train": 1000}, {"n_train": None}), "the zoo varies n_train (1000, null)"),
    (({"n_val": 100}, {"n_val": 200}), "the zoo varies n_val (100, 200)"),
    (({"probe_size": 64}, {"probe_size": 128}), "the zoo varies probe_size (64, 128)"),
    (({"dataset_kwargs": {}}, {"dataset_kwargs": {"noise": 0.1}}), "the zoo varies dataset_kwargs"),
    (({"epochs": 2}, {"epochs": 3}), "the zoo mixes numbers of epochs (2, 3)"),
])  # fmt: skip
def test_a_zoo_that_varies_the_data_is_refused_in_one_line(tmp_path, runs, message):
    zoo = _hand_zoo(tmp_path / "zoo.sqlite", *runs)
    with pytest.raises(ValueError) as err:
        Lookup.from_store(zoo)
    assert message in str(err.value) and "\n" not in str(err.value)
    res = CliRunner(env={"COLUMNS": "300"}).invoke(app, ["hpo-bench", "--store", str(zoo), "--seeds", "1",
                                                             "--workers", "1", "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert f"error: {err.value}" in res.output.splitlines() and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_data_seeds_are_replicates_not_a_search_dimension(tmp_path):
    zoo = _hand_zoo(tmp_path / "zoo.sqlite", {"n_train": 500, "data_seed": 0}, {"n_train": 500, "data_seed": 1},
                    {"n_train": 500, "data_seed": 1})
    lk = Lookup.from_store(zoo)
    assert "data_seed" not in lk.params and "n_train" not in lk.params and list(lk.params) == ["lr"]
    assert sorted(lk.n_replicates) == [1, 2]  # lr 0.05 on data seeds 0 and 1 (replicates); lr 0.1 once


def test_the_shipped_zoo_presets_hold_the_data_fixed():
    from gnsel.tune.lookup import check_one_setting
    from gnsel.zoo import list_presets

    for name in list_presets():
        check_one_setting([c.to_dict() for c in load_grid(name).configs])
