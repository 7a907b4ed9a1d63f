"""gnsel correlate on a tiny zoo: every measure scored, cached in the store, files written."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gnsel.cli import app
from gnsel.measures import per_epoch_measures
from gnsel.zoo.correlate import correlate, hparam_columns
from gnsel.store import Store
from gnsel.zoo import build_zoo, load_grid

GRID = {
    "dataset": "mnist1d",
    "dataset_kwargs": {"num_samples": 1000},
    "models": {"mlp": {"width": [16, 48]}},
    "train": {"lr": [0.02, 0.2], "weight_decay": [0.0, 0.001], "epochs": 3, "probe_size": 64, "n_train": 300},
}
MEASURES = ["gn_full", "gn_fc", "traj_gn", "val_loss", "dist_from_init", "log_prod_spectral", "random"]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    db = tmp_path_factory.mktemp("zoo") / "zoo.sqlite"
    summary = build_zoo(load_grid(GRID).configs, db, workers=1)
    assert summary.done == 8
    return db


def test_correlate_scores_every_measure_and_caches(zoo, tmp_path):
    report = correlate(zoo, measures=MEASURES, out_dir=tmp_path)
    assert set(report.scores.index) == set(MEASURES)
    assert set(report.hparams) == {"cfg.lr", "cfg.weight_decay", "cfg.model_kwargs.width"}
    for m in MEASURES:
        assert -1.0 <= report.scores.loc[m, "kendall"] <= 1.0, m
        assert report.scores.loc[m, "n"] == 8
    assert set(report.granulated.columns) == {"lr", "weight_decay", "model_kwargs.width", "overall"}
    # per epoch: every stored measure at epochs 1..3
    assert set(report.per_epoch["epoch"]) == {1, 2, 3}
    assert set(report.per_epoch["measure"]) == set(per_epoch_measures())
    names = {p.name for p in report.files}
    assert {"correlation.csv", "granulated.csv", "per_epoch.csv", "scatter_gn_full.png", "epochs_kendall.png"} <= names
    assert all(p.stat().st_size > 0 for p in report.files)
    # model-based measures are cached in the store: a second call reads them back
    cached = Store(zoo).get_measures()
    assert {"dist_from_init", "log_prod_spectral"} <= set(cached["measure"])
    again = correlate(zoo, measures=MEASURES)
    assert again.scores["kendall"].equals(report.scores["kendall"])


def test_stored_gn_is_the_measure_at_the_last_epoch(zoo):
    report = correlate(zoo, measures=["gn_full"], per_epoch=False)
    epochs = Store(zoo).epochs_frame()
    last = epochs.loc[epochs.groupby("run_id")["epoch"].idxmax()].set_index("run_id")
    assert report.values["gn_full"].to_dict() == pytest.approx(last["gn_full"].to_dict())


def test_unknown_measure_and_empty_store_are_clear_errors(zoo, tmp_path):
    with pytest.raises(ValueError, match="unknown measure 'gn_ful'.*gn_full"):
        correlate(zoo, measures=["gn_ful"])
    with pytest.raises(ValueError, match="gap_acc"):
        correlate(zoo, measures=["gn_full"], target="gap")
    with pytest.raises(ValueError, match="no finished runs"):
        correlate(tmp_path / "empty.sqlite")


def test_hparam_columns_skip_constant_and_seed():
    import pandas as pd

    runs = pd.DataFrame({"cfg.lr": [0.1, 0.2], "cfg.seed": [0, 1], "cfg.epochs": [3, 3], "status": ["done"] * 2})
    assert hparam_columns(runs) == ["cfg.lr"]


def test_cli_correlate_prints_the_table(zoo, tmp_path):
    result = CliRunner().invoke(app, ["correlate", "--store", str(zoo), "--measures", "gn_full,gn_fc,traj_gn",
                                      "--out", str(tmp_path / "c"), "--no-per-epoch"])
    assert result.exit_code == 0, result.output
    assert "gn_full" in result.output and "Kendall" in result.output
    bad = CliRunner().invoke(app, ["correlate", "--store", str(tmp_path / "none.sqlite")])
    assert bad.exit_code == 2 and "no store" in bad.output
