"""Study presets: what each part of ``gnsel study`` trains, measures and searches, from YAML, checked early.

A study file has four part sections (``correlation``, ``cost``, ``hpo``, ``architectures``) plus
``description`` and ``device``; see ``presets/quick.yaml``. :func:`load_study` accepts a shipped
preset name or a YAML path, fills defaults and validates every grid, search space, objective and
algorithm before anything trains, so a typo fails in a second rather than after an hour.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from ..presets import list_presets, read_preset

PARTS: tuple[str, ...] = ("correlation", "cost", "hpo", "architectures")

_DEFAULTS: dict[str, dict[str, Any]] = {
    "correlation": {"zoo": "quick", "target": "gap_acc", "bootstrap": 1000, "measures": None},
    "cost": {"cases": [], "dataset": "mnist1d", "dataset_kwargs": {}, "n_examples": 4000, "batch_size": 128,
             "repeats": 5, "naive_examples": 256},
    "hpo": {"zoo": "quick", "replay": {}, "live": {}},
    "architectures": {"zoo": [], "targets": ["gap_acc", "test_error"], "bootstrap": 1000, "measures": None},
}  # fmt: skip
_REPLAY_DEFAULTS = {"algorithms": ["grid", "random", "tpe", "hyperband", "bohb"], "objectives": ["val_loss"],
                    "seeds": 50, "budget": None}  # fmt: skip
_LIVE_DEFAULTS = {"algorithms": [], "objectives": ["val_loss"], "trials": 6, "epochs": 8,
                  "space": None, "cpus_per_trial": 1.0, "gpus_per_trial": 0.0}  # fmt: skip


def list_study_presets() -> list[str]:
    """Names of the studies shipped with gnsel (``gnsel study --preset NAME``)."""
    return list_presets("gnsel.study")


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
        from .. import __version__

        text = json.dumps({"part": part, "settings": self.parts[part], "gnsel": __version__, **extra},
                          sort_keys=True, default=str)  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def zoo_grids(self, part: str) -> list[Any]:
        """The grid source(s) of a part's zoo(s) as a list (a preset name, a path or a mapping each)."""
        zoo = self.parts[part]["zoo"]
        return list(zoo) if isinstance(zoo, list) else [zoo]


def _merge(defaults: Mapping[str, Any], given: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))} in {where}; valid: {', '.join(defaults)}")
    out = copy.deepcopy(dict(defaults))
    out.update(copy.deepcopy(dict(given)))
    return out


def load_study(source: str | Path | Mapping[str, Any] = "quick") -> StudySpec:
    """A study from a shipped preset name, a YAML file or a mapping, with defaults filled in and validated."""
    if isinstance(source, Mapping):
        raw, name = dict(source), str(source.get("name", "custom"))
    else:
        raw, name = read_preset(source, "gnsel.study", "study")
        raw = raw or {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"a study must be a mapping of part settings, got {type(raw).__name__}")
    top = {"name", "description", "device", *PARTS}
    unknown = sorted(set(raw) - top)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))} in the study; valid: {', '.join(sorted(top))}")
    parts = {p: _merge(_DEFAULTS[p], raw.get(p) or {}, f"the study's {p} part") for p in PARTS}
    parts["hpo"]["replay"] = _merge(_REPLAY_DEFAULTS, parts["hpo"]["replay"] or {}, "hpo.replay")
    parts["hpo"]["live"] = _merge(_LIVE_DEFAULTS, parts["hpo"]["live"] or {}, "hpo.live")
    spec = StudySpec(str(raw.get("name", name)), str(raw.get("description", "")).strip(),
                     str(raw.get("device", "auto")), parts)  # fmt: skip
    validate(spec)
    return spec


def _check_positive(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where} must be a positive integer, got {value!r}")


