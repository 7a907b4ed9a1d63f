"""``gnsel study`` end to end on a test-sized study: every part, every table and figure of the report,
reuse on a rerun, resumption after an interruption, and the errors a user can make."""

from __future__ import annotations

import base64
import io
import re
import sqlite3
from pathlib import Path

import matplotlib.image as mpimg
import pandas as pd
import pytest
from rich.console import Console

from gnsel.cli.progress import RichProgress
from study_tiny import TINY, TINY_ARCH
from typer.testing import CliRunner

from gnsel.cli import app
from gnsel.study import PARTS, list_study_presets, load_study, parse_parts, run_study

TABLES = {
    "correlation": ["correlation_scores", "correlation_secondary", "correlation_scores_all", "correlation_phases",
                    "correlation_missed", "correlation_noise", "correlation_granulated", "correlation_per_epoch"],
    "cost": ["cost_summary", "cost_ratios", "cost_claim2", "cost_claim2_estimate"],
    "hpo": ["hpo_replay", "hpo_live", "hpo_vs_val_loss", "hpo_effects", "hpo_bandit_gap", "hpo_weight_tuned",
            "hpo_gn_cost", "selection_exact", "selection_table", "hpo_weight_curve", "checkpoint_selection",
            "checkpoint_picks"],
    "architectures": ["architectures_tiny-arch"],
    "claims": ["claims", "claims_tests"],
}
FIGURES = {
    "correlation": ["scatter_gn_full.png", "scatter_gn_fc.png", "scatter_traj_gn.png", "scatter_val_loss.png",
                    "epochs_kendall.png", "epochs_granulated.png"],
    "cost": ["cost_ratios.png"],
    "hpo": ["selected_accuracy.png", "replay_anytime.png", "checkpoint_selection.png"],
    "architectures": ["agreement_tiny-arch_gap_loss.png", "agreement_tiny-arch_test_error.png"],
}  # fmt: skip


pytestmark = pytest.mark.usefixtures("isolated_data_root")


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=200), buf


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    console, buf = _console()
    result = run_study(TINY, out, workers=2, progress=RichProgress(console, bars=False))
    return result, buf.getvalue()


def _zoo(out: Path, name: str = "tiny") -> Path:
    (store,) = (out / "zoos").glob(f"{name}-{'[0-9a-f]' * 10}.sqlite")  # one store per grid
    return store


def _run_times(store: Path) -> dict[str, str]:
    with sqlite3.connect(store) as conn:
        return dict(conn.execute("SELECT run_id, finished_at FROM runs WHERE status = 'done'").fetchall())


# ------------------------------------------------------------------------------------- the report
def test_every_part_ran_and_the_report_has_every_section(study):
    result, _ = study
    assert result.computed == list(PARTS) and not result.reused
    md = result.files["md"].read_text()
    html = result.files["html"].read_text()
    for part in PARTS:
        section = result.sections[part]
        assert section.title in md and section.title in html
        assert f'id="{section.key}"' in html
        assert section.findings, f"{part} states no finding"
    assert "## Verdict" in md or "Verdict" in html
    summary = md.split("## Verdict", 1)[1].lstrip().splitlines()[0]
    assert "In short, on this run:" in summary and "a training epoch" in summary and "Kendall tau" in summary
    verdicts = {f.verdict for s in result.sections.values() for f in s.findings}
    assert verdicts <= {"helps", "does not help", "mixed", "inconclusive", "confirmed", "refuted", "info"}


def test_every_table_is_a_csv_and_in_the_report(study):
    result, _ = study
    md = result.files["md"].read_text()
    for part, names in TABLES.items():
        got = [t.name for t in result.sections[part].tables]
        assert got == names
        for t in result.sections[part].tables:
            csv = result.files["tables"] / f"{t.name}.csv"
            assert csv.exists()
            back = pd.read_csv(csv, index_col=0 if t.index else None)
            assert len(back) == len(t.frame) > 0
            assert t.caption.split("`")[0][:30] in md


def test_every_figure_is_a_png_embedded_in_the_html(study):
    result, _ = study
    html = result.files["html"].read_text()
    md = result.files["md"].read_text()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    expected = [name for names in FIGURES.values() for name in names]
    assert len(embedded) == len(expected)
    for part, names in FIGURES.items():
        assert [Path(f.path).name for f in result.sections[part].figures] == names
    for name, data in zip(expected, embedded, strict=True):
        png = result.files["figures"] / name
        assert f"](figures/{name})" in md
        assert png.read_bytes() == base64.b64decode(data)
        img = mpimg.imread(png)
        assert img.shape[0] > 200 and img.shape[1] > 300  # a real plot, not an empty file
    assert 'src="http' not in html and "<script" not in html


