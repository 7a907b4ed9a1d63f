"""Study presets: what each part of ``gnsel study`` trains, measures and searches, from YAML, checked early.

A study file has one section per registered part (``correlation``, ``cost``, ``hpo``,
``architectures``) plus ``description`` and ``device``; see ``presets/quick.yaml``. :func:`load_study`
accepts a shipped preset name or a YAML path, fills each part's defaults and validates every grid,
search space, objective and algorithm before anything trains, so a typo fails in a second rather than
after an hour. What a part's settings are and how they are checked is the part's own business
(:class:`~gnsel.study.part.StudyPart`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..presets import list_presets, read_mapping
from ..zoo.grid import load_grid
from .part import PARTS, StudySpec

__all__ = ["PARTS", "StudySpec", "check_runnable", "list_study_presets", "load_study", "validate"]


def list_study_presets() -> list[str]:
    """Names of the studies shipped with gnsel (``gnsel study --preset NAME``)."""
    return list_presets("gnsel.study")


def load_study(source: str | Path | Mapping[str, Any] = "quick") -> StudySpec:
    """A study from a shipped preset name, a YAML file or a mapping, with defaults filled in and validated."""
    if isinstance(source, Mapping):
        return _load(dict(source), str(source.get("name", "custom")))
    if not isinstance(source, (str, Path)):
        raise ValueError(f"a study is a preset name, a YAML file or a mapping, got {source!r}")
    raw, name, where = read_mapping(source, "gnsel.study", "study",
                                    f"give the settings of at least one part ({', '.join(PARTS)})",
                                    f"part settings ({', '.join(PARTS)})")  # fmt: skip
    try:
        return _load(raw, name)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _load(raw: Mapping[str, Any], name: str) -> StudySpec:
    top = {"name", "description", "device", *PARTS}
    unknown = sorted(set(raw) - top)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))} in the study; valid: {', '.join(sorted(top))}")
    parts = {p: PARTS.get(p).settings(raw.get(p)) for p in PARTS}  # a part's settings must be a mapping
    device = str(raw.get("device", "auto"))
    if device != "auto":
        try:
            torch.device(device)
        except RuntimeError:
            raise ValueError(f"unknown device {device!r} in the study; use auto, cpu, cuda or cuda:N") from None
    spec = StudySpec(str(raw.get("name", name)), str(raw.get("description", "")).strip(), device, parts)
    validate(spec)
    return spec


def validate(spec: StudySpec) -> None:
    """Every name and setting a study uses, checked without training anything: every part's zoo grids
    first, then each part's own checks, in study order."""
    for name in PARTS:
        for g in spec.zoo_grids(name):  # an empty list is refused when that part is run (check_runnable)
            try:
                load_grid(g)
            except ValueError as err:
                raise ValueError(f"{name}.zoo: {err}") from err
    for name, part in PARTS.items():
        part.validate(spec.parts[name])


def check_runnable(spec: StudySpec, parts: list[str]) -> None:
    """What a run of ``parts`` needs beyond a valid study (e.g. a zoo for each zoo-based part)."""
    for name in parts:
        PARTS.get(name).check_runnable(spec.parts[name])
