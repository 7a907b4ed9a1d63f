"""gnsel tune: spaces validate and translate, every algorithm searches end to end into the store,
PBT exchanges real weights, a killed search resumes without losing or repeating trials."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from ray.tune import Callback

from gnsel.training import TrainConfig
from gnsel.store import Store
from gnsel.training import lr_factor, train
from gnsel.tune.live import SEARCH_FILE, run_search
from gnsel.tune.objectives import parse_objective, pick_from_front
from gnsel.tune.selection import SelectionReport, TrialRecord, load_records, select
from gnsel.cli.tune import selection_table
from gnsel.tune.space import load_space
from gnsel.training import TrainingRun as Trainer

TINY = {
    "dataset": "mnist1d",
    "dataset_kwargs": {"num_samples": 1000},
    "fixed": {"n_train": 300, "probe_size": 64, "model_kwargs": {"width": 16}, "epochs": 3},
    "space": {"lr": {"loguniform": [0.02, 0.2]}, "batch_size": {"choice": [64, 128]}},
}
ARCH = {  # two architectures, each with its own hyper-parameter
    **TINY,
    "fixed": {"n_train": 300, "probe_size": 64, "epochs": 2},
    "space": {
        "lr": {"loguniform": [0.02, 0.2]},
        "model": {"choice": ["mlp", "cnn1d"]},
        "model_kwargs.width": {"choice": [8, 16]},
        "model_kwargs.channels": {"choice": [4]},
    },
}
EXAMPLE_YAML = """
dataset: mnist1d
dataset_kwargs: {num_samples: 2000}
fixed: {epochs: 10, probe_size: 256}
space:
  lr: {loguniform: [0.005, 0.2]}
  batch_size: {choice: [32, 128]}
  weight_decay: {choice: [0.0, 0.0005]}
  model: {choice: [mlp, cnn1d]}
  model_kwargs.width: {choice: [32, 256]}
  model_kwargs.channels: {choice: [8, 32]}
