"""Search algorithms as plug-ins: the registry lists every algorithm with its live and replay paths, and
a toy algorithm registered from this module runs live on Ray Tune and replayed over a zoo."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from gnsel.registry import UnknownNameError
from gnsel.store import Store
from gnsel.tune.algorithms import (
    ALGORITHMS, LivePlan, SearchAlgorithm, check_search, get_algorithm, live_algorithm, live_names, register_algorithm,
    replay_algorithm, replay_names, single_target,
)  # fmt: skip
from gnsel.tune.live import SEARCH_FILE, run_search
from gnsel.tune.lookup import Lookup
from gnsel.tune.objectives import parse_objective
from gnsel.tune.replay import parse_algorithms, run_algorithm, run_replay
from gnsel.tune.replay_search import BudgetExhausted, Search
from gnsel.tune.space import load_space

BUILT_IN = ["grid", "random", "tpe", "hyperband", "asha", "bohb", "pbt"]
REPLAYED = ["grid", "random", "tpe", "hyperband", "bohb"]


class FirstN(SearchAlgorithm):
    """A toy: the first configurations of the space in its own order, each at the full budget."""

    name = "firstn"
    summary = "the first configurations of the space, in order, full budget"
    live_backend = "a grid_search over the first `trials` grid points of the space"
    replay_backend = "the zoo's first N configurations, in zoo order, full budget"
    N = 3

    def check(self, space, objective=None):
        super().check(space, objective)
        ranges = [p.name for p in space.params.values() if not p.finite]
        if ranges:
            raise ValueError(f"algorithm 'firstn' needs finite values; ranges: {', '.join(ranges)}")

    def live(self, space, objective, settings):
        from ray import tune
        from ray.tune.search.basic_variant import BasicVariantGenerator

        points = space.grid_points()[: settings.trials]
        kw = {"num_samples": 1, **single_target(objective),
              "search_alg": BasicVariantGenerator(random_state=settings.seed)}  # fmt: skip
        return LivePlan(kw, {"point": tune.grid_search(points)})

    def replay(self, search, context):
        for c in range(min(self.N, len(search.lookup.configs))):
            try:
                search.evaluate(c, search.lookup.epochs)
            except BudgetExhausted:
                return


@pytest.fixture
def firstn():
    register_algorithm(FirstN)
    try:
        yield get_algorithm("firstn")
    finally:
        ALGORITHMS.unregister("firstn")
    assert "firstn" not in ALGORITHMS and "firstn" not in live_names() + replay_names()


# ------------------------------------------------------------------------------------ the registry
def test_registry_lists_every_algorithm_with_its_paths():
    assert ALGORITHMS.names() == BUILT_IN
    assert live_names() == BUILT_IN and replay_names() == REPLAYED
    support = {a.name: (a.has_live, a.has_replay) for a in ALGORITHMS.values()}
    assert support == {"grid": (True, True), "random": (True, True), "tpe": (True, True),
                       "hyperband": (True, True), "asha": (True, False), "bohb": (True, True),
                       "pbt": (True, False)}  # fmt: skip
    for a in ALGORITHMS.values():
        assert a.summary and a.live_backend and isinstance(a, SearchAlgorithm)
    assert [a.name for a in ALGORITHMS.values() if not a.multi_objective] == ["hyperband", "asha", "bohb", "pbt"]
    assert [a.name for a in ALGORITHMS.values() if a.bandit] == ["hyperband", "bohb"]
    # hyperband: one name, one algorithm, documented on both back ends
    hb = get_algorithm("hyperband")
    assert "HyperBandScheduler" in hb.live_backend and "hpbandster HyperBand" in hb.replay_backend


def test_unknown_names_list_the_choices():
    with pytest.raises(UnknownNameError) as err:
        get_algorithm("annealing")
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)
    assert str(err.value) == "unknown search algorithm 'annealing'; choices: " + ", ".join(BUILT_IN)
    with pytest.raises(ValueError) as err:
        live_algorithm("annealing")
    assert str(err.value) == "unknown algorithm 'annealing'; choices: grid, random, tpe, hyperband, asha, bohb, pbt"
    with pytest.raises(ValueError) as err:
        replay_algorithm("asha")  # a live-only algorithm has no replay
    assert str(err.value) == "unknown search algorithm 'asha'; choices: grid, random, tpe, hyperband, bohb"
    with pytest.raises(ValueError, match="choices: grid, random, tpe, hyperband, bohb"):
        parse_algorithms("grid,asha")
    with pytest.raises(ValueError, match="already registered"):
        register_algorithm(type("Grid2", (SearchAlgorithm,), {"name": "grid", "replay_backend": "x",
                                                              "replay": lambda self, s, c: None}))  # fmt: skip
    with pytest.raises(TypeError, match="live_backend"):  # a path is declared exactly when it is implemented
        register_algorithm(type("NoLive", (SearchAlgorithm,), {"name": "nolive", "live_backend": "says it runs"}))
    assert ALGORITHMS.names() == BUILT_IN


# ------------------------------------------------------------------------------------ live (Ray)
TINY = {
    "dataset": "mnist1d",
    "dataset_kwargs": {"num_samples": 1000},
    "fixed": {"n_train": 300, "probe_size": 64, "model_kwargs": {"width": 16}, "epochs": 2},
    "space": {"lr": {"choice": [0.05, 0.1, 0.2]}, "batch_size": {"choice": [64]}},
}


def test_a_registered_algorithm_checks_its_space_before_anything_runs(firstn, tmp_path):
    ranged = {**TINY, "space": {"lr": {"loguniform": [0.02, 0.2]}}}
    with pytest.raises(ValueError, match="'firstn' needs finite values; ranges: lr"):
        run_search(ranged, algorithm="firstn", objective="val_loss", trials=2,
                   storage=tmp_path / "ray", store=tmp_path / "tune.sqlite")  # fmt: skip
    assert not (tmp_path / "ray").exists() and not (tmp_path / "tune.sqlite").exists()
    assert live_names() == BUILT_IN + ["firstn"] and replay_names() == REPLAYED + ["firstn"]
    with pytest.raises(ValueError, match="choices: grid, random, tpe, hyperband, asha, bohb, pbt, firstn"):
        check_search(load_space(TINY), "anneal", None)


def test_a_registered_algorithm_runs_live(firstn, tmp_path):
    sp = load_space(TINY)
    res = run_search(sp, algorithm="firstn", objective="val_loss", trials=2, storage=tmp_path / "ray",
                     store=tmp_path / "tune.sqlite", seed=0)  # fmt: skip
    asked = sp.grid_points()[:2]  # what it asked for: the first two points, lr 0.05 and 0.1
    assert [p["lr"] for p in asked] == [0.05, 0.1]
    assert len(res.records) == 2 and all(r.status == "TERMINATED" for r in res.records)
    assert sorted(r.config["lr"] for r in res.records) == [0.05, 0.1]
    assert all(r.config == sp.active(p) for r, p in zip(sorted(res.records, key=lambda r: r.config["lr"]), asked))
    assert all([row["epoch"] for row in r.rows] == [1, 2] for r in res.records)
    best = min(res.records, key=lambda r: r.last["val_loss"])
    sel = res.selection
    assert sel.algorithm == "firstn" and sel.selected_trial == best.trial_id
    assert sel.objective_value == pytest.approx(best.last["val_loss"]) and sel.epochs == 4
    assert json.loads((res.path / SEARCH_FILE).read_text())["algorithm"] == "firstn"
    store = Store(tmp_path / "tune.sqlite")
    runs = store.runs_frame()
    assert len(runs) == 2 and set(runs["status"]) == {"done"}
    assert {json.loads(e)["algorithm"] for e in runs["extra_json"]} == {"firstn"}
    assert sorted(json.loads(c)["lr"] for c in runs["config_json"]) == [0.05, 0.1]


# ------------------------------------------------------------------------------------ replay
E = 2
LOSS = [0.9, 0.4, 0.7, 0.5, 0.1]  # final val_loss of lr = 0.1 .. 0.5: the best of all is the last one
TEST = [0.60, 0.80, 0.70, 0.75, 0.95]


@pytest.fixture(scope="module")
def toy_zoo(tmp_path_factory):
    path = tmp_path_factory.mktemp("zoo") / "zoo.sqlite"
    store = Store(path)
    for i, (loss, test) in enumerate(zip(LOSS, TEST)):
        cfg = {"dataset": "mnist1d", "model": "mlp", "model_kwargs": {}, "lr": 0.1 * (i + 1), "epochs": E, "seed": 0}
        rid = store.register_run(cfg)
        store.claim_run(rid)
        rows = [{"epoch": e, "val_loss": loss + (E - e), "val_acc": 0.5, "test_acc": test - 0.1 * (E - e),
                 "gap_acc": 0.0, "gn_fc": 1.0 + i, "train_seconds": float(e > 0), "eval_seconds": 0.0,
                 "measure_seconds": 0.25} for e in range(E + 1)]  # fmt: skip
        store.add_epochs(rid, rows)
        store.finish_run(rid, 1.0)
    store.close()
    return path


def test_a_registered_algorithm_replays(firstn, toy_zoo):
    lk = Lookup.from_store(toy_zoo)
    assert [lk.label(c) for c in range(5)] == [f"lr={0.1 * (i + 1)!r}" for i in range(5)]
    res = run_replay(lk, ["firstn"], "val_loss", seeds=2, budget=100)
    first = LOSS[: FirstN.N]
    chosen = first.index(min(first))  # the best among exactly the configurations it evaluated
    for _, r in res.runs.iterrows():
        assert r.evaluations == FirstN.N and r.epochs == FirstN.N * E and r.failed == 0
        assert r.selected == lk.label(chosen) and r.selected_epoch == E
        assert float(r.selected_value) == pytest.approx(min(first))
        assert r.test_acc == pytest.approx(TEST[chosen]) and r.regret == pytest.approx(max(TEST) - TEST[chosen])
    assert list(res.curves.epochs) == [2, 4, 6] * 2 and res.runs.note.eq("").all()
    # its evaluations are the ones it asked for, and the budget ends it like any other
    search = run_algorithm("firstn", Search(lk, parse_objective("val_loss"), 100, seed=0))
    assert [(r.config, r.epoch) for r in search.records] == [(0, E), (1, E), (2, E)]
    short = run_replay(lk, ["firstn"], "val_loss", seeds=1, budget=5)  # room for two evaluations
    assert short.runs.evaluations.item() == 2 and short.runs.selected.item() == lk.label(1)
    # several objectives: the knee of the front of what it evaluated
    multi = run_replay(lk, ["firstn", "grid"], "[val_loss, gn_fc]", seeds=1, budget=100)
    assert multi.runs.front_size.iloc[0] == 2  # (0.9, 1) and (0.4, 2) on the front; (0.7, 3) dominated
    pd.testing.assert_series_equal(multi.runs.algorithm, pd.Series(["firstn", "grid"], name="algorithm"))


# ------------------------------------------------------------------------------------ Ray's HyperBand
def test_hyperband_stops_paused_trials_that_no_bracket_will_resume():
    """A trial whose pause completed after its bracket finished (or after it lost a halving) is in no
    bracket's plan: the scheduler stops it at the next step instead of waiting for it forever."""
    from types import SimpleNamespace

    from ray.tune.experiment import Trial

    from gnsel.tune.algorithms.ray_schedulers import HyperBandScheduler, orphaned_trials

    class FakeTrial:  # hashable by identity, as Ray's trials are
        def __init__(self, name, status, saving=False):
            self.name, self.status, self.is_saving = name, status, saving

    trial = FakeTrial

    class Bracket:
        def __init__(self, all_trials, live, finished):
            self._all_trials, self._live, self._finished = all_trials, live, finished
            self.trials_to_unpause = set()

        def current_trials(self):
            return list(self._live)

        def finished(self):
            return self._finished

        def completion_percentage(self):
            return 0.0

    done_paused = trial("done-paused", Trial.PAUSED)  # its bracket finished while it was saving
    lost_paused = trial("lost-paused", Trial.PAUSED)  # lost a halving while it was saving
    waiting = trial("waiting", Trial.PAUSED)  # paused at a milestone, still in the bracket's plan
    saving = trial("saving", Trial.PAUSED, saving=True)  # not yet done pausing: left alone this step
    running = trial("running", Trial.RUNNING)
    finished = Bracket([done_paused, trial("t", Trial.TERMINATED)], live=[done_paused], finished=True)
    halving = Bracket([lost_paused, waiting, saving, running], live=[waiting, running], finished=False)
    scheduler = HyperBandScheduler(time_attr="training_iteration", max_t=3, reduction_factor=3,
                                   metric="objective", mode="min")  # fmt: skip
    scheduler._hyperbands = [[finished, halving, None]]
    assert [t.name for t in orphaned_trials(scheduler)] == ["done-paused", "lost-paused"]
    stopped = []
    controller = SimpleNamespace(stop_trial=lambda t: stopped.append(t.name))
    assert scheduler.choose_trial_to_run(controller) is None  # nothing PENDING or to unpause
    assert stopped == ["done-paused", "lost-paused"]
