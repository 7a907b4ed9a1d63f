"""``gnsel study``: run the parts of a study (reusing finished ones), then write the report.

Every part saves its section (tables as CSV, figures as PNG, text as JSON) when it finishes, and the
work inside a part is resumable too: zoo runs, cached measures, finished live searches and the replay
are kept in the output folder. An interrupted study rerun with the same command redoes nothing done.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..gradnorm.api import resolve_device
from ..progress import SILENT, Progress
from ..report import Finding, Report, Section, write_report
from .cache import load_section, save_section
from .part import PARTS, StudyContext, StudyPart, StudySpec
from .spec import check_runnable, load_study

__all__ = ["QUESTION", "StudyResult", "answer", "assemble", "headline", "parse_parts", "run_study"]

QUESTION = (
    "Can the gradient norm (GN: the mean over examples of the squared norm of the per-example loss gradient) "
    "of a trained model stand in for, or complement, validation accuracy when selecting models and "
    "hyper-parameters, and what does computing it cost?"
)


@dataclass
class StudyResult:
    """Where the report is, its sections, and which parts were computed or reused (with their seconds)."""

    out: Path
    files: dict[str, Path]
    sections: dict[str, Section]
    seconds: dict[str, float] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    computed: list[str] = field(default_factory=list)


def parse_parts(parts: str | Iterable[str] | None) -> list[str]:
    """``None`` -> all parts; otherwise the named parts (comma-separated or a list), checked, in study order."""
    if parts is None:
        return list(PARTS)
    names = [p.strip() for p in (parts.split(",") if isinstance(parts, str) else parts) for p in p.split(",")]
    names = [p for p in names if p]
    bad = [p for p in names if p not in PARTS]
    if bad or not names:
        raise ValueError(f"unknown part(s) {', '.join(map(repr, bad)) or '(none given)'}; parts: {', '.join(PARTS)}")
    return [p for p in PARTS if p in names]


def _needs_ray(spec: StudySpec, parts: list[str], workers: int, address: str | None) -> bool:
    if address:
        return True
    return any(PARTS.get(p).needs_ray(spec.parts[p], workers, address) for p in parts)


def _ranked(rank: str) -> list[tuple[str, StudyPart]]:
    """The registered parts ordered by one of their ranks (``verdict_rank``, ``answer_rank``), ties in study order."""
    return sorted(PARTS.items(), key=lambda item: getattr(item[1], rank))


def run_study(
    preset: str | os.PathLike | Mapping[str, Any] | StudySpec = "quick",
    out: str | os.PathLike = "gnsel-study",
    *,
    parts: str | Iterable[str] | None = None,
    address: str | None = None,
    device: str | None = None,
    workers: int | None = None,
    progress: Progress = SILENT,
    on_step: Callable[[str], None] | None = None,
) -> StudyResult:
    """Run the study's parts (all, or ``parts``), reusing finished work, and write the report into ``out``.

    Progress lines and bars go to ``progress`` (default: none; the CLI passes a Rich one).
    """
    spec = preset if isinstance(preset, StudySpec) else load_study(preset)
    todo = parse_parts(parts)
    check_runnable(spec, todo)
    dev = str(resolve_device(device or spec.device))
    workers = int(workers or max(1, min(os.cpu_count() or 1, 8)))
    if workers < 1:
        raise ValueError(f"workers must be positive, got {workers}")
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    ctx = StudyContext(spec, out, dev, address, workers, progress, on_step)
    (out / "study.json").write_text(json.dumps({"name": spec.name, "description": spec.description,
                                                "device": dev, "parts": spec.parts}, indent=2, default=str))  # fmt: skip
    result = StudyResult(out, {}, {})
    ray_ctx: contextlib.AbstractContextManager = contextlib.nullcontext()
    if _needs_ray(spec, todo, workers, address):  # one Ray instance for every part (imported only then)
        from ..tune.live import ray_session  # heavy: ray

        ray_ctx = ray_session(address, **({} if address else {"num_cpus": workers}))
    for part in PARTS:  # parts finished by earlier runs that this run does not redo: in the report, and readable
        if part not in todo:
            cached = load_section(out / part, part_key(spec, part))
            if cached is not None:
                result.sections[part], result.seconds[part] = cached
                ctx.sections[part] = cached[0]
    with ray_ctx:
        for part in todo:
            key = part_key(spec, part)
            cached = load_section(ctx.folder(part), key)
            if cached is not None:
                result.sections[part], result.seconds[part] = cached
                ctx.sections[part] = cached[0]
                result.reused.append(part)
                progress.log(f"{part}: reusing the finished part ({out / part})")
                continue
            progress.log(f"{part}: running")
            t0 = time.perf_counter()
            try:
                section = PARTS.get(part).run(ctx)
            finally:  # an interrupted session's time counts too: the report gives the part's total
                seconds = _add_session(ctx.folder(part), time.perf_counter() - t0)
            save_section(section, ctx.folder(part), key, seconds)
            result.sections[part], result.seconds[part] = section, seconds
            ctx.sections[part] = section
            result.computed.append(part)
            progress.log(f"{part}: done in {time.perf_counter() - t0:.0f} s ({seconds:.0f} s in all sessions)")
            ctx.step(f"{part}:done")
    report = assemble(spec, result, dev, address)
    result.files = write_report(report, out)
    progress.log(f"report: {result.files['html']} and {result.files['md']}; tables in {result.files['tables']}")
    return result


def part_key(spec: StudySpec, part: str) -> str:
    """The cache key of a part: its settings' hash, with those of the parts it reads (``depends_on``)."""
    deps = PARTS.get(part).depends_on
    if not deps:
        return spec.part_hash(part)
    return spec.part_hash(part, depends={d: spec.part_hash(d) for d in deps if d in spec.parts})


