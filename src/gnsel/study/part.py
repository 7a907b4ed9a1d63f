"""A part of ``gnsel study`` as a plug-in: its settings and checks, its run, and what it adds to the answer.

What a part module needs is here: the parsed study it reads (:class:`StudySpec`), the context it runs in
(:class:`StudyContext`), the base class (:class:`StudyPart`) and the registry (:data:`PARTS`)::

    @study_part
    class Toy(StudyPart):
        name = "toy"
        defaults = {"size": 3}

        def validate(self, settings):
            check_positive(settings["size"], "toy.size")

        def run(self, ctx):
            return Section(key="toy", title="A toy", intro="...", findings=[...], tables=[...])

Registration order is study order: the order of the ``--part`` choices, of running, of the report's
sections and meta lines. ``verdict_rank`` and ``answer_rank`` order the parts' contributions to the
report's verdict and to the plain-words answer (ties keep registration order).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pandas as pd

from .. import __version__
from ..progress import SILENT, Progress
from ..registry import Registry
from ..report import Finding, Section

__all__ = ["PARTS", "StudyContext", "StudyPart", "StudySpec", "check_positive", "merge_settings", "study_part",
           "table_of"]  # fmt: skip

PARTS: Registry[StudyPart] = Registry("study part")
"""Every study part by name, in study order (``list(PARTS)`` are the names)."""


@dataclass
class StudySpec:
    """A parsed, validated study: one settings mapping per part."""

    name: str
    description: str
    device: str
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def part_hash(self, part: str, **extra: Any) -> str:
        """A short hash of one part's settings, gnsel's version (and ``extra``): a cached part is reused only
        if it matches (a new gnsel recomputes the parts; the zoos and measures they use are kept)."""
        text = json.dumps({"part": part, "settings": self.parts[part], "gnsel": __version__, **extra},
                          sort_keys=True, default=str)  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def zoo_grids(self, part: str) -> list[Any]:
        """The grid source(s) of a part's zoo(s) as a list (a preset name, a path or a mapping each)."""
        return PARTS.get(part).zoo_grids(self.parts[part])


@dataclass
class StudyContext:
    """Where a study writes, what it runs on, and where it reports progress."""

    spec: StudySpec
    out: Path
    device: str = "auto"
    address: str | None = None
    workers: int = 2
    progress: Progress = SILENT
    on_step: Callable[[str], None] | None = None  # called at every resumable step (tests interrupt here)
    sections: dict[str, Section] = field(default_factory=dict)  # the parts finished so far (a later part reads them)

    def folder(self, part: str) -> Path:
        """The part's own folder under the study's output folder (created)."""
        path = self.out / part
        path.mkdir(parents=True, exist_ok=True)
        return path

    def step(self, name: str) -> None:
        """Mark a step boundary (completed work before it is saved)."""
        if self.on_step is not None:
            self.on_step(name)


class StudyPart:
    """One part of a study; subclass, set ``name`` and ``defaults``, write ``run``, register with :func:`study_part`."""

    name: ClassVar[str] = ""
    defaults: ClassVar[Mapping[str, Any]] = {}
    """The part's settings and their defaults; a study file may give only these keys."""
    nested: ClassVar[tuple[str, ...]] = ()
    """Keys of ``defaults`` whose value is itself a settings mapping, merged key by key (``hpo.replay``)."""
    uses_zoo: ClassVar[bool] = False
    """Whether ``settings["zoo"]`` names the grid(s) the part trains (one source or a list)."""
    verdict_rank: ClassVar[float] = 100.0
    verdict_limit: ClassVar[int] = 2
    """How many of the part's findings that take a side go to the report's verdict."""
    answer_rank: ClassVar[float] = 100.0
    section_rank: ClassVar[float] = 100.0
    """Where the part's section goes in the report (lower first; ties keep study order)."""
    depends_on: ClassVar[tuple[str, ...]] = ()
    """Parts whose sections this part reads (``ctx.sections``); their settings enter its cache key."""

    def settings(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """The study file's settings of this part over the defaults (unknown keys refused)."""
        out = merge_settings(self.defaults, given or {}, f"the study's {self.name} part")
        for key in self.nested:
            out[key] = merge_settings(self.defaults[key], out[key] or {}, f"{self.name}.{key}")
        return out

    def validate(self, settings: dict[str, Any]) -> None:
        """Check every name and setting without training (the zoo grids are checked before, by the study)."""

    def zoo_grids(self, settings: Mapping[str, Any]) -> list[Any]:
        """The grid source(s) of the part's zoo(s) as a list; empty for a part without a zoo."""
        if not self.uses_zoo:
            return []
        zoo = settings["zoo"]
        return list(zoo) if isinstance(zoo, list) else [zoo]

    def check_runnable(self, settings: Mapping[str, Any]) -> None:
        """What running the part needs beyond valid settings (a part with a zoo needs one)."""
        if self.uses_zoo and not self.zoo_grids(settings):
            raise ValueError(f"the study's {self.name} part names no zoo: give {self.name}.zoo in the study file")

    def needs_ray(self, settings: Mapping[str, Any], workers: int, address: str | None) -> bool:
        """Whether the part runs work on Ray (zoos train on it with more than one worker)."""
        return self.uses_zoo and workers > 1

    def run(self, ctx: StudyContext) -> Section:
        """Compute the part (resuming what an earlier session finished) and return its report section."""
        raise NotImplementedError(f"study part {self.name!r} has no run")

    def headline(self, section: Section) -> list[Finding]:
        """The part's findings for the report's verdict: those that take a side, at most ``verdict_limit``."""
        return [f for f in section.findings if f.verdict != "info"][: self.verdict_limit]

    def answer(self, section: Section) -> list[tuple[str, int | None]]:
        """Sentences for the plain-words answer, each with the sign it gives GN (+1, 0, -1) or None."""
        return []


P = TypeVar("P", bound=type[StudyPart])


def study_part(cls: P) -> P:
    """Class decorator: register one instance of a :class:`StudyPart` subclass under its ``name``."""
    if not cls.name:
        raise ValueError(f"study part {cls.__name__} has no name")
    PARTS.register(cls.name, cls())
    return cls


def merge_settings(defaults: Mapping[str, Any], given: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``given`` over a deep copy of ``defaults``; a key ``defaults`` lacks is an error naming ``where``."""
    if not isinstance(given, Mapping):
        raise ValueError(f"{where} must be a mapping of settings ({', '.join(defaults)}), "
                         f"got a {type(given).__name__}: {given!r}")  # fmt: skip
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))} in {where}; valid: {', '.join(defaults)}")
    out = copy.deepcopy(dict(defaults))
    out.update(copy.deepcopy(dict(given)))
    return out


def check_positive(value: Any, where: str) -> None:
    """A positive integer (not a bool), or a ValueError naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where} must be a positive integer, got {value!r}")


def table_of(section: Section | None, name: str) -> pd.DataFrame | None:
    """The frame of a section's table called ``name`` (None if there is no such section or table)."""
    return next((t.frame for t in section.tables if t.name == name), None) if section is not None else None