def validate(spec: StudySpec) -> None:
    """Every name and setting a study uses, checked without training anything."""
    from ..correlate import TARGETS
    from ..measures import get_measure
    from ..tune.objectives import parse_objective
    from ..tune.replay import parse_algorithms, parse_objectives
    from ..tune.space import ALGORITHMS, load_space
    from ..zoo.grid import load_grid

    for part in ("correlation", "hpo", "architectures"):
        for g in spec.zoo_grids(part):  # an empty list is refused when that part is run (check_runnable)
            try:
                load_grid(g)
            except ValueError as err:
                raise ValueError(f"{part}.zoo: {err}") from err
    corr, arch = spec.parts["correlation"], spec.parts["architectures"]
    for where, targets in (("correlation.target", [corr["target"]]), ("architectures.targets", arch["targets"])):
        for t in targets:
            if t not in TARGETS:
                raise ValueError(f"{where}: unknown target {t!r}; choices: {', '.join(TARGETS)}")
    for where, measures in (("correlation", corr["measures"]), ("architectures", arch["measures"])):
        for m in measures or []:
            try:
                get_measure(m)
            except (KeyError, ValueError) as err:
                raise ValueError(f"{where}.measures: {err}") from err
    for where, n in (("correlation.bootstrap", corr["bootstrap"]), ("architectures.bootstrap", arch["bootstrap"])):
        _check_positive(n, where)
    cost = spec.parts["cost"]
    if not cost["cases"]:
        raise ValueError("cost.cases is empty: name at least one model to time")
    cost_cases(spec)  # every case well-formed, every model known
    for key in ("n_examples", "batch_size", "repeats", "naive_examples"):
        _check_positive(cost[key], f"cost.{key}")
    replay, live = spec.parts["hpo"]["replay"], spec.parts["hpo"]["live"]
    parse_algorithms(replay["algorithms"])
    parse_objectives(replay["objectives"])
    _check_positive(replay["seeds"], "hpo.replay.seeds")
    if live["algorithms"]:
        if live["space"] is None:
            raise ValueError("hpo.live.space is missing: give the search space of the live searches")
        space = load_space(live["space"])
        for key in ("trials", "epochs"):
            _check_positive(live[key], f"hpo.live.{key}")
        for alg in live["algorithms"]:
            if alg not in ALGORITHMS:
                raise ValueError(f"hpo.live.algorithms: unknown algorithm {alg!r}; choices: {', '.join(ALGORITHMS)}")
        for text in live["objectives"]:
            parse_objective(text)
        if not any(_live_pair_ok(space, a, o) for a in live["algorithms"] for o in live["objectives"]):
            raise ValueError("hpo.live: no (algorithm, objective) pair is valid for the live space")


def check_runnable(spec: StudySpec, parts: list[str]) -> None:
    """What a run of ``parts`` needs beyond a valid study: a zoo for each zoo-based part."""
    for part in parts:
        if part in ("correlation", "hpo", "architectures") and not spec.zoo_grids(part):
            raise ValueError(f"the study's {part} part names no zoo: give {part}.zoo in the study file")


def _live_pair_ok(space: Any, algorithm: str, objective: str) -> bool:
    from ..tune.objectives import parse_objective

    try:
        space.check(algorithm, parse_objective(objective))
    except ValueError:
        return False
    return True


def cost_cases(spec: StudySpec) -> list[Any]:
    """The cost part's :class:`~gnsel.study.cost.CostCase` list, each case inheriting the part's defaults."""
    from .cost import CostCase

    cost = spec.parts["cost"]
    out = []
    for i, c in enumerate(cost["cases"]):
        if not isinstance(c, Mapping) or "model" not in c:
            raise ValueError(f"cost.cases[{i}] must be a mapping with at least 'model', got {c!r}")
        allowed = {"label", "model", "model_kwargs", "dataset", "dataset_kwargs", "batch_size", "n_examples"}
        unknown = sorted(set(c) - allowed)
        if unknown:
            raise ValueError(f"cost.cases[{i}]: unknown key(s) {', '.join(map(repr, unknown))}; valid: {', '.join(sorted(allowed))}")
        out.append(CostCase(
            label=str(c.get("label", c["model"])), model=str(c["model"]),
            model_kwargs=dict(c.get("model_kwargs") or {}),
            dataset=str(c.get("dataset", cost["dataset"])),
            dataset_kwargs=dict(c.get("dataset_kwargs", cost["dataset_kwargs"]) or {}),
            batch_size=int(c.get("batch_size", cost["batch_size"])),
            n_examples=int(c.get("n_examples", cost["n_examples"])),
        ))  # fmt: skip
    from ..models.registry import list_models

    for case in out:
        if case.model not in list_models():
            raise ValueError(f"cost: unknown model {case.model!r}; models: {', '.join(list_models())}")
    return out
