"""Re-analyse a study folder's zoos the way issue #11's reviewer did: is the zoo trained, is trajectory GN more than
the training budget, and what do the plain baselines score?

    python benchmarks/study_reanalysis.py gnsel-study

For every zoo store under ``<study>/zoos/``: the fraction of runs that met the training criterion, the median
test accuracy, the fraction at 100% training accuracy, Kendall tau of the gap with the test error, and of
trajectory GN with the training budget (sum_t lr_t^2 / n, from the hyper-parameters alone), trajectory GN's
partial tau with the loss gap given the training loss, and the training error's own tau with the gap.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from gnsel.analysis import kendall, partial_kendall
from gnsel.measures import per_epoch_measures
from gnsel.store import Store


def reanalyse(path: Path) -> dict[str, float | str]:
    """The reviewer's numbers for one zoo store (every finished run at its stopping point)."""
    store = Store(path)
    runs = store.runs_frame(status="done").set_index("run_id")
    epochs = store.epochs_frame(list(runs.index))
    last = epochs.loc[epochs.groupby("run_id")["epoch"].idxmax()].set_index("run_id")
    rec = per_epoch_measures()
    traj, budget = rec["traj_gn"](last), rec["budget"](last)
    test_error = 1 - last["test_acc"]
    return {
        "zoo": path.stem,
        "runs": len(runs),
        "converged": float(runs["converged"].fillna(False).mean()),
        "median_test_acc": float(last["test_acc"].median()),
        "at_100pct_train_acc": float((last["train_acc"] >= 1.0).mean()),
        "tau(gap_loss, test_error)": kendall(last["gap_loss"], test_error).value,
        "tau(gap_acc, test_error)": kendall(last["gap_acc"], test_error).value,
        "tau(traj_gn, budget)": kendall(traj, budget).value,
        "tau(traj_gn, gap_loss)": kendall(traj, last["gap_loss"]).value,
        "partial tau(traj_gn, gap_loss | train_loss)": partial_kendall(traj, last["gap_loss"], last["train_loss"]),
        "tau(train_error, gap_loss)": kendall(1 - last["train_acc"], last["gap_loss"]).value,
        "tau(budget, gap_loss)": kendall(budget, last["gap_loss"]).value,
    }


def main(folder: str) -> None:
    rows = [reanalyse(p) for p in sorted(Path(folder, "zoos").glob("*.sqlite"))]
    if not rows:
        sys.exit(f"no zoo stores under {folder}/zoos")
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 3):
        print(pd.DataFrame(rows).set_index("zoo").T.to_string())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "gnsel-study")
