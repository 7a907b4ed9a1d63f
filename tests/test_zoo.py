"""The zoo: grids expand and validate, builds store every epoch once, a killed build resumes."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import gnsel
from gnsel.store import Store
from gnsel.training import build, probe_set
from gnsel.zoo import build_zoo, load_grid, list_presets

TINY = {
    "dataset": "mnist1d",
    "dataset_kwargs": {"num_samples": 1000},
    "models": {"mlp": {"width": [16, 48]}, "cnn1d": {"channels": 8, "depth": 2}},
    "train": {"lr": [0.05, 0.2], "epochs": 3, "probe_size": 64, "n_train": 300},
    "seeds": [0],
}


def test_grid_expands_to_product_and_dedupes():
    g = load_grid(TINY)
    assert len(g.configs) == (2 + 1) * 2
    assert len({c.run_id() for c in g.configs}) == len(g.configs)
    assert {c.model for c in g.configs} == {"mlp", "cnn1d"}
    assert g.axes["lr"] == [0.05, 0.2]


@pytest.mark.parametrize(
    "spec, needle",
    [
        ({"dataset": "nope"}, "mnist1d"),  # the error lists the valid datasets
        ({"models": {"resnet21": {}}}, "resnet20"),
        ({"models": {"mlp": {"widht": [1]}}}, "widht"),
        ({"train": {"lr": []}}, "empty"),
        ({"train": {"learning_rate": 0.1}}, "learning_rate"),
        ({"train": {"lr": -1.0}}, "lr"),
        ({"train": {"optimizer": "rmsprop"}}, "sgd"),
        ({"grid": {}}, "valid keys"),
    ],
)
def test_bad_grid_names_the_problem(spec, needle):
    with pytest.raises(ValueError) as err:
        load_grid(spec)
    assert needle in str(err.value)


def test_presets_exist_and_quick_spans_the_axes():
    assert {"quick", "paper"} <= set(list_presets())
    g = load_grid("quick")
    for axis in ("lr", "batch_size", "weight_decay", "mlp.width", "mlp.depth"):
        assert len(g.axes[axis]) >= 2, axis
    assert len(g.axes["n_train"]) == 1  # the data size is fixed within a zoo: an environment, not a hyper-parameter
    assert len(g.axes["seeds"]) >= 2  # the seed-to-seed noise floor
    assert {c.stop_loss for c in g.configs} == {0.01}  # trained to the criterion of Jiang et al. 2020
    with pytest.raises(ValueError, match="quick"):
        load_grid("no-such-preset")


def test_build_stores_every_epoch_and_gn_matches_checkpoint(tmp_path):
    g = load_grid(TINY)
    db = tmp_path / "zoo.sqlite"
    summary = build_zoo(g.configs, db, workers=1)
    assert summary.done == len(g.configs) and summary.failed == 0
    store = Store(db)
    runs = store.runs_frame()
    assert set(runs["status"]) == {"done"}
    epochs = store.epochs_frame()
    for cfg in g.configs:
        rows = epochs[epochs.run_id == cfg.run_id()].sort_values("epoch")
        assert rows["epoch"].tolist() == list(range(cfg.epochs + 1))  # one row per epoch, 0 = init
        for col in ("train_acc", "test_acc", "train_loss", "test_loss", "gn_full", "gn_fc", "traj_gn"):
            assert rows[col].map(math.isfinite).all(), col
        assert (rows["gap_acc"] - (rows["train_acc"] - rows["test_acc"])).abs().max() < 1e-9
        assert (rows["gap_loss"] - (rows["test_loss"] - rows["train_loss"])).abs().max() < 1e-9
    # GN stored at the last epoch equals gnsel.gradient_norm on the saved checkpoint
    cfg = g.configs[-1]
    model, splits = build(cfg)
    model.load_state_dict(store.load_checkpoint(cfg.run_id(), cfg.epochs))
    x, y = probe_set(splits, cfg)
    last = epochs[(epochs.run_id == cfg.run_id()) & (epochs.epoch == cfg.epochs)].iloc[0]
    for scope in ("full", "fc"):
        r = gnsel.gradient_norm(model, (x, y), scope=scope, device="cpu")
        assert r.mean_sq == pytest.approx(last[f"gn_{scope}"], rel=1e-5)
    # a second build skips everything
    again = build_zoo(g.configs, db, workers=1)
    assert again.skipped == len(g.configs) and again.done == 0


def test_diverging_run_is_stored_failed_and_grid_goes_on(tmp_path):
    spec = dict(TINY, models={"mlp": {"width": 16}}, train=dict(TINY["train"], lr=[0.05, 1e9]))
    g = load_grid(spec)
    db = tmp_path / "zoo.sqlite"
    summary = build_zoo(g.configs, db, workers=1)
    assert summary.done == 1 and summary.failed == 1
    runs = Store(db).runs_frame().set_index("run_id")
    bad = next(c for c in g.configs if c.lr > 1)
    assert runs.loc[bad.run_id(), "status"] == "failed"
    assert "diverged" in runs.loc[bad.run_id(), "error"]


def _counts(db: Path) -> tuple[dict[str, str], dict[str, list[int]]]:
    store = Store(db)
    status = dict(zip(store.runs_frame()["run_id"], store.runs_frame()["status"]))
    ep = store.epochs_frame()
    epochs = {rid: sorted(ep[ep.run_id == rid]["epoch"].astype(int).tolist()) for rid in status}
    return status, epochs


def test_killed_build_resumes_without_duplicates(tmp_path):
    """A real `gnsel zoo build` on Ray, killed with SIGKILL mid-run, then run again."""
    spec = {
        "dataset": "mnist1d",
        "dataset_kwargs": {"num_samples": 2000},
        "models": {"mlp": {"width": [16, 24, 32, 40]}},
        "train": {"lr": 0.05, "epochs": 40, "batch_size": 16, "probe_size": 32, "n_train": 1200},
    }
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump(spec))
    db = tmp_path / "zoo.sqlite"
    cmd = [sys.executable, "-m", "gnsel.cli", "zoo", "build", "--grid", str(grid_file), "--store", str(db), "--workers", "2"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:  # wait until some epochs of some run are stored, not all runs done
            time.sleep(0.5)
            if db.exists():
                try:
                    status, epochs = _counts(db)
                except Exception:  # noqa: BLE001 - the schema may still be being created
                    continue
                if any(len(v) >= 3 for v in epochs.values()) and list(status.values()).count("done") < len(status):
                    break
        assert proc.poll() is None, "the build finished before it could be interrupted"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    status, epochs = _counts(db)
    assert "running" in status.values() or "pending" in status.values()
    time.sleep(2)  # let Ray's workers of the killed driver go
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    status, epochs = _counts(db)
    assert len(status) == 4 and set(status.values()) == {"done"}
    for rid, eps in epochs.items():
        assert eps == list(range(41)), (rid, eps[:5], len(eps))  # every epoch exactly once
    store = Store(db)
    assert (store.runs_frame()["attempts"] >= 1).all()
