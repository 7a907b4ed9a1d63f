"""PNG figures: measure vs target scatter, and scores over epochs with CI bands.

Figures are drawn on the Agg canvas directly (``matplotlib.figure.Figure`` +
``FigureCanvasAgg``), so no global backend is switched and no display is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .epochs import combine_epoch_scores
from .ranking import kendall

__all__ = ["scatter_measure_vs_gap", "score_over_epochs"]


def _save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (parents created) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, format="png", dpi=120, bbox_inches="tight")
    return out


def scatter_measure_vs_gap(
    df: pd.DataFrame,
    measure: str,
    target: str,
    path: str | Path,
    hue: str | None = None,
    *,
    logx: bool = False,
    title: str | None = None,
) -> Path:
    """Scatter of ``measure`` (x) against ``target`` (y), coloured by ``hue``; Kendall tau in the title."""
    data = df[[measure, target] + ([hue] if hue else [])].copy()
    data[measure] = pd.to_numeric(data[measure], errors="coerce")
    data[target] = pd.to_numeric(data[target], errors="coerce")
    data = data.dropna(subset=[measure, target])
    fig = Figure(figsize=(5.0, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    if hue is None:
        ax.scatter(data[measure], data[target], s=14, alpha=0.8)
    elif pd.api.types.is_numeric_dtype(data[hue]) and data[hue].nunique() > 8:
        points = ax.scatter(data[measure], data[target], c=data[hue], s=14, alpha=0.8, cmap="viridis")
        fig.colorbar(points, ax=ax, label=hue)
    else:
        for value, part in data.groupby(hue, sort=True, dropna=False):
            ax.scatter(part[measure], part[target], s=14, alpha=0.8, label=f"{hue}={value}")
        ax.legend(fontsize=7, loc="best")
    if logx:
        ax.set_xscale("log")
    tau = kendall(data[measure], data[target])
    ax.set_xlabel(measure)
    ax.set_ylabel(target)
    ax.set_title(title or f"{measure} vs {target}: Kendall tau = {tau.value:.3f} (n={tau.n})", fontsize=9)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _wide(frame: pd.DataFrame | Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Wide epoch x measure frame from a mapping of per_epoch frames, a per_epoch frame or a wide frame."""
    if isinstance(frame, Mapping):
        return combine_epoch_scores(frame)
    if "score" in frame.columns:
        return combine_epoch_scores({"score": frame})
    return frame


def score_over_epochs(
    frame: pd.DataFrame | Mapping[str, pd.DataFrame],
    path: str | Path,
    title: str,
    *,
    ylabel: str = "score",
) -> Path:
    """One line per measure over epochs, with a band where ``<m>_low``/``<m>_high`` columns exist.

    ``frame`` is a wide frame indexed by epoch (a column per measure, optional
    ``<m>_low``/``<m>_high``), a mapping ``{measure: per_epoch(...)}``, or a single
    :func:`per_epoch` frame.
    """
    wide = _wide(frame).sort_index()
    measures = [c for c in wide.columns
                if not (str(c).endswith("_low") or str(c).endswith("_high"))]
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    x = np.asarray(wide.index, dtype=np.float64)
    for m in measures:
        line, = ax.plot(x, wide[m].to_numpy(np.float64), marker="o", ms=3, label=str(m))
        low, high = f"{m}_low", f"{m}_high"
        if low in wide.columns and high in wide.columns:
            ax.fill_between(x, wide[low].to_numpy(np.float64), wide[high].to_numpy(np.float64),
                            color=line.get_color(), alpha=0.2, linewidth=0)
    ax.axhline(0.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel(str(wide.index.name or "epoch"))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if measures:
        ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return _save(fig, path)
