"""Shipped YAML presets (zoo grids, studies) and users' YAML files, resolved the same way for both."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml


def list_presets(package: str) -> list[str]:
    """Names of the ``*.yaml`` presets shipped in ``package``'s ``presets`` folder."""
    folder = resources.files(package) / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_preset(source: str | Path, package: str, kind: str) -> tuple[Any, str]:
    """``(parsed YAML, name)`` of the preset ``source`` shipped in ``package``, or of the YAML file ``source``.

    A preset name wins over a folder of the same name (an output folder called ``quick``, say); a path
    ending in ``.yaml``/``.yml``, or any existing file, is read as a file. ``kind`` ("grid", "study")
    names what is read in the errors.
    """
    path = Path(source)
    if str(source) in list_presets(package) and not path.is_file():
        return yaml.safe_load((resources.files(package) / "presets" / f"{source}.yaml").read_text()), str(source)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ValueError(f"{kind} file {path} does not exist")
        return yaml.safe_load(path.read_text()), path.stem
    raise ValueError(
        f"unknown {kind} preset {str(source)!r}; presets: {', '.join(list_presets(package))} (or give a .yaml file)"
    )
