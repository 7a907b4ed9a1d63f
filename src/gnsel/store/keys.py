"""Run ids: the canonical JSON of a configuration and its hash (how the store keys runs)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["canonical_json", "config_hash"]


def _json_default(obj: Any) -> Any:
    """Convert numpy scalars/arrays, paths, mappings and sets to JSON-able values."""
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if hasattr(obj, "tolist"):  # numpy scalars and arrays, 0-d tensors
        return obj.tolist()
    raise TypeError(f"config value of type {type(obj).__name__} is not JSON serialisable")


def canonical_json(config: Mapping[str, Any]) -> str:
    """Canonical JSON of a config: sorted keys, no whitespace, floats as ``repr``."""
    return json.dumps(dict(config), sort_keys=True, separators=(",", ":"), default=_json_default)


def config_hash(config: Mapping[str, Any]) -> str:
    """First 16 hex chars of the sha256 of :func:`canonical_json` of the full config (a run's id)."""
    from ..config import config_hash as _hash  # a config<->store cycle the lead removes at merge (see training.config)

    return _hash(config)
