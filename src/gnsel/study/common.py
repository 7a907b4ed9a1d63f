"""What the parts of a study share: zoo building, checks of targets and measures, intervals and their wording."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis import bootstrap_ci, kendall
from ..zoo.correlate import TARGETS
from ..measures import get_measure
from ..zoo.build import build_zoo
from ..zoo.grid import load_grid
from .part import StudyContext

__all__ = ["ACC_MARGIN", "TAU_MARGIN", "StudyContext", "build_zoo_store", "check_measures", "check_target", "ci_text",
           "kendall_ci", "oriented", "quiet_logs", "sign_of", "slug", "verdict_of", "zoo_path"]  # fmt: skip


def slug(text: str) -> str:
    """A file-name-safe version of a name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "x"


def zoo_path(ctx: StudyContext, grid: Any) -> Path:
    """The store of one grid: ``zoos/<name>-<hash of its run ids>.sqlite``, so parts (and reruns) that
    train the same grid share it, and a changed grid gets its own store instead of mixing with the old."""
    digest = hashlib.sha256("\n".join(sorted(c.run_id() for c in grid.configs)).encode()).hexdigest()[:10]
    return ctx.out / "zoos" / f"{slug(grid.name)}-{digest}.sqlite"


def build_zoo_store(ctx: StudyContext, grid_source: Any) -> tuple[Path, Any]:
    """Train a grid into its store (finished runs are skipped, so a rerun resumes); returns (path, grid)."""
    grid = load_grid(grid_source)
    path = zoo_path(ctx, grid)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summary = build_zoo(grid.configs, path, workers=ctx.workers, address=ctx.address, progress=ctx.progress)
    ctx.progress.log(f"  zoo {grid.name}: {len(grid.configs)} runs ({summary.skipped} reused, {summary.done} "
                     f"trained, {summary.failed} failed) in {time.perf_counter() - t0:.0f} s -> {path}")  # fmt: skip
    return path, grid


def check_target(target: str, where: str) -> None:
    """A target :func:`gnsel.zoo.correlate.correlate` knows, or a ValueError naming ``where`` and the choices."""
    if target not in TARGETS:
        raise ValueError(f"{where}: unknown target {target!r}; choices: {', '.join(TARGETS)}")


def check_measures(measures: list[str] | None, where: str) -> None:
    """Every name a registered measure (None: all of them), or a ValueError naming ``where.measures``."""
    for m in measures or []:
        try:
            get_measure(m)
        except (KeyError, ValueError) as err:
            raise ValueError(f"{where}.measures: {err}") from err


def kendall_ci(frame: pd.DataFrame, measure: str, target: str, n_boot: int, seed: int = 0) -> tuple[float, float, float]:
    """Kendall tau of ``measure`` against ``target`` over the rows, with a 95% percentile bootstrap interval."""
    sub = frame[[measure, target]].apply(pd.to_numeric, errors="coerce").dropna()
    if len(sub) < 4 or sub[measure].nunique() < 2:
        return math.nan, math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = bootstrap_ci(lambda d: kendall(d[measure], d[target]), sub, n_boot=n_boot, seed=seed)
    return ci.estimate, ci.low, ci.high


def ci_text(est: float, low: float, high: float, digits: int = 2, signed: bool = True) -> str:
    """``+0.24 [+0.10, +0.37]`` (or ``n/a``)."""
    if not math.isfinite(est):
        return "n/a"
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f.format(est)
    return f"{f.format(est)} [{f.format(low)}, {f.format(high)}]"


def sign_of(low: float, high: float) -> int:
    """+1 if an interval lies above 0, -1 if below, 0 if it contains 0 (or is undefined)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return 0
    return 1 if low > 0 else -1 if high < 0 else 0


# The margins the verdicts are read against: the smallest effect that matters in practice.
TAU_MARGIN = 0.1  # a Kendall tau (rank agreement) below this is too weak to rank models by
ACC_MARGIN = 0.005  # a selection effect on test accuracy (a fraction) below half a point


def oriented(low: float, high: float, sign: int) -> tuple[float, float]:
    """An interval turned so that positive means what is hoped (``sign`` -1 flips it)."""
    return (low, high) if sign >= 0 else (-high, -low)


def verdict_of(low: float, high: float, margin: float, p_adjusted: float | None = None, alpha: float = 0.05) -> str:
    """The one verdict rule of every part, for an interval oriented so that positive means GN does what is hoped:
    ``helps`` when it lies above 0 (and, where the part tests a family, its multiplicity-adjusted p ``p_adjusted``
    is below ``alpha``); ``does not help`` only when it excludes a benefit larger than ``margin`` (``high <
    margin``); ``inconclusive`` otherwise (a null result is no evidence of no effect)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    if low > 0:
        return "helps" if p_adjusted is None or not math.isfinite(p_adjusted) or p_adjusted < alpha else "inconclusive"
    if high < margin:
        return "does not help"
    return "inconclusive"


@contextlib.contextmanager
def quiet_logs(*names: str, level: int = logging.WARNING) -> Iterator[None]:
    """Loggers ``names`` at ``level`` or above for the duration (their own levels restored after)."""
    loggers = [logging.getLogger(n) for n in names]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(level, lg.level))
    try:
        yield
    finally:
        for lg, lv in zip(loggers, old, strict=True):
            lg.setLevel(lv)
