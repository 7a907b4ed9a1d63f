"""The training protocol: runs stop at a training-loss criterion or the maximum, and say which."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gnsel.measures import per_epoch_measures
from gnsel.store import Store
from gnsel.training import TrainConfig, train
from gnsel.tune.lookup import Lookup
from gnsel.zoo import build_zoo

BASE = dict(dataset="digits", model="mlp", model_kwargs={"width": 32, "depth": 1}, lr=0.1, batch_size=64,
            n_train=300, probe_size=64, schedule="constant", device="cpu")  # fmt: skip


def test_a_run_stops_at_the_criterion_and_is_marked_converged():
    saved = []
    r = train(TrainConfig(**BASE, epochs=30, stop_loss=0.5), on_checkpoint=lambda e, s: saved.append(e))
    losses = [row["train_loss"] for row in r.rows]
    first = next(i for i, v in enumerate(losses) if i > 0 and v <= 0.5)
    assert r.converged and r.stop_epoch == first < 30
    assert len(r.rows) == first + 1 and r.final["epoch"] == first  # the last row is the stopping point
    assert all(v > 0.5 for v in losses[1:first])  # it did not stop late
    assert saved == [0, first]  # the checkpoint is the stopped model


def test_a_run_that_cannot_reach_it_stops_at_the_maximum_and_is_marked():
    r = train(TrainConfig(**BASE, epochs=3, stop_loss=1e-9))
    assert not r.converged and r.stop_epoch == 3 and len(r.rows) == 4


def test_no_criterion_trains_every_epoch():
    r = train(TrainConfig(**BASE, epochs=4, stop_loss=None))
    assert not r.converged and r.stop_epoch == 4 and len(r.rows) == 5


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, True, "0.01"])
def test_bad_criterion_is_refused(bad):
    with pytest.raises(ValueError, match="stop_loss"):
        TrainConfig(**BASE, stop_loss=bad).validate()


def test_rows_carry_the_bound_terms_and_traj_gn_has_the_1_over_n():
    cfg = TrainConfig(**BASE, epochs=2, stop_loss=None)
    r = train(cfg)
    steps_per_epoch = 300 // 64 + (1 if 300 % 64 > 1 else 0)
    row = r.final
    assert row["n_train"] == 300 and row["steps"] == 2 * steps_per_epoch
    assert row["lr_sq_sum"] == pytest.approx(0.1**2 * row["steps"])  # constant lr: lr^2 * steps
    frame = pd.DataFrame(r.rows)
    rec = per_epoch_measures()
    assert rec["traj_gn"](frame).iloc[-1] == pytest.approx(math.sqrt(row["traj_gn"]) / 300)  # sqrt(S) / n
    assert rec["budget"](frame).iloc[-1] == pytest.approx(0.1**2 * row["steps"] / 300)  # lr^2 * steps / n
    assert rec["train_error"](frame).iloc[-1] == pytest.approx(1 - row["train_acc"])
    # the same S over twice the examples: the bound's quantity halves
    doubled = frame.assign(n_train=600)
    assert rec["traj_gn"](doubled).iloc[-1] == pytest.approx(rec["traj_gn"](frame).iloc[-1] / 2)


def test_build_records_converged_exports_it_and_replays_see_the_stopped_model(tmp_path):
    quick = TrainConfig(**BASE, epochs=25, stop_loss=0.5)
    never = TrainConfig(**{**BASE, "lr": 0.0001}, epochs=25, stop_loss=0.5)
    db = tmp_path / "zoo.sqlite"
    build_zoo([quick, never], db, workers=1)
    store = Store(db)
    runs = store.runs_frame().set_index("run_id")
    assert bool(runs.loc[quick.run_id(), "converged"]) and not bool(runs.loc[never.run_id(), "converged"])
    stop = int(runs.loc[quick.run_id(), "stop_epoch"])
    assert stop < 25 and int(runs.loc[never.run_id(), "stop_epoch"]) == 25
    store.export(tmp_path / "out", formats=("csv",))
    csv = pd.read_csv(tmp_path / "out" / "runs.csv").set_index("run_id")
    assert "converged" in csv.columns
    assert csv.loc[quick.run_id(), "converged"] in (True, "True") and csv.loc[never.run_id(), "converged"] in (False, "False")
    lookup = Lookup.from_store(db)
    c = next(i for i, ids in enumerate(lookup.run_ids) if quick.run_id() in ids)
    acc = lookup.mean("test_acc")[c]
    assert np.all(acc[stop:] == acc[stop])  # later budgets answer with the stopped model
    assert lookup.cost(c, 25, uses_gn=True) == lookup.cost(c, stop, uses_gn=True)  # at the cost it took
