"""Export of a store's tables to CSV and Parquet files."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..keys import json_default

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("csv", "parquet")


def _export_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Make object columns CSV/Parquet-portable: lists/dicts and mixed types become JSON text."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype != object:
            continue
        values = out[col].dropna()
        types = {type(v) for v in values}
        nested = any(issubclass(t, (list, tuple, dict)) for t in types)
        if not nested and (len(types) <= 1 or types <= {int, float}):
            continue
        out[col] = out[col].map(
            lambda v: v if v is None or isinstance(v, str) or (isinstance(v, float) and math.isnan(v))
            else json.dumps(v, sort_keys=True, default=json_default)
        )
    return out


def check_formats(formats: Iterable[str]) -> list[str]:
    """The export formats as a list; a ValueError for one that is not 'csv' or 'parquet'."""
    formats = list(formats)
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export format(s) {sorted(unknown)}; use 'csv' and/or 'parquet'")
    return formats


def write_frames(frames: Mapping[str, pd.DataFrame], out_dir: str | os.PathLike[str], formats: list[str]) -> list[Path]:
    """Write each frame as ``<name>.<format>`` into ``out_dir`` (created); return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for name, df in frames.items():
        df = _export_safe(df)
        for fmt in formats:
            path = out / f"{name}.{fmt}"
            if fmt == "csv":
                df.to_csv(path, index=False)
            else:
                df.to_parquet(path, index=False)
            paths.append(path)
    return paths