def _add_session(folder: Path, seconds: float) -> float:
    """Record one session's seconds on a part; the total over all its sessions (interrupted ones too)."""
    path = folder / "sessions.json"
    sessions = json.loads(path.read_text()) if path.exists() else []
    sessions.append(round(seconds, 3))
    path.write_text(json.dumps(sessions))
    return float(sum(sessions))


def answer(sections: Mapping[str, Section]) -> Finding | None:
    """The question answered in a few plain sentences, from the parts' tables (None if no part says)."""
    said = [(text, sign) for name, part in _ranked("answer_rank") if name in sections
            for text, sign in part.answer(sections[name])]  # fmt: skip
    if not said:
        return None
    signs = [s for _, s in said if s is not None]
    verdict = ("info" if not signs else "helps" if max(signs) > 0 else "does not help" if max(signs) < 0
               else "inconclusive")  # fmt: skip
    return Finding("In short, on this run: " + "; ".join(text for text, _ in said) + ".", verdict)


def headline(sections: Mapping[str, Section]) -> list[Finding]:
    """The report's answer: a plain summary, then each part's findings that take a side."""
    first = answer(sections)
    out = [first] if first is not None else []
    for name, part in _ranked("verdict_rank"):
        if sections.get(name) is not None:
            out += part.headline(sections[name])
    return out


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} CPUs, {gpu}"


def assemble(spec: StudySpec, result: StudyResult, device: str, address: str | None) -> Report:
    """The report of whatever parts are finished, in study order."""
    order = sorted(PARTS.items(), key=lambda item: item[1].section_rank)
    sections = [result.sections[p] for p, _ in order if p in result.sections]
    meta = {
        "study": f"{spec.name}: {spec.description}",
        "written": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(),
        "device": device,
        "ray": address or "local",
        "versions": f"gnsel {__version__}, torch {torch.__version__}, python {platform.python_version()}",
    }
    for p in PARTS:
        if p in result.seconds:
            how = "finished by an earlier run" if p in result.reused else "finished in this run"
            meta[f"{p} part"] = f"{result.seconds[p]:.0f} s of computing over all sessions ({how})"
        else:
            meta[f"{p} part"] = "not run yet (gnsel study --part " + p + ")"
    return Report(title=f"Can the gradient norm select models? gnsel study `{spec.name}`", question=QUESTION,
                  verdict=headline(result.sections), sections=sections, meta=meta)  # fmt: skip
