"""Run keys: the canonical JSON of a configuration and its hash, a run's id everywhere (config, store, measures).

Standard library only, so every layer can key by it without importing the layer that trains or stores.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["canonical_json", "config_hash", "json_default"]


def json_default(obj: Any) -> Any:
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
    return json.dumps(dict(config), sort_keys=True, separators=(",", ":"), default=json_default)


def config_hash(mapping: Mapping[str, Any], length: int = 16) -> str:
    """First ``length`` hex digits of the sha256 of ``mapping`` as canonical JSON (the store's run key)."""
    try:
        text = canonical_json(mapping)
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot hash configuration: it is not plain JSON ({err})") from err
    if any(bad in text for bad in ("NaN", "Infinity")):
        raise ValueError("cannot hash configuration: it is not plain JSON (it contains NaN or infinity)")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]