def test_correlation_tables_hold_measured_scores_with_intervals(study):
    result, _ = study
    scores = pd.read_csv(result.files["tables"] / "correlation_scores.csv", index_col=0)
    assert {"gn_full", "gn_fc", "traj_gn", "val_loss", "snip", "ww_alpha", "db_mixup"} <= set(scores.index)
    ok = scores.dropna(subset=["kendall", "kendall_low", "kendall_high"])
    assert len(ok) >= 7
    assert (ok["kendall_low"] <= ok["kendall"] + 1e-12).all() and (ok["kendall"] <= ok["kendall_high"] + 1e-12).all()
    assert ok["kendall"].between(-1, 1).all()
    # pacbayes_flatness fails on models that never learned (no accuracy drop to find); with fewer than two scored
    # models it has no interval and is not in ok
    assert (ok.drop(index="pacbayes_flatness", errors="ignore")["models"] == 12).all()
    phases = pd.read_csv(result.files["tables"] / "correlation_phases.csv")
    assert list(dict.fromkeys(phases["phase"])) == ["early", "middle", "final"]
    assert set(phases["measure"]) == {"gn_full", "gn_fc", "traj_gn", "val_loss", "budget", "train_loss"}
    # the tiny zoo trains 3 epochs: no run meets the criterion, so all are scored and every one is reported missed
    assert len(pd.read_csv(result.files["tables"] / "correlation_missed.csv")) == 12
    assert {"partial", "stratified", "granulated_low", "granulated_high", "p_holm", "rank", "vs_baselines",
            "beats_baselines"} <= set(scores.columns)


def test_cost_table_shows_exact_gn_far_cheaper_than_the_naive_loop(study):
    result, _ = study
    cost = pd.read_csv(result.files["tables"] / "cost_summary.csv")
    assert set(cost["case"]) == {"mlp w16", "cnn1d c4"}
    r = cost.pivot(index="case", columns="method", values="ratio_to_epoch")
    assert (r["train_epoch"] == 1).all()
    assert (r["naive"] > 3 * r["gn_full"]).all()
    assert (cost["max_rel_diff"] < 1e-4).all()


def test_hpo_tables_cover_every_algorithm_objective_pair(study):
    result, _ = study
    replay = pd.read_csv(result.files["tables"] / "hpo_replay.csv")
    pairs = set(zip(replay["algorithm"], replay["objective"], strict=True))
    assert pairs == {(a, o) for a in ("random", "hyperband") for o in ("val_loss", "gn_full", "val_loss+0.1*gn_fc")}
    assert (replay["seeds"] == 4).all() and replay["test_acc"].between(0, 1).all()
    assert (replay["test_acc_low"] <= replay["test_acc"] + 1e-12).all()
    live = pd.read_csv(result.files["tables"] / "hpo_live.csv")
    assert len(live) == 4 and (live["status"] == "done").all()
    assert live["test_acc"].between(0, 1).all() and (live["trials"] == 2).all()
    gn_live = live[live["objective"] == "gn_full"]
    assert (gn_live["gn_seconds"] > 0).all() and (live[live["objective"] == "val_loss"]["gn_seconds"] == 0).all()
    diffs = pd.read_csv(result.files["tables"] / "hpo_vs_val_loss.csv")
    # per algorithm (4 seeds each), never pooled over the two algorithms
    assert set(zip(diffs["algorithm"], diffs["objective"])) == {
        (a, o) for a in ("random", "hyperband") for o in ("gn_full", "val_loss+0.1*gn_fc")}
    assert (diffs["pairs"] == 4).all()


def test_architectures_table_scores_zero_cost_proxies_at_init_too(study):
    result, _ = study
    t = pd.read_csv(result.files["tables"] / "architectures_tiny-arch.csv")
    assert set(t["target"]) == {"gap_loss", "test_error"}
    assert {"gn_full", "snip", "snip@init", "synflow@init", "ww_alpha", "db_mixup", "param_norm"} <= set(t["measure"])
    assert (t["models"] <= 6).all() and (t[t["measure"] == "gn_full"]["models"] == 6).all()
    signs = dict(zip(t["measure"], t["expected_sign"], strict=False))
    assert signs["gn_full"] == 1 and signs["snip@init"] == -1


def test_the_report_renders_in_headless_chromium(study):
    from gnsel.report import _chromium_binary

    try:
        _chromium_binary()
    except RuntimeError:
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    from gnsel.report import render_check

    result, _ = study
    shot = result.out / "screenshot.png"
    status = render_check(result.files["html"], screenshot=shot)
    assert len(status) == sum(len(v) for v in FIGURES.values())
    assert all(status)
    assert shot.stat().st_size > 10_000


