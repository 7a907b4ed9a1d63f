"""Tests for the training run (gnsel.training) and its configuration (gnsel.training.config). Small and CPU-only."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import pytest

from gnsel.progress import Recorder
import torch
import torch.nn.functional as F

import gnsel.training.run as train_mod  # the module whose training step calls _loss
from gnsel import gradient_norm
from gnsel.data import list_datasets
from gnsel.models import list_models
from gnsel.training import (
    GN_BATCH_SIZE,
    OPTIMIZERS,
    ROW_KEYS,
    SCHEDULES,
    DivergenceError,
    TrainConfig,
    build,
    config_hash,
    evaluate,
    make_optimizer,
    make_scheduler,
    probe_set,
    train,
)

DEVICE = os.environ.get("GNSEL_TEST_DEVICE", "cpu")  # e.g. "cuda" to run the same checks on a GPU
EPOCHS = 3
TINY = dict(
    dataset="mnist1d", dataset_kwargs={"num_samples": 1000}, model_kwargs={"width": 32},
    epochs=EPOCHS, batch_size=64, probe_size=128, device=DEVICE,
)  # fmt: skip
DIGITS = dict(dataset="digits", n_train=300, model_kwargs={"width": 32}, epochs=2, probe_size=64, device=DEVICE)


pytestmark = pytest.mark.usefixtures("isolated_data_root", "one_torch_thread")


@pytest.fixture(scope="module")
def base():
    """One tiny mnist1d run, with everything its callbacks received."""
    cfg = TrainConfig(**TINY)
    epochs, checkpoints = [], []
    result = train(
        cfg,
        on_epoch=lambda e, row: epochs.append((e, row)),
        on_checkpoint=lambda e, sd: checkpoints.append((e, sd)),
    )
    return cfg, result, epochs, checkpoints


def _without_seconds(rows):
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in rows]


# ----------------------------------------------------------------------------------------- rows
def test_rows_cover_epochs_with_finite_values(base):
    _, result, _, _ = base
    assert [r["epoch"] for r in result.rows] == list(range(EPOCHS + 1))
    for row in result.rows:
        assert set(row) == set(ROW_KEYS)
        for k, v in row.items():
            assert isinstance(v, (int, float)) and math.isfinite(v), (row["epoch"], k, v)
        for k in ("train_acc", "val_acc", "test_acc"):
            assert 0.0 <= row[k] <= 1.0
        assert row["gn_full"] >= row["gn_full_mean_grad_sq"] >= 0
        assert row["gn_full"] >= row["gn_fc"] > 0  # the head is part of the full model
    first, last = result.rows[0], result.rows[-1]
    assert first["traj_gn"] == first["traj_gn_epoch"] == first["train_seconds"] == 0.0
    assert last["train_loss"] < first["train_loss"]
    assert last["train_seconds"] > 0 and last["measure_seconds"] > 0 and last["eval_seconds"] > 0


def test_gap_columns_are_differences(base):
    for row in base[1].rows:
        assert row["gap_acc"] == row["train_acc"] - row["test_acc"]
        assert row["gap_loss"] == row["test_loss"] - row["train_loss"]


def test_traj_gn_monotone_and_sum_of_increments(base):
    rows = base[1].rows
    traj = [r["traj_gn"] for r in rows]
    assert all(b >= a for a, b in zip(traj, traj[1:]))
    assert traj[-1] > 0
    for k in range(len(rows)):
        assert traj[k] == pytest.approx(sum(r["traj_gn_epoch"] for r in rows[: k + 1]), rel=1e-12, abs=0)


def test_callbacks_and_checkpoints(base):
    cfg, result, epochs, checkpoints = base
    assert [e for e, _ in epochs] == list(range(EPOCHS + 1))
    assert [r for _, r in epochs] == result.rows
    assert [e for e, _ in checkpoints] == [0, EPOCHS]
    for (_, sd), ref in zip(checkpoints, (result.initial_state, result.final_state)):
        assert sd.keys() == ref.keys()
        assert all(v.device.type == "cpu" and torch.equal(v, ref[k]) for k, v in sd.items())
    assert any(not torch.equal(result.initial_state[k], result.final_state[k]) for k in result.final_state)
    assert result.run_id == cfg.run_id() and result.seconds > 0


def test_stored_gn_equals_recomputed(base):
    cfg, result, _, _ = base
    model, splits = build(cfg)
    probe = probe_set(splits, cfg)
    assert len(probe[1]) == cfg.probe_size
    assert torch.equal(probe[1], splits.train.tensors[1][result.probe_indices])
    for state, row in ((result.initial_state, result.rows[0]), (result.final_state, result.rows[-1])):
        model.load_state_dict(state)
        for scope in ("full", "fc"):
            gn = gradient_norm(model, probe, scope=scope, batch_size=GN_BATCH_SIZE, device=DEVICE)
            assert row[f"gn_{scope}"] == pytest.approx(gn.mean_sq, rel=1e-9)
            assert row[f"gn_{scope}_mean_grad_sq"] == pytest.approx(gn.mean_grad_sq, rel=1e-9)


def test_stored_accuracy_equals_evaluate(base):
    cfg, result, _, _ = base
    model, splits = build(cfg)
    model.load_state_dict(result.final_state)
    _, _, test_loader = splits.loaders(batch_size=100)
    loss, acc = evaluate(model.to(DEVICE), test_loader, DEVICE)
    assert acc == pytest.approx(result.final["test_acc"], abs=1e-12)
    assert loss == pytest.approx(result.final["test_loss"], rel=1e-6)


def test_deterministic(base):
    cfg, result, _, _ = base
    rng = torch.get_rng_state()
    again = train(cfg)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG is left alone
    assert _without_seconds(again.rows) == _without_seconds(result.rows)
    assert all(torch.equal(v, result.final_state[k]) for k, v in again.final_state.items())
    assert not torch.are_deterministic_algorithms_enabled()  # setting restored


# ----------------------------------------------------------------------------------------- trajectory GN
def _naive_sq_norms(model, x, y):
    """Per-example squared gradient norms, one backward per example."""
    params = [p for p in model.parameters() if p.requires_grad]
    out = []
    for i in range(len(y)):
        loss = F.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        grads = torch.autograd.grad(loss, params)
        out.append(sum(g.pow(2).sum() for g in grads))
    return torch.stack(out)


def test_traj_gn_matches_reference_loop():
    """A plain SGD loop with the documented shuffling reproduces the weights and trajectory GN."""
    cfg = TrainConfig(**{**DIGITS, "n_train": 100, "epochs": 2, "batch_size": 32, "measure_gn": False})
    result = train(cfg)
    model, splits = build(cfg)
    x, y = splits.train.tensors
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = make_optimizer(cfg, model.parameters())
    sched = make_scheduler(cfg, opt, steps_per_epoch=4)  # 100 = 3 * 32 + 4
    traj = []
    total = 0.0
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(y), generator=gen)
        for s in range(0, len(y), cfg.batch_size):
            idx = perm[s : s + cfg.batch_size]
            lr = opt.param_groups[0]["lr"]
            total += lr**2 * float(_naive_sq_norms(model, x[idx], y[idx]).double().mean())
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            opt.zero_grad()
            sched.step()
        traj.append(total)
    assert [r["traj_gn"] for r in result.rows[1:]] == pytest.approx(traj, rel=1e-5)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(result.final_state[k], v, rtol=1e-5, atol=1e-6)


def test_trajectory_off_trains_plainly(base):
    cfg, result, _, _ = base
    off = train(dataclasses.replace(cfg, trajectory_gn=False))
    assert all(math.isnan(r["traj_gn"]) and math.isnan(r["traj_gn_epoch"]) for r in off.rows)
    assert off.final["train_loss"] < off.rows[0]["train_loss"]
    # the trajectory hooks do not change training: same weights either way
    for k, v in off.final_state.items():
        torch.testing.assert_close(v, result.final_state[k], rtol=1e-5, atol=1e-6)


def test_measure_gn_off_gives_nan():
    result = train(TrainConfig(**{**DIGITS, "epochs": 1, "measure_gn": False}))
    for row in result.rows:
        assert all(math.isnan(row[k]) for k in ("gn_full", "gn_fc", "gn_full_mean_grad_sq", "gn_fc_mean_grad_sq"))
        assert row["measure_seconds"] == 0.0
    assert result.final["traj_gn"] > 0


def test_batchnorm_model_with_trajectory_gn():
    cfg = TrainConfig(**{**TINY, "model": "cnn1d", "model_kwargs": {"channels": 8, "depth": 2, "batch_norm": True},
                         "epochs": 2})  # fmt: skip
    result = train(cfg)
    for row in result.rows:
        assert all(math.isfinite(v) for v in row.values())
    assert result.final["traj_gn"] > 0 and result.final["gn_full"] > 0


# ----------------------------------------------------------------------------------------- divergence
def test_huge_lr_diverges():
    cfg = TrainConfig(**{**DIGITS, "lr": 1e6, "schedule": "constant", "epochs": 3, "measure_gn": False})
    with pytest.raises(DivergenceError, match=r"non-finite training loss .* epoch \d") as ei:
        train(cfg)
    assert isinstance(ei.value, ValueError) and ei.value.epoch >= 1


def test_nan_loss_reports_epoch_and_step(monkeypatch):
    calls = {"n": 0}
    real = train_mod._loss

    def nan_on_third(logits, targets):
        calls["n"] += 1
        loss = real(logits, targets)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(train_mod, "_loss", nan_on_third)
    seen = []
    with pytest.raises(DivergenceError, match=r"epoch 1, step 3") as ei:
        train(TrainConfig(**{**DIGITS, "measure_gn": False}), on_epoch=lambda e, r: seen.append(e))
    assert (ei.value.epoch, ei.value.step) == (1, 3)
    assert seen == [0]


# ----------------------------------------------------------------------------------------- optimisers
@pytest.mark.parametrize(
    "changes",
    [
        {"optimizer": "adam", "lr": 1e-3},
        {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01, "schedule": "constant"},
        {"optimizer": "sgd", "schedule": "step", "epochs": 4, "momentum": 0.0, "weight_decay": 1e-4},
    ],
    ids=["adam", "adamw", "sgd-step"],
)
def test_optimizers_and_schedules(changes, capsys):
    cfg = TrainConfig(**{**DIGITS, "measure_gn": False, **changes})
    bar = Recorder()
    result = train(cfg, progress=bar)
    assert len(result.rows) == cfg.epochs + 1
    assert bar.events[0] == ("start", "train", 0, cfg.epochs) and bar.events[-1][:3] == ("end", "train", cfg.epochs)
    assert result.final["train_loss"] < result.rows[0]["train_loss"]
    lrs = [r["lr"] for r in result.rows]
    if cfg.schedule == "constant":
        assert lrs == [cfg.lr] * len(lrs)
    if cfg.schedule == "step":  # x0.1 from epoch 3 (50% of 4) and again from epoch 4 (75%)
        assert lrs == pytest.approx([cfg.lr, cfg.lr, cfg.lr, cfg.lr * 0.1, cfg.lr * 0.01])
    if cfg.schedule == "cosine":
        assert all(b < a for a, b in zip(lrs, lrs[1:]))


# ----------------------------------------------------------------------------------------- config
def test_config_roundtrip_and_run_id():
    cfg = TrainConfig(**TINY)
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert TrainConfig.from_dict(d) == cfg
    assert TrainConfig.from_dict(json.loads(json.dumps(d))).run_id() == cfg.run_id()
    rid = cfg.run_id()
    assert len(rid) == 16 and all(c in "0123456789abcdef" for c in rid)
    assert rid == config_hash(d) == TrainConfig(**TINY).run_id()
    assert dataclasses.replace(cfg, seed=1).run_id() != rid
    assert TrainConfig(lr=1).run_id() == TrainConfig(lr=1.0).run_id()
    assert hash(cfg) == hash(TrainConfig(**TINY))
    d["model_kwargs"]["width"] = 99  # to_dict is a copy
    assert cfg.model_kwargs["width"] == 32


def test_config_hash_is_canonical():
    assert config_hash({"b": 1, "a": [1, 2]}) == config_hash({"a": [1, 2], "b": 1})
    assert config_hash({"a": 1}) == "015abd7f5cc57a2d"  # sha256('{"a":1}')[:16]
    with pytest.raises(ValueError, match="JSON"):
        config_hash({"a": float("nan")})


def test_from_dict_unknown_key():
    with pytest.raises(ValueError, match="'lr_max'.*valid keys:.*lr.*batch_size"):
        TrainConfig.from_dict({"lr_max": 0.1})


@pytest.mark.parametrize(
    "changes, pattern",
    [
        ({"dataset": "imagenet42"}, "unknown dataset 'imagenet42'; choices: .*mnist1d"),
        ({"model": "gpt5"}, "unknown model 'gpt5'.*choices: .*mlp"),
        ({"model_kwargs": {"widht": 3}}, "unknown keyword.*'widht'.*'mlp'.*accepted: .*width"),
        ({"model_kwargs": {"width": "wide"}}, "'width' of model 'mlp' must be int, got 'wide'"),
        ({"optimizer": "lbfgs"}, "unknown optimizer 'lbfgs'; choices: sgd, adam, adamw"),
        ({"schedule": "linear"}, "unknown schedule 'linear'; choices: constant, cosine, step"),
        ({"lr": 0.0}, "lr must be a positive.*0.0"),
        ({"lr": -1.0}, "lr must be a positive.*-1.0"),
        ({"epochs": 0}, "epochs must be a positive integer, got 0"),
        ({"batch_size": -4}, "batch_size must be a positive integer, got -4"),
        ({"probe_size": 0}, "probe_size must be a positive integer, got 0"),
        ({"epochs": 2.5}, "epochs must be int, got 2.5"),
        ({"trajectory_gn": 1}, "trajectory_gn must be bool, got 1"),
        ({"dataset_kwargs": {"seed": 3}}, "dataset_kwargs may not set 'seed'"),
        ({"device": "tpu9"}, "unknown device 'tpu9'"),
    ],
)
def test_validation_errors(changes, pattern):
    cfg = TrainConfig(**{**DIGITS, **changes})
    with pytest.raises(ValueError, match=pattern):
        cfg.validate()
    with pytest.raises(ValueError, match=pattern):
        train(cfg)


def test_validate_accepts_defaults_and_all_choices():
    assert TrainConfig().validate() == TrainConfig()
    for opt in OPTIMIZERS:
        for sched in SCHEDULES:
            TrainConfig(optimizer=opt, schedule=sched).validate()
    for name in ("mnist1d", "digits"):
        assert name in list_datasets()
    assert "cnn1d" in list_models()
