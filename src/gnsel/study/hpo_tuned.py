"""The weight of ``val_loss + w * gn`` chosen on validation data, and what the tuned objective does to the selection.

A fixed weight (``0.1``) is a choice nobody tuned. Here a practitioner's procedure is measured: for grid and
random search (exact, :func:`gnsel.tune.exact.weight_curve`), the ``w`` of a grid whose selection has the
least expected *validation* error is chosen (the test set plays no part), and the effect is the expected
test accuracy of the selection with that ``w`` minus that with ``val_loss`` alone. The interval re-chooses
``w`` on every bootstrap resample of the zoo's configurations (seeds nested, the resamples of
:mod:`gnsel.study.hpo_effects`), so it covers the choice of the weight as well as the draw of the zoo.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..progress import SILENT, Progress
from ..report import Finding
from ..tune.exact import WEIGHT_GRID, expected_selected, weight_curve, weight_table
from ..tune.lookup import Lookup
from .common import ACC_MARGIN, ci_text, verdict_of
from .hpo_effects import EXACT_ALGORITHMS, bootstrap_draws, replay_k, resample_lookup, widened_interval

__all__ = ["CRITERION", "Tuned", "tuned_effects", "tuned_findings", "tuned_label"]

CRITERION = "val_error"  # what the weight is chosen by: the selection's expected validation error


def tuned_label(gn: str, base: str = "val_loss") -> str:
    """How a tuned objective is named in the tables: ``val_loss+w*gn_fc`` (``w`` in its own column)."""
    return f"{base}+w*{gn}"


@dataclass
class Tuned:
    """The full zoo's weight curves, the tuned effects with their intervals, and every resample's choice."""

    curves: pd.DataFrame  # algorithm, gn, weight, objective, expected_val_error, expected_test_acc, chosen
    effects: pd.DataFrame  # algorithm, objective, gn, weight, effect, low, high, resamples, share_zero, verdict
    samples: pd.DataFrame  # resample, algorithm, gn, weight, effect


def _one(lookup: Lookup, gns: Sequence[str], algorithms: Sequence[str], k: int, weights: Sequence[float],
         base: str) -> dict[tuple[str, str], tuple[float, float, pd.DataFrame]]:  # fmt: skip
    """Per (algorithm, gn) on one zoo: (chosen w, effect of the tuned objective over ``base``, the curve)."""
    table = weight_table(lookup, gns, weights, base, CRITERION)
    base_v, acc = table[base].to_numpy(float), table["test_acc"].to_numpy(float)
    out = {}
    for a in algorithms:
        rep = EXACT_ALGORITHMS[a]
        kk = int(k) if rep else min(int(k), int(np.isfinite(base_v).sum()))
        ref = expected_selected(base_v, acc, kk, rep)
        for gn in gns:
            curve = weight_curve(table, gn, k, rep, weights, base, CRITERION)
            pick = curve[curve["chosen"]]
            if pick.empty:
                out[(a, gn)] = (math.nan, math.nan, curve)
                continue
            out[(a, gn)] = (float(pick["weight"].iloc[0]), float(pick["expected_test_acc"].iloc[0]) - ref, curve)
    return out


def tuned_effects(lookup: Lookup, gns: Sequence[str], algorithms: Sequence[str], budget: int, *,
                  weights: Sequence[float] = WEIGHT_GRID, resamples: int = 1000, seed: int = 0,
                  base: str = "val_loss", progress: Progress = SILENT) -> Tuned:  # fmt: skip
    """The tuned-weight effects for the exact algorithms (grid, random) among ``algorithms``, ``k = budget // epochs``."""
    algs = [a for a in algorithms if a in EXACT_ALGORITHMS]
    k = replay_k(budget, lookup)
    empty = Tuned(pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    if not algs or not gns:
        return empty
    full = _one(lookup, gns, algs, k, weights, base)
    curves = pd.concat([c.assign(algorithm=a, gn=gn) for (a, gn), (_, _, c) in full.items()], ignore_index=True)
    curves = curves[["algorithm", "gn", "weight", "objective", f"expected_{CRITERION}", "expected_test_acc", "chosen"]]
    rows = []
    with progress.task("hpo bootstrap, tuned weights", total=int(resamples)) as bar:
        for b, draw in enumerate(bootstrap_draws(lookup, int(resamples), seed)):
            for (a, gn), (w, eff, _) in _one(resample_lookup(lookup, draw), gns, algs, k, weights, base).items():
                rows.append({"resample": b, "algorithm": a, "gn": gn, "weight": w, "effect": eff})
            bar.advance(1)
    samples = pd.DataFrame(rows, columns=["resample", "algorithm", "gn", "weight", "effect"])
    out = []
    for (a, gn), (w, eff, _) in full.items():
        s = samples[(samples["algorithm"] == a) & (samples["gn"] == gn)]
        lo, hi, n = widened_interval(eff, s["effect"].to_numpy(float))
        out.append({"algorithm": a, "objective": tuned_label(gn, base), "gn": gn, "weight": w, "effect": eff,
                    "low": lo, "high": hi, "resamples": n, "share_zero": float((s["weight"] == 0).mean()) if n else math.nan,
                    "verdict": verdict_of(lo, hi, ACC_MARGIN)})  # fmt: skip
    return Tuned(curves, pd.DataFrame(out), samples)


def tuned_findings(tuned: Tuned, n_configs: int, resamples: int, base: str = "val_loss") -> list[Finding]:
    """One finding per tuned objective: the chosen weight and its effect per exact algorithm."""
    out = []
    if tuned.effects.empty:
        return out
    grid = sorted(set(tuned.curves["weight"]))
    for obj, g in tuned.effects.groupby("objective", sort=False):
        parts = ", ".join(f"{r.algorithm} (w = {r.weight:g}) {ci_text(r.effect, r.low, r.high, 3)}" for r in g.itertuples())
        zero = ", ".join(f"{r.algorithm} {r.share_zero:.0%}" for r in g.itertuples())
        verdicts = set(g["verdict"])
        out.append(Finding(
            f"With its weight chosen on validation data (the least expected validation error of the selection over "
            f"w in {', '.join(f'{w:g}' for w in grid)}; never the test set), `{obj}` instead of `{base}` changes "
            f"the selected model's expected test accuracy by: {parts}. The interval re-chooses w on each of "
            f"{resamples} bootstrap resamples of the zoo's {n_configs} configurations (seeds nested); w = 0 (the "
            f"validation loss alone) was chosen in {zero} of them; a benefit below {ACC_MARGIN} is none in practice.",
            verdicts.pop() if len(verdicts) == 1 else "mixed"))  # fmt: skip
    return out
