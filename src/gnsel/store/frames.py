"""Reading a store's tables into DataFrames (runs with their config flattened, epochs, measures) and exporting
them; the :class:`TablesMixin` part of :class:`gnsel.store.Store`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .export import check_formats, write_frames
from .schema import _CHUNK, _EPOCH_KEYS, _MEASURE_COLUMNS, _RUN_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TablesMixin"]


class TablesMixin:
    """Frames of the store's tables; needs the store's ``_read(sql, params)`` and ``_frame(sql, params)``."""

    _read: Any
    _frame: Any

    def metric_columns(self) -> list[str]:
        """Names of the metric columns of the epochs table, in creation order."""
        return [r[1] for r in self._read("PRAGMA table_info(epochs)") if r[1] not in _EPOCH_KEYS]

    def get_measures(
        self, run_ids: Iterable[str] | None = None, measure: str | None = None
    ) -> pd.DataFrame:
        """Cached measures (optionally of some runs / one measure) as a DataFrame."""
        where, params = [], []
        if measure is not None:
            where.append("measure = ?")
            params.append(measure)
        return self._chunked_frame(
            f"SELECT {', '.join(_MEASURE_COLUMNS)} FROM measures",
            where, params, run_ids, "ORDER BY run_id, epoch, measure",
            float_cols=("value", "seconds"),
        )

    # -- reading -------------------------------------------------------------------

    def _chunked_frame(
        self,
        select: str,
        where: list[str],
        params: list[Any],
        run_ids: Iterable[str] | None,
        order: str,
        float_cols: Iterable[str] = (),
    ) -> pd.DataFrame:
        """Run ``select`` filtered by ``where`` and (chunked) run ids; concat the parts."""
        import pandas as pd  # heavy: pandas (writers in worker processes never read frames)

        def query(extra: list[str], extra_params: list[Any]) -> pd.DataFrame:
            clauses = where + extra
            sql = select + (" WHERE " + " AND ".join(clauses) if clauses else "") + " " + order
            return self._frame(sql, params + extra_params)

        if run_ids is None:
            df = query([], [])
        else:
            ids = list(dict.fromkeys(run_ids))
            parts = [
                query([f"run_id IN ({','.join('?' * len(chunk))})"], chunk)
                for chunk in (ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK))
            ] or [query(["0"], [])]
            df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        for col in float_cols:
            if col in df.columns:
                df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
        return df

    def runs_frame(self, status: str | Iterable[str] | None = None) -> pd.DataFrame:
        """Runs (optionally filtered by status) with the config flattened into ``cfg.*`` columns.

        ``converged`` (whether a finished run met its training criterion ``stop_loss``; empty without one or
        before it finished) and ``stop_epoch`` (its last epoch) come from what the build recorded.
        """
        import pandas as pd  # heavy: pandas (writers in worker processes never read frames)

        where, params = [], []
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            params.extend(statuses)
        sql = f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs"
        sql += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY rowid"
        df = self._frame(sql, params)
        df["attempts"] = df["attempts"].astype("int64")
        df["seconds"] = pd.to_numeric(df["seconds"], errors="coerce").astype("float64")
        extra = [json.loads(s) if isinstance(s, str) and s else {} for s in df["extra_json"]]
        df["converged"] = pd.array([e.get("converged") for e in extra], dtype="boolean")
        df["stop_epoch"] = pd.array([e.get("stop_epoch") for e in extra], dtype="Int64")
        if len(df):
            cfg = pd.json_normalize([json.loads(s) for s in df["config_json"]])
            cfg.columns = [f"cfg.{c}" for c in cfg.columns]
            df = pd.concat([df, cfg], axis=1)
        return df

    def epochs_frame(
        self, run_ids: Iterable[str] | None = None, with_config: bool = False
    ) -> pd.DataFrame:
        """Epoch rows (all metric columns as float), optionally joined with ``cfg.*`` columns."""
        metrics = self.metric_columns()
        df = self._chunked_frame(
            "SELECT * FROM epochs", [], [], run_ids, "ORDER BY run_id, epoch", float_cols=metrics
        )
        df["epoch"] = df["epoch"].astype("int64")
        if with_config:
            runs = self.runs_frame()
            cfg_cols = ["run_id", *(c for c in runs.columns if c.startswith("cfg."))]
            df = df.merge(runs[cfg_cols], on="run_id", how="left")
        return df

    def export(
        self, out_dir: str | os.PathLike[str], formats: Iterable[str] = ("csv", "parquet")
    ) -> list[Path]:
        """Write runs/epochs/measures as ``.csv`` and/or ``.parquet`` into ``out_dir``; return the paths."""
        formats = check_formats(formats)
        frames = {
            "runs": self.runs_frame(),
            "epochs": self.epochs_frame(),
            "measures": self.get_measures(),
        }
        return write_frames(frames, out_dir, formats)