# ------------------------------------------------------------------------------- rerun and resume
def test_a_rerun_reuses_every_part(study):
    result, _ = study
    before = _run_times(_zoo(result.out))
    console, buf = _console()
    again = run_study(TINY, result.out, workers=2, progress=RichProgress(console, bars=False))
    assert again.reused == list(PARTS) and not again.computed
    assert _run_times(_zoo(result.out)) == before
    assert again.files["html"].exists()
    assert "finished by an earlier run" in again.files["md"].read_text()


def test_an_interrupted_study_resumes_without_redoing_work(tmp_path):
    class Stop(KeyboardInterrupt):
        pass

    steps: list[str] = []

    def interrupt(step: str) -> None:
        steps.append(step)
        if step.startswith("hpo:live:"):
            raise Stop(step)

    spec = {**TINY, "hpo": {**TINY["hpo"], "live": {**TINY["hpo"]["live"], "algorithms": ["random"]}}}
    with pytest.raises(Stop):
        run_study(spec, tmp_path, parts="correlation,hpo", workers=2, progress=RichProgress(_console()[0], bars=False),
                  on_step=interrupt)  # fmt: skip
    assert steps[-1] == "hpo:live:random-val_loss" and "correlation:done" in steps
    assert (tmp_path / "correlation" / "section.json").exists() and not (tmp_path / "hpo" / "section.json").exists()
    before = _run_times(_zoo(tmp_path))
    console, buf = _console()
    steps.clear()
    result = run_study(spec, tmp_path, parts="correlation,hpo", workers=2, progress=RichProgress(console, bars=False),
                       on_step=steps.append)  # fmt: skip
    log = buf.getvalue()
    assert result.reused == ["correlation"] and result.computed == ["hpo"]
    assert "0 trained" in log and _run_times(_zoo(tmp_path)) == before  # no zoo run retrained
    assert "reusing the finished replay" in log
    assert "random, val_loss: reused" in log  # the live search finished before the interrupt
    assert steps.count("hpo:live:random-gn_full") == 1 and "hpo:live:random-val_loss" not in steps
    live = pd.read_csv(tmp_path / "tables" / "hpo_live.csv")
    assert len(live) == 2 and (live["status"] == "done").all()
    # the report covers the finished parts and says which are still to run
    md = result.files["md"].read_text()
    assert "not run yet (gnsel study --part cost)" in md


def test_changed_settings_recompute_only_that_part(tmp_path):
    spec = {**TINY, "correlation": {**TINY["correlation"], "bootstrap": 20}}
    r1 = run_study(spec, tmp_path, parts="correlation", workers=1, progress=RichProgress(_console()[0], bars=False))
    spec2 = {**TINY, "correlation": {**TINY["correlation"], "bootstrap": 21}}
    console, buf = _console()
    r2 = run_study(spec2, tmp_path, parts="correlation", workers=1, progress=RichProgress(console, bars=False))
    assert r1.computed == r2.computed == ["correlation"]
    assert "12 reused, 0 trained" in buf.getvalue()  # the zoo itself is kept


# ----------------------------------------------------------------------------------------- errors
def test_presets_load_and_validate():
    assert {"quick", "paper"} <= set(list_study_presets())
    quick = load_study("quick")
    assert quick.parts["correlation"]["zoo"] == "quick" and len(quick.parts["cost"]["cases"]) == 4
    paper = load_study("paper")
    assert len(paper.zoo_grids("architectures")) == 3
    assert parse_parts(None) == list(PARTS) and parse_parts(["hpo,cost"]) == ["cost", "hpo"]


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"colleration": {}}, "colleration"),
        ({"correlation": {"zoo": {**TINY_ARCH, "dataset": "nope"}}}, "mnist1d"),
        ({"correlation": {"target": "gap"}}, "gap_acc"),
        ({"correlation": {"measures": ["gn_ful"]}}, "gn_ful"),
        ({"correlation": {"bootstrap": 0}}, "bootstrap"),
        ({"cost": {"cases": []}}, "cost.cases"),
        ({"cost": {"cases": [{"model": "resnet21"}]}}, "resnet20"),
        ({"cost": {"cases": [{"model": "mlp", "widht": 3}]}}, "widht"),
        ({"hpo": {"replay": {"algorithms": ["sgd"]}}}, "sgd"),
        ({"hpo": {"replay": {"objectives": ["val_los"]}}}, "val_los"),
        ({"hpo": {"live": {"algorithms": ["random"], "space": None}}}, "hpo.live.space"),
        ({"hpo": {"live": {"algorithms": ["hyperband"], "objectives": ["[val_loss, gn_full]"],
                           "space": TINY["hpo"]["live"]["space"]}}}, "no (algorithm, objective) pair"),
        ({"hpo": {"zoo": {**TINY["hpo"]["zoo"], "train": {**TINY["hpo"]["zoo"]["train"], "n_train": [200, 600]}}}},
         "hpo.zoo: the zoo varies n_train (200, 600); a search compares models trained on the same data"),
        ({"hpo": {"live": {"algorithms": ["random"], "space": {
            **TINY["hpo"]["live"]["space"], "fixed": {"probe_size": 64},
            "space": {**TINY["hpo"]["live"]["space"]["space"], "n_train": {"choice": [300, 600]}}}}}},
         "space.n_train: n_train defines the data"),
        ({"architectures": {"targets": ["accuracy"]}}, "accuracy"),
    ],
)  # fmt: skip
def test_a_bad_study_names_the_problem(change, needle):
    spec = {**TINY, **{k: ({**TINY.get(k, {}), **v} if isinstance(v, dict) else v) for k, v in change.items()}}
    with pytest.raises(ValueError) as err:
        load_study(spec)
    assert needle in str(err.value)


