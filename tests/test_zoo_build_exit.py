"""``gnsel zoo build``'s exit code and lost workers (issue #13, item 4): non-zero when a run failed, zero only
when every run is done; a run whose worker was lost for good is stored failed unless another build has it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gnsel.cli import app
from gnsel.store import CLAIMED, Store
from gnsel.zoo import build as build_module
from gnsel.zoo import load_grid

GOOD = {
    "dataset": "mnist1d", "dataset_kwargs": {"num_samples": 600},
    "models": {"mlp": {"width": 8}}, "train": {"lr": 0.05, "epochs": 2, "probe_size": 16, "n_train": 200},
}  # fmt: skip


pytestmark = pytest.mark.usefixtures("isolated_data_root")  # generated data in a folder of the module's own


def _build(tmp_path: Path, spec: dict, db: Path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(spec))
    return CliRunner().invoke(app, ["zoo", "build", "--grid", str(grid), "--store", str(db), "--workers", "1"])


def test_exit_code_is_1_when_a_run_fails_and_0_when_all_are_done(tmp_path: Path) -> None:
    db = tmp_path / "zoo.sqlite"
    diverging = {**GOOD, "train": {**GOOD["train"], "lr": [0.05, 1e9]}}
    result = _build(tmp_path, diverging, db)
    assert result.exit_code == 1, result.output
    assert "1 of 2 runs failed (see `gnsel zoo status`)" in result.output
    assert "diverged" in result.output and "Traceback" not in result.output
    again = _build(tmp_path, diverging, db)  # retried, fails again: still non-zero
    assert again.exit_code == 1 and "1 of 2 runs failed" in again.output
    skipped = CliRunner().invoke(app, ["zoo", "build", "--grid", str(tmp_path / "grid.yaml"), "--store", str(db),
                                       "--workers", "1", "--no-retry-failed"])  # fmt: skip
    assert skipped.exit_code == 1  # a failed run left as it is is not done either
    assert _build(tmp_path, GOOD, db).exit_code == 0  # every run of this grid is done
    assert _build(tmp_path, GOOD, db).exit_code == 0  # and stays so


def test_every_run_failing_is_non_zero(tmp_path: Path) -> None:
    result = _build(tmp_path, {**GOOD, "train": {**GOOD["train"], "lr": [1e9, 1e10]}}, tmp_path / "zoo.sqlite")
    assert result.exit_code == 1 and "2 of 2 runs failed" in result.output


def _item(db: Path, k: int = 0):
    cfg = load_grid(GOOD).configs[0]
    store = Store(db, owner="far:1:build")
    rid = store.register_run(cfg.to_dict())
    return store, (rid, cfg.to_dict(), f"far:1:build/{k}", 0)


def test_a_lost_worker_s_run_is_stored_failed(tmp_path: Path) -> None:
    db = tmp_path / "zoo.sqlite"
    store, item = _item(db)
    rid, _, token, _ = item
    assert Store(db, owner=f"{token}#try3").claim(rid) == CLAIMED  # the last try, then its node died
    assert build_module._lost(str(db), item, "worker lost (3 tries): NodeDiedError") == (rid, "failed", "worker lost (3 tries): NodeDiedError")
    run = store.get_run(rid)
    assert run["status"] == "failed" and "NodeDiedError" in run["error"]


def test_a_worker_lost_before_it_claimed_still_fails_its_run(tmp_path: Path) -> None:
    db = tmp_path / "zoo.sqlite"
    store, item = _item(db)
    assert build_module._lost(str(db), item, "worker lost")[1] == "failed"
    assert store.run_status(item[0]) == "failed"


def test_a_lost_run_another_build_holds_is_left_to_it(tmp_path: Path) -> None:
    db = tmp_path / "zoo.sqlite"
    store, item = _item(db)
    other = Store(db)  # a live build of this host took the run over meanwhile
    assert other.claim(item[0]) == CLAIMED
    assert build_module._lost(str(db), item, "worker lost") == (item[0], "held", None)
    assert store.run_status(item[0]) == "running" and store.get_run(item[0])["error"] is None