"""


def space_with(**params):
    return {**TINY, "space": params}


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _search(tmp_path, space, **kw):
    kw.setdefault("storage", tmp_path / "ray")
    kw.setdefault("store", tmp_path / "tune.sqlite")
    return run_search(space, **kw)


# ------------------------------------------------------------------------------------ spaces (no Ray)
def test_example_space_translates_with_architecture_conditions(tmp_path):
    import optuna
    from ray import tune

    path = tmp_path / "space.yaml"
    path.write_text(EXAMPLE_YAML)
    sp = load_space(path)
    cfg = sp.resolve({"lr": 0.01, "batch_size": 32, "weight_decay": 0.0, "model": "cnn1d",
                      "model_kwargs.width": 256, "model_kwargs.channels": 8}, epochs=3)  # fmt: skip
    assert cfg.model == "cnn1d" and cfg.model_kwargs == {"channels": 8} and cfg.epochs == 3
    # a grid leaves out what does not apply: (2 widths + 2 channels) x 2 batch sizes x 2 decays x 2 lrs
    sp_grid = load_space({**yaml.safe_load(EXAMPLE_YAML), "space": {**yaml.safe_load(EXAMPLE_YAML)["space"], "lr": {"choice": [0.01, 0.1]}}})
    points = sp_grid.grid_points()
    assert len(points) == 4 * 2 * 2 * 2 == len({sp_grid.resolve(p).run_id() for p in points})
    assert all(("model_kwargs.width" in p) == (p["model"] == "mlp") for p in points)
    ts = sp.tune_space()
    assert isinstance(ts["lr"], tune.search.sample.Float) and isinstance(ts["model"], tune.search.sample.Categorical)
    cs = sp.configspace(seed=0)
    assert len(cs.conditions) == 2
    for _ in range(5):
        c = dict(cs.sample_configuration())
        assert ("model_kwargs.width" in c) == (c["model"] == "mlp")
        sp.resolve(c).validate()
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for _ in range(6):
        t = study.ask()
        sp.optuna_space()(t)
        assert ("model_kwargs.channels" in t.params) == (t.params["model"] == "cnn1d")
    assert set(sp.pbt_mutations()) == {"lr", "weight_decay"}


@pytest.mark.parametrize(
    "spec, algorithm, objective, needle",
    [
        (space_with(learning_rate={"loguniform": [0.01, 0.1]}), "random", "val_loss", "searchable TrainConfig fields: "),
        (space_with(lr={"choice": []}), "random", "val_loss", "empty list"),
        (space_with(lr={"uniform": [0.1, 0.1]}), "random", "val_loss", "empty range"),
        (space_with(lr={"loguniform": [0.0, 0.1]}), "random", "val_loss", "must be positive"),
        (space_with(epochs={"choice": [2, 3]}), "random", "val_loss", "budget"),
        (space_with(n_train={"choice": [300, 600]}), "random", "val_loss", "space.n_train: n_train defines the data"),
        (space_with(data_seed={"choice": [0, 1]}), "random", "val_loss", "put one value under fixed:"),
        (space_with(probe_size={"randint": [32, 64]}), "random", "val_loss", "space.probe_size: probe_size defines"),
        (space_with(n_val={"choice": [100, 200]}), "random", "val_loss", "space.n_val: n_val defines the data"),
        (space_with(dataset={"choice": ["mnist1d", "digits"]}), "random", "val_loss", "at the top level of the space"),
        (space_with(model={"choice": ["mlp", "resnet21"]}), "random", "val_loss", "resnet20"),
        (space_with(**{"model_kwargs.widht": {"choice": [8]}}), "random", "val_loss", "widht"),
        (space_with(batch_size={"uniform": [16, 64]}), "random", "val_loss", "randint or choice"),
        (space_with(lr={"grid": [0.01, 0.1]}), "tpe", "val_loss", "'tpe' cannot take a grid: lr"),
        (space_with(lr={"grid": [0.01, 0.1]}), "bohb", "val_loss", "'bohb' cannot take a grid"),
        (TINY, "grid", "val_loss", "lr (loguniform)"),
        (TINY, "asha", "[val_loss, gn_fc]", "single objective"),
        (space_with(batch_size={"choice": [32, 64]}), "pbt", "val_loss", "perturbs lr and weight_decay"),
        (TINY, "annealing", "val_loss", "choices: grid, random"),
        (TINY, "random", "val_los", "val_loss"),
    ],
)
def test_bad_searches_fail_clearly_before_anything_runs(tmp_path, spec, algorithm, objective, needle):
    with pytest.raises(ValueError) as err:
        _search(tmp_path, spec, algorithm=algorithm, objective=objective, trials=2)
    assert needle in str(err.value)
    assert not (tmp_path / "ray").exists() and not (tmp_path / "tune.sqlite").exists()


def test_trainer_matches_train_resumes_exactly_and_takes_new_hparams():
    cfg = TrainConfig(dataset="mnist1d", dataset_kwargs={"num_samples": 1000}, n_train=300,
                      model_kwargs={"width": 16}, epochs=3, probe_size=64)  # fmt: skip
    ref = train(cfg).rows[1:]
    t = Trainer(cfg)
    rows = [t.step_epoch() for _ in range(3)]
    same = lambda a, b: a == b or (math.isnan(a) and math.isnan(b))  # noqa: E731
    for a, b in zip(ref, rows):
        assert all(same(a[k], b[k]) for k in a if not k.endswith("seconds")), a["epoch"]
    t1 = Trainer(cfg)
    t1.step_epoch()
    t2 = Trainer(cfg)
    t2.load_state_dict(t1.state_dict())
    t2.set_hparams(lr=cfg.lr, weight_decay=cfg.weight_decay)  # unchanged: the run goes on identically
    for a in rows[1:]:
        b = t2.step_epoch()
        assert all(same(a[k], b[k]) for k in a if not k.endswith("seconds"))
    t3 = Trainer(cfg, gn_scopes=("fc",))
    t3.load_state_dict(t1.state_dict())
    t3.set_hparams(lr=0.2, weight_decay=1e-3)
    group = t3.optimizer.param_groups[0]
    steps = t3.scheduler.last_epoch
    assert group["lr"] == pytest.approx(0.2 * lr_factor("cosine", steps, t3.steps_per_epoch, 3))
    assert group["weight_decay"] == 1e-3 and t3.config.lr == 0.2
    row = t3.step_epoch()
    assert row["epoch"] == 2 and math.isnan(row["gn_full"]) and row["gn_fc"] > 0 and row["measure_seconds"] > 0


def _trial(tid, val_loss, gn_fc, test_acc, status="TERMINATED", epochs=3, best_early=None):
    """A hand-built trial: ``val_loss`` at its last epoch (one more per epoch before), or ``best_early`` at epoch 1."""
    rows = [{"epoch": e, "val_loss": val_loss + (epochs - e), "val_acc": 0.5, "gn_fc": gn_fc,
             "test_acc": test_acc, "gap_acc": 0.1, "train_seconds": 1.0, "eval_seconds": 0.5,
             "measure_seconds": 0.25, "run_id": f"r{tid}"} for e in range(1, epochs + 1)]  # fmt: skip
    if best_early is not None:
        rows[0]["val_loss"] = best_early
    return TrialRecord(tid, status, {"lr": 0.1}, rows, "diverged: x" if status == "ERROR" else "")


def test_selection_single_multi_failed_and_report(tmp_path):
    records = [_trial("a", 0.5, 3.0, 0.80), _trial("b", 0.4, 9.0, 0.85), _trial("c", 0.9, 1.0, 0.70),
               _trial("d", 0.1, 0.1, 0.99, status="ERROR", epochs=1), _trial("e", 0.3, 6.0, 0.90, epochs=1)]  # fmt: skip
    s = select(records, "val_loss", algorithm="asha", search="x")
    # e (stopped by the scheduler at epoch 1) has the least val_loss but is no candidate at the budget of 3 epochs
    assert s.selected_trial == "b" and s.selected_epoch == s.budget_epoch == 3 and s.at_budget == 3
    assert s.best_test_acc == 0.85 and s.regret == 0.0 and s.failed == 1 and s.trials == 5  # e's 0.90 is not counted
    assert s.epochs == 3 + 3 + 3 + 1 + 1 and s.seconds == pytest.approx(11 * 1.75) and s.gn_seconds == pytest.approx(11 * 0.25)
    s = select(records, "val_loss+0.1*gn_fc", search="w")
    assert s.selected_trial == "a" and s.regret == pytest.approx(0.05)  # 0.5+0.3 < 0.9+0.1 < 0.4+0.9 (e left out)
    m = select(records, "[val_loss, gn_fc]", algorithm="tpe", search="y")
    assert set(m.front) == {"a", "b", "c"} and m.selected_trial in m.front  # e (would dominate b) is no candidate
    assert isinstance(m.objective_value, list) and len(m.objective_value) == 2 and m.budget_epoch == 3
    report = SelectionReport([s, m])
    csv = report.to_csv(tmp_path / "sel.csv")
    SelectionReport([m]).to_csv(csv)  # a search's row is replaced, others kept
    import pandas as pd

    df = pd.read_csv(csv)
    assert sorted(df["search"]) == ["w", "y"] and json.loads(df.loc[df.search == "y", "front"].item())
    assert list(df["budget_epoch"]) == [3, 3] and list(df["at_budget"]) == [3, 3]
    from rich.console import Console

    Console(width=200, record=True).print(selection_table(report))


def test_selection_compares_trials_at_one_budget():
    # a scheduler stopped "early" at epoch 1 with the best objective seen; the others trained all 4 epochs
    early = _trial("early", 0.9, 1.0, 0.95, epochs=1, best_early=0.01)
    full = [_trial("f1", 0.6, 1.0, 0.80, epochs=4), _trial("f2", 0.5, 1.0, 0.75, epochs=4)]
    mid = _trial("mid", 0.1, 1.0, 0.99, epochs=2)  # halted at a middle rung
    s = select([early, *full, mid], "val_loss", algorithm="hyperband")
    assert s.selected_trial == "f2" and s.budget_epoch == s.selected_epoch == 4 and s.at_budget == 2
    assert s.best_test_acc == 0.80 and s.regret == pytest.approx(0.05)  # over the candidates only
    # ties: the first trial (in the search's order) at the budget
    tied = [_trial("t1", 0.5, 1.0, 0.7), _trial("t2", 0.5, 1.0, 0.9), _trial("t0", 0.2, 1.0, 0.9, epochs=2)]
    assert select(tied, "val_loss").selected_trial == "t1"
    assert select(tied[::-1], "val_loss").selected_trial == "t2"
    # a failed trial that got further, or one whose objective is not finite, sets no budget
    nan = _trial("nan", 0.1, float("nan"), 0.99, epochs=5)
    failed = _trial("bad", 0.0, 0.0, 1.0, status="ERROR", epochs=6)
    s = select([*full, nan, failed], "val_loss+0.1*gn_fc")
    assert s.budget_epoch == 4 and s.at_budget == 2 and s.selected_trial == "f2" and s.failed == 1
    assert select([*full, nan, failed], "val_loss").budget_epoch == 5  # its val_loss is finite
    # no trial at the configured epochs (a time budget cut them all short): the furthest any got
    s = select([_trial("x", 0.3, 1.0, 0.6, epochs=2), _trial("y", 0.2, 1.0, 0.7, epochs=3)], "val_loss")
    assert s.budget_epoch == 3 and s.selected_trial == "y" and s.at_budget == 1
    none = select([failed], "val_loss")
    assert none.selected_trial is None and none.budget_epoch is None and none.at_budget == 0
    assert math.isnan(none.best_test_acc) and math.isnan(none.regret)


def test_selection_multi_objective_front_at_the_budget():
    # at the budget, a (0.5, 3) and b (0.4, 9) and c (0.9, 1) are all on the front; the early trial would dominate a and b
    records = [_trial("a", 0.5, 3.0, 0.80, epochs=4), _trial("b", 0.4, 9.0, 0.85, epochs=4),
               _trial("c", 0.9, 1.0, 0.70, epochs=4), _trial("early", 0.3, 2.0, 0.99, epochs=2),
               _trial("bad", 0.0, 0.0, 1.0, status="ERROR", epochs=4)]  # fmt: skip
    m = select(records, "[val_loss, gn_fc]")
    assert set(m.front) == {"a", "b", "c"} and m.budget_epoch == 4 and m.at_budget == 3
    values = [(0.5, 3.0), (0.4, 9.0), (0.9, 1.0)]
    assert m.selected_trial == "abc"[pick_from_front(values)] and m.best_test_acc == 0.85
    assert m.objective_value == pytest.approx(list(values["abc".index(m.selected_trial)]))


def test_selection_of_pbt_trials_reads_each_as_it_ended():
    # PBT: every trial runs to the end, an exploit continuing from a donor's checkpoint as a new run; a resumed
    # search may report an epoch twice -- a trial's last row is what it ended as
    a = _trial("a", 0.5, 1.0, 0.80, epochs=4)
    b = _trial("b", 0.9, 1.0, 0.70, epochs=4)
    b.rows = b.rows[:3] + [{**a.rows[2], "run_id": "rb2"}, {**a.rows[3], "val_loss": 0.45, "test_acc": 0.82,
                                                              "run_id": "rb2"}]  # fmt: skip
    s = select([a, b], "val_loss", algorithm="pbt")
    assert s.selected_trial == "b" and s.selected_run == "rb2" and s.budget_epoch == 4 and s.at_budget == 2
    assert s.test_acc == 0.82 and s.regret == 0.0 and s.epochs == 4 + 5


def test_selection_report_cells_are_the_table_text():
    rows = [{"epoch": 1, "val_loss": 0.5, "gn_fc": 2.0, "test_acc": 0.8, "gap_acc": 0.05, "train_seconds": 1.0,
             "eval_seconds": 0.25, "measure_seconds": 0.125, "run_id": "r1"}]  # fmt: skip
    one = select([TrialRecord("t1", "TERMINATED", {"lr": 0.0123456, "model_kwargs.width": 16}, rows)], "val_loss",
                 search="s[1]", algorithm="grid")  # fmt: skip
    multi = select([TrialRecord("t2", "TERMINATED", {}, rows)], "[val_loss, gn_fc]", search="m")
    headers, cells = SelectionReport([one, multi]).cells()
    assert headers == ["search", "objective", "selected", "budget", "at budget", "test acc", "gap", "regret", "trials",
                       "failed", "epochs", "compute s", "GN s", "wall s"]  # fmt: skip
    assert cells[0] == ["s[1]", "val_loss", "lr=0.01235 width=16", "1", "1", "0.800", "0.050", "0.000", "1", "0", "1",
                        "1.38", "0.12", "nan"]  # fmt: skip
    assert cells[1][:3] == ["m", "[val_loss, gn_fc]", "- (1 on front)"]
    empty = select([TrialRecord("t3", "ERROR", {}, rows, "diverged: x")], "val_loss", search="e")
    assert SelectionReport([empty]).cells()[1][0][2:5] == ["-", "-", "0"]  # nothing selected, no budget
    from rich.console import Console

    console = Console(width=250, record=True)
    console.print(selection_table(SelectionReport([one, multi])))
    text = console.export_text()
    assert all(c in text for row in cells for c in row)


# ------------------------------------------------------------------------------------ searches (Ray)
def _runs(store_path):
    store = Store(store_path)
    runs = store.runs_frame()
    runs["extra"] = [json.loads(e) if isinstance(e, str) else {} for e in runs["extra_json"]]
    return store, runs


def test_grid_records_failed_trial_and_goes_on(ray_cluster, tmp_path):
    spec = space_with(lr={"grid": [0.05, 1.0e9]})
    res = _search(tmp_path, spec, algorithm="grid", objective="val_loss", trials=5, epochs=3)
    assert len(res.records) == 2  # grid: every point once, --trials does not repeat it
    failed = [r for r in res.records if r.status == "ERROR"]
    assert len(failed) == 1 and failed[0].error.startswith("diverged: ")
    assert res.selection.failed == 1 and res.selection.selected_config["lr"] == 0.05
    store, runs = _runs(tmp_path / "tune.sqlite")
    assert sorted(runs["status"]) == ["done", "failed"]
    bad = runs[runs.status == "failed"].iloc[0]
    assert bad["error"].startswith("diverged: training diverged") and "trial " in bad["error"]
    good = runs[runs.status == "done"].iloc[0]
    assert good["extra"]["algorithm"] == "grid" and good["extra"]["trial_id"] in {r.trial_id for r in res.records}
    assert list(store.epochs_frame([good["run_id"]])["epoch"]) == [1, 2, 3]
    assert json.loads((res.path / SEARCH_FILE).read_text())["algorithm"] == "grid"


@pytest.mark.parametrize("algorithm", ["random", "tpe"])
def test_multi_objective_front_over_architectures(ray_cluster, tmp_path, algorithm):
    res = _search(tmp_path, ARCH, algorithm=algorithm, objective="[val_loss, gn_fc]", trials=3, seed=1)
    sel = res.selection
    assert len(res.records) == 3 and all(r.status == "TERMINATED" for r in res.records)
    assert sel.front and sel.selected_trial in sel.front and len(sel.objective_value) == 2
    for r in res.records:
        last = r.last
        assert last["objective_0"] == pytest.approx(last["val_loss"]) and last["objective_1"] == pytest.approx(last["gn_fc"])
        assert math.isnan(last["gn_full"]) and last["measure_seconds"] > 0  # only the fc scope is measured
        model = r.config["model"]
        assert ("model_kwargs.width" in r.config) == (model == "mlp")
    assert sel.gn_seconds > 0 and sel.epochs == 3 * 2
    store, runs = _runs(tmp_path / "tune.sqlite")
    assert len(runs) >= 2 and set(runs["status"]) == {"done"}  # equal configurations share a run
    cfgs = [TrainConfig.from_dict(json.loads(c)) for c in runs["config_json"]]
    assert all(c.measure_gn and not c.trajectory_gn for c in cfgs)
    assert all(c.model_kwargs == {"channels": 4} if c.model == "cnn1d" else set(c.model_kwargs) == {"width"} for c in cfgs)
    assert store.epochs_frame()["gn_fc"].notna().all()


@pytest.mark.parametrize("algorithm, objective", [("hyperband", "val_loss+0.1*gn_fc"), ("bohb", "val_loss+0.05*gn_fc")])
def test_bandit_schedulers(ray_cluster, tmp_path, algorithm, objective):
    res = _search(tmp_path, TINY, algorithm=algorithm, objective=objective, trials=4, epochs=3, seed=0)
    assert len(res.records) == 4 and not any(r.status == "ERROR" for r in res.records)
    sel = res.selection
    assert sel.selected_trial is not None and sel.regret >= 0 and 4 <= sel.epochs <= 12
    top = max(r.last["epoch"] for r in res.records)  # the budget: trials the scheduler stopped earlier are out
    best = min((r for r in res.records if r.last["epoch"] == top), key=lambda r: parse_objective(objective)(r.last))
    assert sel.selected_trial == best.trial_id and sel.selected_epoch == sel.budget_epoch == top
    assert sel.at_budget == sum(r.last["epoch"] == top for r in res.records)
    _, runs = _runs(tmp_path / "tune.sqlite")
    assert set(runs["status"]) == {"done"} and {e["algorithm"] for e in runs["extra"]} == {algorithm}


def test_pbt_exploit_continues_from_donor_weights(ray_cluster, tmp_path):
    spec = space_with(lr={"loguniform": [0.005, 0.5]}, weight_decay={"choice": [0.0, 0.0005]})
    cap = tmp_path / "capture"
    res = _search(tmp_path, spec, algorithm="pbt", objective="val_loss", trials=2, epochs=3, seed=3,
                  pbt={"interval": 1, "quantile_fraction": 0.5, "synch": True}, capture_dir=cap)  # fmt: skip
    exploits = [json.loads(p.read_text()) for p in sorted(cap.glob("restore_*.json"))]
    exploits = [e for e in exploits if e["from_trial_id"] != e["trial_id"]]
    assert exploits, "PBT never exploited"
    for e in exploits:
        donor = torch.load(cap / f"save_{e['from_trial_id']}_{e['from_run_id']}_{e['epoch']}.pt", weights_only=True)
        restored = torch.load(cap / f"restore_{e['trial_id']}_{e['run_id']}_{e['epoch']}.pt", weights_only=True)
        assert donor.keys() == restored.keys() and all(torch.equal(donor[k], restored[k]) for k in donor)
        assert e["run_id"] != e["from_run_id"]  # a perturbed configuration, hence a new run
        # the optimiser took the trial's own (perturbed) hyper-parameters, not the checkpoint's
        assert e["optimizer_weight_decay"] == e["config_weight_decay"]
        assert e["config_lr"] != _lr_of(cap, e)
        assert e["optimizer_lr"] == pytest.approx(e["checkpoint_lr"] * e["config_lr"] / _lr_of(cap, e))
    store, runs = _runs(tmp_path / "tune.sqlite")
    e = min(exploits, key=lambda e: e["epoch"])  # (an exploit at the last epoch trains nothing more)
    assert e["epoch"] < 3
    child = runs[runs.run_id == e["run_id"]].iloc[0]
    assert child["extra"]["parent_run_id"] == e["from_run_id"] and child["extra"]["start_epoch"] == e["epoch"]
    epochs = list(store.epochs_frame([child["run_id"]])["epoch"])  # it trained on from the donor's epoch
    first = e["epoch"] + 1
    assert epochs == list(range(first, first + len(epochs))) and len(epochs) >= 1
    assert epochs[-1] == 3 or child["extra"].get("ended") == "pbt_exploit"  # until the end or the next exploit
    assert res.selection.selected_trial is not None


def _lr_of(cap, e):
    """The donor's configured lr, from its saved checkpoint's run (the donor's own config)."""
    meta = json.loads((cap / f"save_{e['from_trial_id']}_{e['from_run_id']}_{e['epoch']}.json").read_text())
    return meta["config_lr"]


class KillAfter(Callback):
    """Tune callback that SIGKILLs its driver once ``k`` trials are finished (armed only in its own process).

    It strikes at the start of a step of the Tune loop: the state saved at the end of the previous step
    (gnsel saves it every step) knows those trials as finished.
    """

    def __init__(self, k: int, marker: str):
        self.k, self.marker, self.pid = k, marker, os.getpid()

    def on_step_begin(self, iteration, trials, **info):
        done = [t.trial_id for t in trials if t.status == "TERMINATED"]
        if os.getpid() == self.pid and len(done) >= self.k:
            Path(self.marker).write_text(json.dumps(done))
            os.kill(self.pid, signal.SIGKILL)


def test_killed_search_resumes_without_losing_or_repeating(ray_cluster, tmp_path):
    spec_file = tmp_path / "space.json"
    spec_file.write_text(json.dumps(TINY))
    marker = tmp_path / "killed.json"
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_tune import KillAfter
        from gnsel.tune.live import run_search
        run_search(json.load(open({str(spec_file)!r})), algorithm="random", objective="val_loss", trials=4,
                   storage={str(tmp_path / 'ray')!r}, store={str(tmp_path / 'tune.sqlite')!r}, name="resume",
                   address={ray_cluster!r}, callbacks=[KillAfter(2, {str(marker)!r})])
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=150)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    finished = json.loads(marker.read_text())
    path = tmp_path / "ray" / "resume"
    before = {r.trial_id: r for r in load_records(path, load_space(TINY))}
    assert len(finished) >= 2 and (len(before) < 4 or any(r.status != "TERMINATED" for r in before.values()))
    with pytest.raises(ValueError, match="--resume"):
        _search(tmp_path, TINY, algorithm="random", objective="val_loss", trials=4, name="resume")
    res = _search(tmp_path, TINY, algorithm="random", objective="val_loss", trials=4, name="resume", resume=True)
    after = {r.trial_id: r for r in res.records}
    assert len(after) == 4 and all(r.status == "TERMINATED" for r in after.values())
    for tid in finished:  # finished before the kill: kept as they were, not run again
        assert json.dumps(after[tid].rows) == json.dumps(before[tid].rows)
    for tid, r in after.items():
        epochs = [row["epoch"] for row in r.rows]
        old = before[tid].rows if tid in before else []
        if tid in finished or not old:  # finished before the kill, or never started: every epoch once
            assert epochs == [1, 2, 3], tid
            continue
        # interrupted mid-trial: what it reported is kept and it continues from its last checkpoint;
        # only an epoch whose checkpoint Tune had not yet registered (its save is a second round trip
        # to the trial) may run again, so at most one epoch repeats
        assert json.dumps(r.rows[: len(old)]) == json.dumps(old)
        last = old[-1]["epoch"]
        assert epochs[len(old):] in (list(range(last + 1, 4)), list(range(last, 4))), (tid, epochs)
    store, runs = _runs(tmp_path / "tune.sqlite")
    assert len(runs) == 4 and set(runs["status"]) == {"done"}
    assert {e["trial_id"] for e in runs["extra"]} == set(after)
    for rid in runs["run_id"]:
        assert list(store.epochs_frame([rid])["epoch"]) == [1, 2, 3]


