"""Re-check a study folder's model selection the way issue #12's reviewer did, from its tables alone.

    python benchmarks/selection_reanalysis.py gnsel-study

Prints: (1) the exact expectations of grid and random search beside the replayed seeds' means (``replay_z``: the
gap in Monte Carlo standard errors); (2) how many distinct configurations the replays ever select per
(algorithm, objective) -- why seeds are no independent evidence; (3) the per-algorithm effects against
``val_loss`` with intervals over the zoo's configurations (never pooled), the weight-tuned objectives, and how
often a GN objective's selection sits at the smallest training set (0 when the data is held fixed); (4) whether
every live search selected at its budget; (5) checkpoint selection.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def _read(folder: Path, name: str) -> pd.DataFrame | None:
    path = folder / "tables" / f"{name}.csv"
    return pd.read_csv(path) if path.exists() else None


def _section(title: str, frame: pd.DataFrame | None) -> None:
    print(f"\n== {title}")
    print("(missing)" if frame is None or frame.empty else frame.to_string(index=False))


def main(folder: str) -> None:
    root = Path(folder)
    if not (root / "tables").is_dir():
        sys.exit(f"no study tables under {root}/tables")
    pd.set_option("display.width", 220)
    pd.set_option("display.precision", 4)
    exact = _read(root, "selection_exact")
    if exact is not None and "replay_z" in exact:
        checked = exact[exact["replay_mean"].notna()]
        _section("exact vs replayed (grid without, random with replacement, the replay's k)",
                 checked[["algorithm", "objective", "k", "expected_test_acc", "replay_mean", "replay_se", "replay_z"]])
        z = checked["replay_z"].abs()
        print(f"max |z| = {z.max():.2f}; within 2 standard errors: {(z <= 2).sum()} of {len(z)}; "
              f"within 3: {(z <= 3).sum()} of {len(z)}")
    runs_path = root / "hpo" / "replay_runs.csv"
    if runs_path.exists():
        runs = pd.read_csv(runs_path)
        distinct = runs.groupby(["algorithm", "objective"])["selected"].nunique().unstack()
        _section(f"distinct configurations selected over {runs['seed'].nunique()} replay seeds", distinct.reset_index())
        small = runs["selected"].astype(str).str.extract(r"n_train=(\d+)")[0]
        if small.notna().any():
            share = (small.astype(float) == small.astype(float).min()).groupby(runs["objective"]).mean()
            _section("share of selections at the smallest n_train", share.reset_index())
        else:
            print("n_train is not a search dimension of this zoo (held fixed): no selection can prefer less data")
    _section("effects vs val_loss per algorithm (bootstrap over configurations, seeds nested)", _read(root, "hpo_effects"))
    _section("val_loss + w * gn with w chosen on validation data", _read(root, "hpo_weight_tuned"))
    live = _read(root, "hpo_live")
    if live is not None and "selected_epoch" in live:
        done = live[live["status"] == "done"]
        _section("live selections", done[[c for c in ("algorithm", "objective", "selected_epoch", "at_budget", "test_acc")
                                          if c in done]])  # fmt: skip
        print(f"selected epochs: {sorted(set(done['selected_epoch'].dropna().astype(int)))} (one budget per search)")
    ck = _read(root, "checkpoint_selection")
    if ck is not None:
        cols = [c for c in ("selector", "runs", "regret_points", "low", "high", "vs_baseline", "vs_low", "vs_high",
                            "vs_last", "vs_last_low", "vs_last_high", "share_last", "verdict") if c in ck]  # fmt: skip
        _section("checkpoint selection (regret as a fraction; regret_points x100)", ck[cols])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "gnsel-study")
