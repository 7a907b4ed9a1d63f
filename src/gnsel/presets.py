"""Shipped YAML presets (zoo grids, studies) and users' YAML files, resolved the same way for both."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

__all__ = ["list_presets", "read_mapping", "read_preset", "read_yaml", "yaml_error", "yaml_kind"]


def yaml_error(err: yaml.YAMLError, where: str) -> ValueError:
    """A one-line ValueError for a YAML syntax error in ``where`` (a file): line, column and the problem.

    PyYAML's own message spans several lines (the context, the problem, a caret under the text); the
    line and column are its ``problem_mark`` (0-based there, 1-based here, as editors count).
    """
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = getattr(err, "context", None)
    return ValueError(f"{where} is not valid YAML{at}: {problem}" + (f" ({context})" if context else ""))


def read_yaml(path: Path, where: str | None = None) -> Any:
    """The parsed YAML file ``path``; a syntax error is a one-line ValueError (:func:`yaml_error`)."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        raise yaml_error(err, where or str(path)) from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{where or path} is not a text file: {err}") from None


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
            raise ValueError(f"{kind} file {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
        return read_yaml(path, f"{kind} file {path}"), path.stem
    raise ValueError(
        f"unknown {kind} preset {str(source)!r}; presets: {', '.join(list_presets(package))} (or give a .yaml file)"
    )


def yaml_kind(value: Any) -> str:
    """``list``, ``string``, ... as a YAML reader would call what it found."""
    return {list: "list", tuple: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), type(value).__name__)  # fmt: skip


def read_mapping(source: str | Path, package: str, kind: str, empty: str, keys: str) -> tuple[Any, str, str]:
    """``(mapping, name, where)`` of a preset or YAML file (:func:`read_preset`) that must hold a mapping: an empty
    file is an error saying ``empty`` (what to give), anything else an error naming ``keys`` (what it maps)."""
    raw, name = read_preset(source, package, kind)  # a YAML syntax error: file, line and column
    where = f"{kind} file {source}" if Path(source).is_file() else f"{kind} preset {name!r}"
    if raw is None:
        raise ValueError(f"{where} is empty: {empty}")
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must hold a mapping of {keys}, got a {yaml_kind(raw)}")
    return raw, name, where