def test_cli_tune_asha_writes_report_and_store(ray_cluster, tmp_path):
    import typer
    from typer.testing import CliRunner

    from gnsel.cli.tune import register

    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command, so that "tune" is a sub-command as in gnsel's app
        pass

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(TINY))
    args = ["tune", "--space", str(space), "--algorithm", "asha", "--objective", "val_error", "--trials", "3",
            "--epochs", "3", "--time-budget", "120", "--storage", str(tmp_path / "ray"),
            "--store", str(tmp_path / "tune.sqlite"), "--seed", "2"]  # fmt: skip
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    import pandas as pd

    df = pd.read_csv(tmp_path / "ray" / "selection.csv")
    assert list(df["search"]) == ["asha-val_error"] and df["trials"].item() == 3
    assert df["selected_epoch"].item() == df["budget_epoch"].item() == 3  # ASHA lets at least one trial finish
    _, runs = _runs(tmp_path / "tune.sqlite")
    assert len(runs) == 3 and set(runs["status"]) == {"done"}
    bad = yaml.safe_dump(space_with(lr={"grid": [0.01, 0.1]}))
    space.write_text(bad)
    out = CliRunner().invoke(app, args[:3] + ["--algorithm", "tpe"] + args[5:] + ["--name", "other"])
    assert out.exit_code == 2 and "cannot take a grid" in out.output
