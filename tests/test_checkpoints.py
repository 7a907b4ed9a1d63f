"""Checkpoint selection: picks, oracle and regret known by hand (ties, NaN, early stops, tail window), the
paired bootstrap summary, the report pieces and ``gnsel hpo-bench --checkpoints``."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from gnsel.cli.hpo_bench import DEFAULT_SELECTORS as CLI_SELECTORS
from gnsel.cli import app
from gnsel.store import Store
from gnsel.study.checkpoints import (
    checkpoint_report,
    checkpoint_selection,
    with_verdicts,
)
from gnsel.tune.checkpoints import (
    DEFAULT_SELECTORS,
    PICK_COLUMNS,
    checkpoint_picks,
    checkpoint_summary,
    parse_selectors,
    selector_uses_gn,
    stop_epochs,
)
from gnsel.tune.lookup import Lookup

NAN = math.nan
E = 4  # the zoo's epochs; run B stopped at its criterion after epoch 2
# (lr, seed) -> per epoch 0..stop: val_loss, val_acc, test_acc, gn_fc. Epoch 0 (the untrained model) has the best
# val_loss, test_acc and gn_fc of run A, so any pick or oracle at epoch 0 would show.
RUNS = {
    (0.1, 0): {"val_loss": [0.1, 0.9, 0.5, 0.3, 0.4], "val_acc": [0.9, 0.5, 0.7, 0.8, 0.8],
               "test_acc": [0.95, 0.5, 0.7, 0.8, 0.9], "gn_fc": [0.0, 3.0, 2.0, 1.0, 1.0]},
    (0.1, 1): {"val_loss": [1.0, 0.6, 0.8], "val_acc": [0.1, 0.6, 0.5], "test_acc": [0.1, 0.7, 0.6],
               "gn_fc": [5.0, 2.0, 1.0]},
    (0.2, 0): {"val_loss": [1.0, 0.5, 0.4, 0.6, 0.7], "val_acc": [0.1, 0.6, 0.7, 0.6, 0.6],
               "test_acc": [0.1, 0.6, 0.8, 0.7, 0.6], "gn_fc": [9.0, 2.0, NAN, 1.5, 3.0]},
    (0.2, 1): {"val_loss": [1.0, 0.5, 0.5, 0.5, 0.6], "val_acc": [0.1, 0.6, 0.6, 0.6, 0.6],
               "test_acc": [0.1, 0.6, 0.7, 0.7, 0.6], "gn_fc": [0.5, NAN, NAN, NAN, NAN]},
}  # fmt: skip
# by hand, candidates epochs 1..stop: (picked epoch, regret) per run A, B, C, D; the oracle epochs are 4, 1, 2, 2
EXPECTED = {
    "last": [(4, 0.0), (2, 0.1), (4, 0.2), (4, 0.1)],
    "val_loss": [(3, 0.1), (1, 0.0), (2, 0.0), (1, 0.1)],  # D: val_loss ties at epochs 1-3, the earliest
    "val_error": [(3, 0.1), (1, 0.0), (2, 0.0), (1, 0.1)],  # A: val_error ties at 3 and 4
    "gn_fc": [(3, 0.1), (2, 0.1), (3, 0.1), (NAN, NAN)],  # A: tie at 3 and 4; C: NaN at 2 skipped; D: all NaN
    "val_loss+1*gn_fc": [(3, 0.1), (2, 0.1), (3, 0.1), (NAN, NAN)],
}


def _config(lr: float, seed: int) -> dict:
    return {"dataset": "digits", "model": "mlp", "model_kwargs": {}, "lr": lr, "epochs": E, "seed": seed}


def _rows(lr: float, seed: int) -> list[dict]:
    m = RUNS[(lr, seed)]
    return [{"epoch": e, **{k: v[e] for k, v in m.items()}, "train_seconds": float(e > 0), "eval_seconds": 0.1,
             "measure_seconds": 0.2} for e in range(len(m["val_loss"]))]  # fmt: skip


@pytest.fixture(scope="module")
def lookup() -> Lookup:
    runs = pd.DataFrame([{"run_id": f"r{lr}-{s}", "config_json": json.dumps(_config(lr, s))} for lr, s in RUNS])
    epochs = pd.DataFrame([{"run_id": f"r{lr}-{s}", **row} for lr, s in RUNS for row in _rows(lr, s)])
    return Lookup.from_frames(runs, epochs)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ckpt") / "zoo.sqlite"
    s = Store(path)
    for lr, seed in RUNS:
        rid = s.register_run(_config(lr, seed))
        s.claim_run(rid)
        s.add_epochs(rid, _rows(lr, seed))
        s.finish_run(rid, 1.0)
    s.close()
    return str(path)


def test_stop_epochs_are_the_last_recorded_epochs_not_the_forward_filled_copies(lookup):
    assert stop_epochs(lookup).tolist() == [[4, 2], [4, 4]]
    assert lookup.metrics["test_acc"][0, 1, 4] == pytest.approx(0.6)  # the lookup copies run B's epoch 2 ...
    picks = checkpoint_picks(lookup, ["last"])
    assert picks["epoch"].tolist() == [4, 2, 4, 4]  # ... but `last` keeps epoch 2, where it stopped


def test_picks_oracle_and_regret_known_by_hand(lookup):
    picks = checkpoint_picks(lookup, list(EXPECTED))
    assert list(picks.columns) == list(PICK_COLUMNS) and len(picks) == 4 * len(EXPECTED)
    for name, want in EXPECTED.items():
        g = picks[picks["selector"] == name]
        assert g["run_id"].tolist() == ["r0.1-0", "r0.1-1", "r0.2-0", "r0.2-1"]
        np.testing.assert_allclose(g["epoch"], [e for e, _ in want])
        np.testing.assert_allclose(g["regret"], [r for _, r in want], atol=1e-12)
        assert g["oracle_epoch"].tolist() == [4, 1, 2, 2] and g["stop_epoch"].tolist() == [4, 2, 4, 4]
        np.testing.assert_allclose(g["oracle_test_acc"], [0.9, 0.7, 0.8, 0.7])
    assert (picks["epoch"].dropna() >= 1).all()  # epoch 0, the untrained model, is never a candidate
    pd.testing.assert_series_equal(picks["regret"], picks["regret_all"], check_names=False)  # no window


def test_tail_window_restricts_picks_and_oracle(lookup):
    two = checkpoint_picks(lookup, ["val_loss", "gn_fc", "last"], tail=2)
    vl = two[two["selector"] == "val_loss"]
    assert vl["epoch"].tolist() == [3, 1, 3, 3]  # candidates A 3-4, B 1-2, C 3-4, D 3-4
    assert vl["oracle_epoch"].tolist() == [4, 1, 3, 3]
    np.testing.assert_allclose(vl["regret"], [0.1, 0.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(vl["regret_all"], [0.1, 0.0, 0.1, 0.0], atol=1e-12)  # C's best (epoch 2) is outside
    one = checkpoint_picks(lookup, ["val_loss", "gn_fc"], tail=1)
    assert one[one["selector"] == "val_loss"]["epoch"].tolist() == [4, 2, 4, 4]
    assert one[one["selector"] == "gn_fc"]["epoch"].fillna(-1).tolist() == [4, 2, 4, -1]
    assert (one["regret"].dropna() == 0).all()
    with pytest.raises(ValueError, match="tail must be a positive"):
        checkpoint_picks(lookup, ["val_loss"], tail=0)


def test_selectors_are_parsed_and_checked():
    assert parse_selectors("last; val_loss+0.1*gn_fc;last") == ["last", "val_loss+0.1*gn_fc"]
    assert parse_selectors(["val_error", "gn_fc_mean_grad_sq"]) == ["val_error", "gn_fc_mean_grad_sq"]
    assert [selector_uses_gn(s) for s in ("last", "val_loss", "val_loss+0.1*gn_fc", "gn_fc_mean_grad_sq", "traj_gn")] \
        == [False, False, True, True, True]  # fmt: skip
    with pytest.raises(ValueError, match="single objective, not the multi-objective") as err:
        parse_selectors("val_loss,[val_loss, gn_fc]")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="built-in selector: last"):
        parse_selectors("oracle")
    with pytest.raises(ValueError, match="at least one selector"):
        parse_selectors(" ; ")
    assert CLI_SELECTORS.split(",") == list(DEFAULT_SELECTORS)


def test_a_metric_the_zoo_lacks_is_a_value_error(lookup):
    with pytest.raises(ValueError, match="gn_full"):
        checkpoint_picks(lookup, ["gn_full"])
    with pytest.raises(ValueError, match="does not record"):
        checkpoint_picks(lookup, ["gn_fc_mean_grad_sq"])


def test_summary_means_shares_and_paired_comparison(lookup):
    picks = checkpoint_picks(lookup, ["last", "val_loss", "gn_fc"])
    s = checkpoint_summary(picks, resamples=200).set_index("selector")
    assert s.loc["gn_fc", "runs"] == 3 and s.loc["last", "runs"] == 4
    np.testing.assert_allclose(s["mean_regret"], [0.1, 0.05, 0.1])
    np.testing.assert_allclose(s["regret_points"], 100 * s["mean_regret"])
    np.testing.assert_allclose(s["share_oracle"], [0.25, 0.5, 0.0])
    np.testing.assert_allclose(s["share_last"], [1.0, 0.0, 1 / 3])
    np.testing.assert_allclose(s["vs_baseline"], [-0.05, 0.0, -0.2 / 3], atol=1e-12)  # paired, per run
    assert s.loc["val_loss", ["vs_low", "vs_high"]].tolist() == [0.0, 0.0]
    for _, r in s.iterrows():
        assert r.low <= r.mean_regret <= r.high and r.vs_low <= r.vs_baseline <= r.vs_high
    v = with_verdicts(s.reset_index()).set_index("selector")["verdict"]
    assert v["last"] == v["val_loss"] == "info" and v["gn_fc"] in ("does not help", "inconclusive")
    pd.testing.assert_frame_equal(checkpoint_summary(picks, resamples=200), checkpoint_summary(picks, resamples=200))
    with pytest.raises(ValueError, match="baseline selector 'val_error'"):
        checkpoint_summary(picks, baseline="val_error")


def _synthetic(regrets: dict[str, np.ndarray], reps: int = 2) -> pd.DataFrame:
    """A picks frame of ``len(regrets[...]) / reps`` configurations with ``reps`` seeds each."""
    rows = []
    for name, values in regrets.items():
        for i, v in enumerate(values):
            rows.append({"config": i // reps, "replicate": i % reps, "selector": name, "regret": v, "epoch": 3.0,
                         "test_acc": 0.9 - v, "regret_all": v, "stop_epoch": 5})  # fmt: skip
    return pd.DataFrame(rows)


def test_interval_is_degenerate_when_all_regrets_are_equal_and_pairing_removes_shared_noise():
    rng = np.random.default_rng(1)
    noisy = rng.uniform(0, 0.05, 40)
    s = checkpoint_summary(_synthetic({"val_loss": noisy, "last": np.full(40, 0.01), "gn_fc": noisy - 0.02}),
                           resamples=500).set_index("selector")  # fmt: skip
    assert s.loc["last", "low"] == pytest.approx(0.01) and s.loc["last", "high"] == pytest.approx(0.01)
    assert s.loc["val_loss", "high"] - s.loc["val_loss", "low"] > 0.005  # the regrets themselves vary ...
    assert s.loc["gn_fc", "vs_low"] == pytest.approx(0.02) and s.loc["gn_fc", "vs_high"] == pytest.approx(0.02)
    assert with_verdicts(s.reset_index()).set_index("selector").loc["gn_fc", "verdict"] == "helps"  # ... not the pair


def test_report_pieces(lookup, tmp_path):
    tables, figures, findings = checkpoint_report(lookup, tmp_path, ["last", "val_loss", "gn_fc"], resamples=100)
    assert [t.name for t in tables] == ["checkpoint_selection", "checkpoint_picks"]
    assert figures[0].path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "4 runs (2 configurations" in findings[0].text
    assert any("`gn_fc`" in f.text and f.verdict != "info" for f in findings)
    assert any("4.24" in f.text and "per-example" in f.text for f in findings)
    _, summary = checkpoint_selection(lookup, ["gn_fc"], resamples=50)  # the baseline is added
    assert summary["selector"].tolist() == ["val_loss", "gn_fc"] and "verdict" in summary
    # multiplicity: the GN selectors form one Holm family; each adjusted p is at least its own
    _, both = checkpoint_selection(lookup, ["last", "gn_fc", "val_loss+1*gn_fc"], resamples=50)
    gn = both[both["uses_gn"]]
    assert gn["p_holm"].notna().all() and (gn["p_holm"] >= gn["p_better"] - 1e-12).all()
    assert both.loc[~both["uses_gn"], "p_holm"].isna().all()
    assert any("Holm-adjusted p over the 2 GN selectors" in f.text
               for f in checkpoint_report(lookup, tmp_path, ["last", "gn_fc", "val_loss+1*gn_fc"], resamples=50)[2])


def test_cli_checkpoints_writes_its_files_and_rejects_bad_selectors(store, tmp_path):
    runner = CliRunner(env={"COLUMNS": "250"})
    out = tmp_path / "ckpt"
    res = runner.invoke(app, ["hpo-bench", "--checkpoints", "--store", store, "--selectors", "last;val_loss;gn_fc",
                                 "--resamples", "100", "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "checkpoint selection: 4 runs of 2 configurations" in res.output and "Wu & Summa" in res.output
    for name in ("checkpoint_selection.csv", "checkpoint_picks.csv", "checkpoint_selection.png"):
        assert (out / name).stat().st_size > 0, name
    summary = pd.read_csv(out / "checkpoint_selection.csv")
    assert summary["selector"].tolist() == ["last", "val_loss", "gn_fc"]
    np.testing.assert_allclose(summary["mean_regret"], [0.1, 0.05, 0.1])
    assert len(pd.read_csv(out / "checkpoint_picks.csv")) == 12
    tail = runner.invoke(app, ["hpo-bench", "--checkpoints", "--store", store, "--selectors", "val_loss",
                                  "--tail", "1", "--resamples", "20", "--out", str(tmp_path / "t")])  # fmt: skip
    assert tail.exit_code == 0, tail.output
    assert (pd.read_csv(tmp_path / "t" / "checkpoint_picks.csv")["epoch"] == [4, 2, 4, 4]).all()
    wide = CliRunner(env={"COLUMNS": "1000"})  # an error is one line; Rich would wrap it at a narrower terminal
    for args, words in ((["--selectors", "val_loss,[val_loss,gn_fc]"], "multi-objective"),
                        (["--selectors", "val_los"], "val_los"), (["--selectors", "gn_full"], "gn_full"),
                        (["--store", str(tmp_path / "none.sqlite")], "no zoo store")):  # fmt: skip
        bad = wide.invoke(app, ["hpo-bench", "--checkpoints", "--store", store, *args, "--out", str(tmp_path / "b")])
        assert bad.exit_code == 2 and words in bad.output, bad.output
        assert bad.output.strip().startswith("error:") and len(bad.output.strip().splitlines()) == 1, bad.output


def test_a_gn_selector_no_better_than_keeping_the_last_checkpoint_is_mixed():
    """Helping against val_loss is not enough: it must also beat `last`, which needs no selection."""
    rows = [{"selector": "val_loss", "uses_gn": False, "vs_low": 0.0, "vs_high": 0.0, "vs_last_low": -0.01},
            {"selector": "last", "uses_gn": False, "vs_low": 0.001, "vs_high": 0.004, "vs_last_low": 0.0},
            {"selector": "gn_fc", "uses_gn": True, "vs_low": 0.001, "vs_high": 0.004, "vs_last_low": -0.001},
            {"selector": "gn_full", "uses_gn": True, "vs_low": 0.001, "vs_high": 0.004, "vs_last_low": 0.0005},
            {"selector": "val_loss+1*gn_fc", "uses_gn": True, "vs_low": -0.002, "vs_high": 0.003, "vs_last_low": 0.001}]
    got = with_verdicts(pd.DataFrame(rows)).set_index("selector")["verdict"].to_dict()
    assert got == {"val_loss": "info", "last": "info", "gn_fc": "mixed", "gn_full": "helps",
                   "val_loss+1*gn_fc": "does not help"}