def test_cli_errors_are_clear_and_nothing_runs(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["study", "--preset", "nope", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "quick" in res.output and "paper" in res.output
    res = runner.invoke(app, ["study", "--part", "everything", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "correlation" in res.output
    assert not (tmp_path / "x").exists()


def test_cli_runs_one_part_of_a_study_file(tmp_path):
    import yaml

    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump(TINY))
    res = CliRunner().invoke(app, ["study", "--preset", str(path), "--part", "cost", "--out", str(tmp_path / "o"),
                                   "--device", "cpu"])  # fmt: skip
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())  # Rich wraps lines at the terminal's width
    assert "In short, on this run:" in said and "a training epoch" in said  # the answer, printed
    assert (tmp_path / "o" / "report.html").exists() and (tmp_path / "o" / "tables" / "cost_summary.csv").exists()
    assert "not run yet" in (tmp_path / "o" / "report.md").read_text()


def test_a_changed_grid_gets_its_own_zoo_and_old_runs_do_not_mix_in(tmp_path):
    small = {**TINY["correlation"]["zoo"], "models": {"mlp": {"width": [16, 64]}}}  # 8 of the 12 models
    for zoo, n in ((TINY["correlation"]["zoo"], 12), (small, 8)):
        spec = {**TINY, "correlation": {**TINY["correlation"], "zoo": zoo, "measures": ["gn_full", "val_loss"]}}
        r = run_study(spec, tmp_path, parts="correlation", workers=1, progress=RichProgress(_console()[0], bars=False))
        scores = pd.read_csv(r.files["tables"] / "correlation_scores.csv", index_col=0)
        assert (scores["models"] == n).all()
    assert len(list((tmp_path / "zoos").glob(f"tiny-{'[0-9a-f]' * 10}.sqlite"))) == 2


def test_a_folder_named_like_a_preset_does_not_shadow_it(tmp_path, monkeypatch):
    from gnsel.zoo.grid import load_grid

    monkeypatch.chdir(tmp_path)
    (tmp_path / "quick").mkdir()  # e.g. an output folder called "quick"
    assert load_study("quick").name == "quick" and load_grid("quick").name == "quick"
    (tmp_path / "mine.yaml").write_text("description: only a cost part\ncost: {cases: [{model: mlp}]}\n")
    assert load_study("mine.yaml").name == "mine"
    with pytest.raises(ValueError, match="does not exist"):
        load_study("missing.yaml")


def test_the_claims_table_has_five_rows_inside_their_intervals_and_comes_first(study):
    result, _ = study
    claims = pd.read_csv(result.files["tables"] / "claims.csv")
    assert list(claims.columns) == ["claim", "statement", "measured", "estimate", "low", "high", "verdict"]
    assert claims["claim"].tolist() == [1, 2, 3, 4, 5]
    assert set(claims["verdict"]) <= {"confirmed", "refuted", "inconclusive"}
    measured = claims.dropna(subset=["estimate", "low", "high"])
    assert len(measured) == 5  # the tiny study runs every part, so every claim is measured
    assert ((measured["low"] <= measured["estimate"]) & (measured["estimate"] <= measured["high"])).all()
    md = result.files["md"].read_text()
    assert md.index("The five claims of the seed paper") < md.index("Does GN rank models")
