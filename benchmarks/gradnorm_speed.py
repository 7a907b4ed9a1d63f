"""Speed and memory of per-example gradient norms: gnsel against a training step and other tools.

For each model, in one process and on the same random inputs (fixed seed, 10 classes), this times

* ``reference``   a plain training step's forward + backward (eval mode, mean cross-entropy),
* ``gnsel full``  ``gnsel.per_sample_grad_sq_norms(..., scope="full")`` (exact, all parameters),
* ``gnsel fc``    ``gnsel.per_sample_grad_sq_norms(..., scope="fc")`` (closed form on the head),
* ``naive loop``  one forward + ``torch.autograd.grad`` per example, timed on ``min(B, 32)``
  examples and extrapolated linearly to ``B`` (marked ``*``),
* ``torch.func vmap``  ``vmap(grad(functional_call(...)))`` over the batch (params and buffers),
* ``BackPACK BatchL2Grad``  on an ``extend``-ed deep copy, ``CrossEntropyLoss(reduction="sum")``,
* ``Opacus ghost clipping``  ``GradSampleModuleFastGradientClipping`` on a deep copy
  (``loss_reduction="sum"``, ``use_ghost_clipping=True``): one forward, one backward of the
  summed loss, then ``get_norm_sample()`` (the per-example gradient norms; the second backward of
  ``DPTensorFastGradientClipping`` only builds the clipped gradient and is not needed for norms),

as the median of ``--repeats`` runs (default 10) after 2 warm-up runs, plus the peak memory of one
call. The methods are timed in interleaved rounds (one call of each per round), so that load changes
on a shared machine hit them alike; a method leaves the rounds once it has 3 timed calls and has used
``--max-seconds`` (default 10 s), which keeps the default CPU run near 10 minutes. Every method that
returns norms is checked against gnsel full (relative error <= 1e-3 per example).
Tools that cannot handle a model are reported as "unsupported" / "n/a" with the reason; no layer is
swapped to make a tool run.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` above what was allocated before the call.
On the CPU, each (model, method) runs in a fresh ``multiprocessing`` spawn child that builds the
model and inputs, calls the method once as a warm-up (only methods under 1 s per call; slower ones
are measured cold), resets the kernel's peak-RSS counter (``/proc/self/clear_refs``) and reports the
growth of the peak RSS (``VmHWM``) over the RSS before the measured call (resolution ~0.1 MiB);
glibc's mmap threshold is pinned (``MALLOC_MMAP_THRESHOLD_``) in those children so that freed large
buffers go back to the OS. Where ``clear_refs`` is unavailable it falls back to the ``ru_maxrss``
growth of one cold call. Memory includes the ``.grad`` buffers a method allocates (reference,
BackPACK, Opacus).

Reproduce (results are printed and written to ``benchmarks/RESULTS.md``, replacing the section
for the same device and batch size)::

    python benchmarks/gradnorm_speed.py --batch 128
    python benchmarks/gradnorm_speed.py --batch 128 512 --device cuda
    python benchmarks/gradnorm_speed.py --models mlp resnet20 --methods reference gnsel_full backpack

TF32 is switched off on CUDA (strict fp32 for all methods) so that the agreement check is
meaningful; pass ``--tf32`` to keep PyTorch's defaults.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import math
import multiprocessing as mp
import os
import platform
import re
import resource
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

try:
    import gnsel
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import gnsel
from gnsel.models import create_model, model_defaults

NUM_CLASSES = 10
NAIVE_MAX = 32
AGREE_RTOL = 1e-3
MALLOC_MMAP_THRESHOLD = "65536"
WARM_BELOW_S = 1.0  # CPU memory: methods faster than this get a warm-up call before the measured one
DEFAULT_OUT = Path(__file__).resolve().parent / "RESULTS.md"


# --------------------------------------------------------------------------- models and inputs


@dataclass(frozen=True)
class ModelSpec:
    """A benchmark model: registry name, per-example input shape, builder kwargs."""

    label: str
    name: str
    input_shape: tuple[int, ...]
    kwargs: dict = field(default_factory=dict)
    tokens: bool = False

    def describe(self) -> str:
        shape = "x".join(map(str, self.input_shape))
        return f"{self.label} ({'tokens ' if self.tokens else ''}{shape})"


MODELS: dict[str, ModelSpec] = {
    "mlp": ModelSpec("MLP", "mlp", (40,), {"depth": 2, "width": 256}),
    "lenet5": ModelSpec("CNN LeNet-5", "lenet5", (1, 28, 28)),
    "resnet20": ModelSpec("ResNet-20 BN", "resnet20", (3, 32, 32)),
    "vgg11": ModelSpec("VGG-11 BN", "vgg11", (3, 32, 32)),
    "transformer": ModelSpec("Transformer", "transformer", (32,), tokens=True),
}


@dataclass
class Case:
    """One model with its inputs on one device; the model is in eval mode."""

    key: str
    spec: ModelSpec
    model: nn.Module
    x: Tensor
    y: Tensor
    device: torch.device

    @property
    def batch(self) -> int:
        return self.y.shape[0]


def build_case(key: str, batch: int, device: torch.device, seed: int) -> Case:
    """Build model ``key`` (seeded) and random inputs/targets (seeded), deterministically."""
    spec = MODELS[key]
    torch.manual_seed(seed)
    model = create_model(spec.name, num_classes=NUM_CLASSES, input_shape=spec.input_shape, **spec.kwargs)
    gen = torch.Generator().manual_seed(seed + 1)
    if spec.tokens:
        vocab = {**model_defaults(spec.name), **spec.kwargs}["vocab_size"]
        x = torch.randint(0, vocab, (batch, *spec.input_shape), generator=gen)
    else:
        x = torch.randn((batch, *spec.input_shape), generator=gen)
    y = torch.randint(0, NUM_CLASSES, (batch,), generator=gen)
    return Case(key, spec, model.to(device).eval(), x.to(device), y.to(device), device)


# --------------------------------------------------------------------------- methods


class Unsupported(Exception):
    """The tool does not support this model (reported as 'unsupported (reason)')."""


@dataclass
class Prepared:
    """A ready-to-time method: ``run()`` returns per-example squared norms (or None)."""

    run: Callable[[], Tensor | None]
    model: nn.Module  # the model (or copy) the method runs on; its .grad is cleared between phases
    time_scale: float = 1.0  # naive loop: extrapolation factor B / k
    note: str = ""

    def cleanup(self) -> None:
        """Free the ``.grad`` a method leaves behind, so the next measurement starts clean."""
        self.model.zero_grad(set_to_none=True)


def _params(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def prep_reference(case: Case, opts: dict) -> Prepared:
    model, x, y = case.model, case.x, case.y

    def run() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    return Prepared(run, model)


def _prep_gnsel(scope: str) -> Callable[[Case, dict], Prepared]:
    def prep(case: Case, opts: dict) -> Prepared:
        model, x, y = case.model, case.x, case.y
        return Prepared(lambda: gnsel.per_sample_grad_sq_norms(model, x, y, scope=scope), model)

    return prep


def prep_naive(case: Case, opts: dict) -> Prepared:
    model, x, y = case.model, case.x, case.y
    k = min(case.batch, NAIVE_MAX)
    params = _params(model)

    def run() -> Tensor:
        out = torch.empty(k, device=case.device)
        for i in range(k):
            loss = F.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
            grads = torch.autograd.grad(loss, params)
            out[i] = sum(g.pow(2).sum() for g in grads)
        return out

    note = f"timed on {k} examples, x{case.batch / k:g}" if k < case.batch else ""
    return Prepared(run, model, time_scale=case.batch / k, note=note)


def vmap_chunk(case: Case) -> int | None:
    """A vmap chunk size if materialising all per-example gradients would take > 1/4 of free memory."""
    need = case.batch * sum(p.numel() * p.element_size() for p in _params(case.model))
    free = _free_memory(case.device)
    if free is None or need <= free / 4:
        return None
    return max(1, int(case.batch * (free / 4) / need))


def prep_vmap(case: Case, opts: dict) -> Prepared:
    model = case.model
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}

    def loss_one(p: dict, xi: Tensor, yi: Tensor) -> Tensor:
        out = functional_call(model, (p, frozen, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    def sq_one(xi: Tensor, yi: Tensor) -> Tensor:
        g = grad(loss_one)(params, xi, yi)
        return sum(t.pow(2).sum() for t in g.values())

    chunk = opts.get("vmap_chunk")
    fn = vmap(sq_one, chunk_size=chunk)
    return Prepared(lambda: fn(case.x, case.y), model, note=f"chunks of {chunk}" if chunk else "")


def prep_backpack(case: Case, opts: dict) -> Prepared:
    # optional: BackPACK is only needed for its own column
    from backpack import backpack, extend
    from backpack.extensions import BatchL2Grad

    model = extend(copy.deepcopy(case.model).eval())
    loss_fn = extend(nn.CrossEntropyLoss(reduction="sum"))
    params = _params(model)

    def run() -> Tensor:
        model.zero_grad(set_to_none=True)
        for p in params:
            p.__dict__.pop("batch_l2", None)
        with warnings.catch_warnings(), backpack(BatchL2Grad()):
            warnings.simplefilter("ignore")
            loss_fn(model(case.x), case.y).backward()
        missing = [p for p in params if getattr(p, "batch_l2", None) is None]
        if missing:
            raise Unsupported(f"no BatchL2Grad extension for {_owners(model, missing)}")
        return sum(p.batch_l2 for p in params)

    return Prepared(run, model)


def _opacus_validator_summary(model: nn.Module) -> str:
    """Opacus' own verdict on the model (``ModuleValidator``), one short line."""
    from opacus.validators import ModuleValidator  # optional: Opacus is only needed for its own column

    counts: dict[str, int] = {}
    for err in ModuleValidator.validate(copy.deepcopy(model).train(), strict=False):
        first = str(err).split(". ")[0].strip()
        counts[first] = counts.get(first, 0) + 1
    return "; ".join(f"{msg} (x{c})" if c > 1 else msg for msg, c in counts.items())


def prep_opacus(case: Case, opts: dict) -> Prepared:
    from opacus.grad_sample import GradSampleModuleFastGradientClipping  # optional: as above

    model = copy.deepcopy(case.model)

    def run() -> Tensor:
        gsm.zero_grad(set_to_none=True)
        F.cross_entropy(gsm(case.x), case.y, reduction="sum").backward()
        return gsm.get_norm_sample().pow(2)

    try:
        gsm = GradSampleModuleFastGradientClipping(
            model, batch_first=True, loss_reduction="sum", use_ghost_clipping=True, max_grad_norm=1.0
        )
        # Opacus captures activations only in training mode; that is the eval-mode function here
        # unless the model has BatchNorm or active dropout (BatchNorm is rejected above).
        if any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules()):
            raise Unsupported("captures activations only in train mode, which changes this model (Dropout)")
        gsm.train()
        run()  # surface errors here rather than in the timing loop
    except Unsupported:
        raise
    except Exception as err:  # noqa: BLE001
        verdict = _opacus_validator_summary(case.model)
        what = f"{type(err).__name__}: {err}"
        if isinstance(err, NotImplementedError) and "buffers" in str(err):
            with_buffers = [m for m in model.modules() if list(m.buffers(recurse=False)) and _params_of(m)]
            what = f"GradSampleModule rejects trainable layers with buffers: {_type_counts(with_buffers)}"
        raise Unsupported((f"ModuleValidator: {verdict} | " if verdict else "") + what) from err
    return Prepared(run, model)


@dataclass(frozen=True)
class Method:
    label: str
    prepare: Callable[[Case, dict], Prepared]
    norms: bool = True  # returns per-example norms comparable to gnsel full


METHODS: dict[str, Method] = {
    "reference": Method("reference (train step)", prep_reference, norms=False),
    "gnsel_full": Method("gnsel full", _prep_gnsel("full"), norms=False),
    "gnsel_fc": Method("gnsel fc", _prep_gnsel("fc"), norms=False),
    "naive": Method("naive loop", prep_naive),
    "vmap": Method("torch.func vmap", prep_vmap),
    "backpack": Method("BackPACK BatchL2Grad", prep_backpack),
    "opacus": Method("Opacus ghost clipping", prep_opacus),
}


def _params_of(m: nn.Module) -> list[nn.Parameter]:
    return [p for p in m.parameters(recurse=False) if p.requires_grad]


def _type_counts(modules: list[nn.Module]) -> str:
    counts: dict[str, int] = {}
    for m in modules:
        counts[type(m).__name__] = counts.get(type(m).__name__, 0) + 1
    return ", ".join(f"{n} x{c}" if c > 1 else n for n, c in counts.items())


def _owners(model: nn.Module, params: list[nn.Parameter]) -> str:
    ids = {id(p) for p in params}
    return _type_counts([m for m in model.modules() if any(id(p) in ids for p in m.parameters(recurse=False))])


# --------------------------------------------------------------------------- measuring


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_call(prep: Prepared, device: torch.device) -> tuple[float, Tensor | None]:
    _sync(device)
    t0 = time.perf_counter()
    out = prep.run()
    _sync(device)
    return time.perf_counter() - t0, out


def time_round_robin(preps: dict[str, Prepared], device: torch.device, warmup: int, repeats: int,
                     max_seconds: float) -> tuple[dict[str, list[float]], dict[str, Tensor | None],
                                                  dict[str, BaseException]]:
    """Time all methods in interleaved rounds (so that load drifts hit them alike).

    ``warmup`` untimed rounds, then up to ``repeats`` timed rounds; a method leaves the rounds once
    it has 3 timed calls and more than ``max_seconds`` of them. Returns the call times, each
    method's last output and the methods that raised.
    """
    times: dict[str, list[float]] = {n: [] for n in preps}
    outs: dict[str, Tensor | None] = {}
    failed: dict[str, BaseException] = {}
    for rnd in range(warmup + repeats):
        active = [n for n in preps if n not in failed
                  and not (len(times[n]) >= 3 and sum(times[n]) > max_seconds)]
        if not active:
            break
        for name in active:
            try:
                dt, outs[name] = _timed_call(preps[name], device)
            except Exception as err:  # noqa: BLE001 - a tool failing on a model is a result
                failed[name] = err
                preps[name].cleanup()
                continue
            if rnd >= warmup:
                times[name].append(dt)
    return times, outs, failed


def cuda_peak_bytes(prep: Prepared, device: torch.device) -> int:
    """Peak allocated bytes above the allocation before one (warm) call."""
    gc.collect()
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    prep.run()
    _sync(device)
    return torch.cuda.max_memory_allocated(device) - base


def _proc_status_kib(field_name: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise KeyError(field_name)


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        _proc_status_kib("VmHWM")
        return True
    except OSError:
        return False
    except KeyError:
        return False


def _maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def cpu_peak_child(conn, key: str, method: str, batch: int, seed: int, threads: int, opts: dict,
                   warm: bool) -> None:
    """Spawned child: build the case, run ``method``, send back (peak bytes, how) or an error.

    With ``warm`` (methods faster than ``WARM_BELOW_S``) a first call absorbs one-time costs
    (thread pools, kernel caches) and the second is measured; slow methods are measured cold.
    """
    try:
        quiet_warnings()
        torch.set_num_threads(threads)
        case = build_case(key, batch, torch.device("cpu"), seed)
        prep = METHODS[method].prepare(case, opts)
        gc.collect()
        if _reset_peak_rss():  # peak RSS of one call above the RSS before it
            if warm:
                prep.run()
                prep.cleanup()
                gc.collect()
                _reset_peak_rss()
            base = _proc_status_kib("VmRSS")
            prep.run()
            # the kernel's RSS counters are approximate (~0.1 MiB): clamp tiny negative readings
            conn.send((max(0, _proc_status_kib("VmHWM") - base) * 1024, "hwm"))
        else:  # cold call: growth of the lifetime peak RSS
            base = _maxrss_bytes()
            prep.run()
            conn.send((max(0, _maxrss_bytes() - base), "maxrss"))
    except BaseException as err:  # noqa: BLE001 - report anything to the parent
        conn.send((None, f"{type(err).__name__}: {err}"))
    finally:
        conn.close()


def cpu_peak_bytes(key: str, method: str, batch: int, seed: int, threads: int, opts: dict, warm: bool,
                   timeout: float = 900.0) -> tuple[int | None, str]:
    """Peak additional RSS of one call of ``method`` measured in a fresh spawn child."""
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    old = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    os.environ["MALLOC_MMAP_THRESHOLD_"] = MALLOC_MMAP_THRESHOLD
    try:
        proc = ctx.Process(target=cpu_peak_child, args=(send, key, method, batch, seed, threads, opts, warm))
        proc.start()
    finally:
        if old is None:
            os.environ.pop("MALLOC_MMAP_THRESHOLD_", None)
        else:
            os.environ["MALLOC_MMAP_THRESHOLD_"] = old
    send.close()
    result: tuple[int | None, str] = (None, "child gave no result")
    if recv.poll(timeout):
        try:
            result = recv.recv()
        except EOFError:
            result = (None, f"child died (exit code {proc.exitcode})")
    proc.join(10)
    if proc.is_alive():
        proc.kill()
        proc.join()
        result = (None, "child timed out")
    elif result[0] is None and proc.exitcode:
        result = (None, f"child died (exit code {proc.exitcode})")
    return result


def _free_memory(device: torch.device) -> int | None:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------- one model


@dataclass
class Result:
    model: str
    method: str
    status: str = "ok"  # ok | unsupported | n/a
    reason: str = ""
    seconds: float | None = None
    runs: int = 0
    peak_bytes: int | None = None
    mem_error: str = ""
    max_rel_err: float | None = None
    note: str = ""
    extrapolated: bool = False

    @property
    def agrees(self) -> bool | None:
        return None if self.max_rel_err is None else self.max_rel_err <= AGREE_RTOL


def _short(text: str, n: int = 110) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _failure(err: BaseException) -> tuple[str, str]:
    if isinstance(err, Unsupported):
        return "unsupported", _short(str(err), 220)
    return "n/a", _short(f"{type(err).__name__}: {err}", 160)


def max_rel_err(values: Tensor, truth: Tensor) -> float:
    values = values.detach().to(torch.float64).reshape(-1).cpu()
    truth = truth.detach().to(torch.float64).reshape(-1).cpu()[: values.numel()]
    if values.shape != truth.shape:
        return math.inf
    return float(((values - truth).abs() / truth.abs().clamp_min(1e-12)).max())


def bench_model(key: str, batch: int, methods: list[str], args: argparse.Namespace, device: torch.device,
                log: Callable[[str], None]) -> list[Result]:
    """Time every method on one model (one process, same inputs), then measure peak memory."""
    case = build_case(key, batch, device, args.seed)
    opts = {"vmap_chunk": vmap_chunk(case)}
    truth = gnsel.per_sample_grad_sq_norms(case.model, case.x, case.y, scope="full")
    results = {name: Result(key, name) for name in methods}
    preps: dict[str, Prepared] = {}
    for name in methods:
        try:
            preps[name] = METHODS[name].prepare(case, opts)
        except Exception as err:  # noqa: BLE001 - a tool failing on a model is a result
            results[name].status, results[name].reason = _failure(err)
            case.model.zero_grad(set_to_none=True)
    times, outs, failed = time_round_robin(preps, device, args.warmup, args.repeats, args.max_seconds)
    for name, prep in list(preps.items()):
        res = results[name]
        prep.cleanup()
        if name in failed:
            res.status, res.reason = _failure(failed[name])
            del preps[name]
            continue
        res.seconds = statistics.median(times[name]) * prep.time_scale
        res.runs, res.note, res.extrapolated = len(times[name]), prep.note, prep.time_scale != 1.0
        if METHODS[name].norms and outs.get(name) is not None:
            res.max_rel_err = max_rel_err(outs[name], truth)
    del outs
    for res in results.values():
        log(f"  {key:12s} {res.method:11s} " + (f"{1e3 * res.seconds:10.2f} ms  ({res.runs} runs)"
                                               if res.status == "ok" else f"{res.status}: {res.reason}"))
    if not args.no_memory:
        for name, prep in preps.items():
            measure_memory(results[name], prep, case, opts, args, log)
    return list(results.values())


def measure_memory(res: Result, prep: Prepared, case: Case, opts: dict, args: argparse.Namespace,
                   log: Callable[[str], None]) -> None:
    """Peak memory of one call: in-process on CUDA, in a fresh spawn child on the CPU."""
    if case.device.type == "cuda":
        try:
            res.peak_bytes = cuda_peak_bytes(prep, case.device)
        except Exception as err:  # noqa: BLE001
            res.mem_error = _short(f"{type(err).__name__}: {err}", 60)
        prep.cleanup()
    else:
        warm = res.seconds / prep.time_scale < WARM_BELOW_S
        res.peak_bytes, how = cpu_peak_bytes(case.key, res.method, case.batch, args.seed, args.threads,
                                             opts, warm)
        if res.peak_bytes is None:
            res.mem_error = _short(how, 60)
        else:
            args.mem_how.add(how + ("-warm" if warm else "-cold"))
    log(f"  {case.key:12s} {res.method:11s} peak " + (f"{res.peak_bytes / 2**20:9.2f} MiB"
                                                      if res.peak_bytes is not None else res.mem_error))


# --------------------------------------------------------------------------- report


def _ref(results: list[Result], model: str) -> Result | None:
    for r in results:
        if r.model == model and r.method == "reference" and r.status == "ok":
            return r
    return None


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def table_rows(results: list[Result]) -> list[list[str]]:
    """Rows: model, method, median ms, x ref, peak MiB, x ref, agrees with gnsel."""
    rows = []
    for r in results:
        ref = _ref(results, r.model)
        label = METHODS[r.method].label + (f" ({r.note})" if r.note else "")
        model = MODELS[r.model].describe()
        if r.status != "ok":
            rows.append([model, label, f"{r.status} ({r.reason})", "-", "-", "-", "-"])
            continue
        ms = f"{1e3 * r.seconds:.2f}" + ("*" if r.extrapolated else "")
        mib = f"{r.peak_bytes / 2**20:.2f}" if r.peak_bytes is not None else (
            f"n/a ({r.mem_error})" if r.mem_error else "-")
        if r.agrees is None:
            agree = "-"
        else:
            agree = f"{'yes' if r.agrees else 'NO'} ({r.max_rel_err:.1e})"
        rows.append([model, label, ms, _ratio(r.seconds, ref and ref.seconds), mib,
                     _ratio(r.peak_bytes, ref and ref.peak_bytes), agree])
    return rows


HEADERS = ["model", "method", "median ms", "x ref", "peak MiB", "x ref", "agrees with gnsel (max rel err)"]


def markdown_table(rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in row] for row in rows]
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join(["---"] * len(HEADERS)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in esc]
    return "\n".join(lines)


def print_table(rows: list[list[str]], title: str) -> None:
    try:  # optional: a plain markdown table without Rich
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        print(markdown_table(rows))
        return
    table = Table(title=title, show_lines=False)
    for h in HEADERS:
        table.add_column(h, overflow="fold")
    prev = None
    for row in rows:
        if prev is not None and row[0] != prev:
            table.add_section()
        table.add_row(*row)
        prev = row[0]
    Console(width=max(160, Console().width)).print(table)


def _get(results: list[Result], model: str, method: str) -> Result | None:
    for r in results:
        if r.model == model and r.method == method and r.status == "ok":
            return r
    return None


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "MISSED")


def targets(results: list[Result], models: list[str]) -> list[str]:
    """The targets, each 'met' / 'MISSED' with the numbers behind it."""
    lines = []

    def ratio_target(title: str, method: str, limit: float, attr: str) -> None:
        parts, oks = [], []
        for m in models:
            a, ref = _get(results, m, method), _ref(results, m)
            va, vr = (getattr(a, attr), getattr(ref, attr)) if a and ref else (None, None)
            if va is None or not vr:
                continue
            ratio = va / vr
            oks.append(ratio <= limit)
            parts.append(f"{m} {ratio:.2f}x" + ("" if ratio <= limit else " (MISSED)"))
        verdict = _verdict(all(oks) if oks else None)
        lines.append(f"- {title}: **{verdict}** - " + (", ".join(parts) if parts else "not measured"))

    ratio_target("gnsel full time <= 1.3x reference on every model", "gnsel_full", 1.3, "seconds")
    parts, oks = [], []
    for m in models:
        g = _get(results, m, "gnsel_full")
        for other in ("backpack", "opacus", "vmap"):
            o = _get(results, m, other)
            if g is None or o is None:
                continue
            ok = g.seconds < o.seconds
            oks.append(ok)
            parts.append(f"{m} vs {other} {1e3 * g.seconds:.1f} vs {1e3 * o.seconds:.1f} ms"
                         + ("" if ok else " (MISSED)"))
    lines.append("- gnsel full faster than BackPACK / Opacus / vmap wherever they ran: "
                 f"**{_verdict(all(oks) if oks else None)}** - " + ("; ".join(parts) or "none ran"))
    ratio_target("gnsel fc time <= 0.5x reference", "gnsel_fc", 0.5, "seconds")
    ratio_target("gnsel full peak memory <= 1.5x reference", "gnsel_full", 1.5, "peak_bytes")
    bad = [f"{r.model}/{r.method} ({r.max_rel_err:.1e})" for r in results if r.agrees is False]
    if bad:
        lines.append("- WARNING: disagree with gnsel full beyond 1e-3 relative: " + ", ".join(bad))
    return lines


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def section(device: torch.device, batch: int, args: argparse.Namespace, rows: list[list[str]],
            target_lines: list[str]) -> tuple[str, str]:
    """(key, markdown) of the RESULTS.md section for this device and batch size."""
    name = f"{device.type.upper()}: {device_name(device)}"
    key = f"{name} | batch {batch}"
    k = min(batch, NAIVE_MAX)
    if device.type == "cuda":
        mem = "`torch.cuda.max_memory_allocated` above the allocation before one warm call"
        precision = "fp32, TF32 off" if not args.tf32 else "PyTorch default TF32 settings"
    else:
        how = {"hwm-warm": f"VmHWM growth of a 2nd call (methods < {WARM_BELOW_S:g} s/call)",
               "hwm-cold": f"VmHWM growth of a 1st call (slower methods)",
               "maxrss-warm": "ru_maxrss growth of a cold call", "maxrss-cold": "ru_maxrss growth of a cold call"}
        mem = ("peak RSS above the RSS before the call, in a fresh spawn child per method: "
               + "; ".join(dict.fromkeys(how[h] for h in sorted(args.mem_how)))
               if args.mem_how else "not measured")
        precision = "fp32"
    md = [
        f"<!-- gradnorm_speed: {key} -->",
        f"## {name} - batch {batch}",
        "",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {batch}, "
        f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}, {precision}; median of up to "
        f"{args.repeats} runs after {args.warmup} warm-up runs (at most ~{args.max_seconds:g} s per method); "
        f"peak memory: {mem}.",
        "",
        markdown_table(rows),
        "",
        *([f"\\* naive loop timed on {k} examples and extrapolated linearly to {batch}.", ""] if k < batch else []),
        "**Targets**",
        "",
        *target_lines,
        f"<!-- /gradnorm_speed: {key} -->",
    ]
    return key, "\n".join(md) + "\n"


def update_results(path: Path, key: str, text: str) -> None:
    """Replace the section for ``key`` in ``path`` (or append it)."""
    head = ("# gnsel: per-example gradient-norm speed\n\nWritten by `benchmarks/gradnorm_speed.py`; "
            "one section per device and batch size.\n")
    old = path.read_text() if path.exists() else head
    pattern = re.compile(
        rf"<!-- gradnorm_speed: {re.escape(key)} -->.*?<!-- /gradnorm_speed: {re.escape(key)} -->\n?", re.S
    )
    if pattern.search(old):
        new = pattern.sub(lambda _: text, old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[128], help="batch size(s) (default 128)")
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
                   help="'reference' is always added (ratios are relative to it)")
    p.add_argument("--repeats", type=int, default=10, help="timed runs per method (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--max-seconds", type=float, default=10.0,
                   help="stop timing a method after this many seconds (at least 3 runs)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--tf32", action="store_true", help="keep PyTorch's TF32 defaults on CUDA")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown results file (default %(default)s)")
    p.add_argument("--no-write", action="store_true", help="print only, do not update --out")
    args = p.parse_args(argv)
    if any(b < 1 for b in args.batch) or args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        p.error("--batch, --repeats and --threads must be positive, --warmup >= 0")
    args.methods = ["reference"] + [m for m in dict.fromkeys(args.methods) if m != "reference"]
    args.models = list(dict.fromkeys(args.models))
    args.mem_how = set()
    return args


def quiet_warnings() -> None:
    """Silence the tools' known, harmless warnings (they would drown the progress log)."""
    warnings.filterwarnings("ignore", module="opacus")
    warnings.filterwarnings("ignore", module="backpack")
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet implemented")


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    return device


def strict_fp32() -> None:
    """Turn TF32 off for matmuls and convolutions (new API where present, legacy flags otherwise)."""
    try:
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        torch.backends.cudnn.conv.fp32_precision = "ieee"
    except (AttributeError, RuntimeError):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    if device.type == "cuda" and not args.tf32:
        strict_fp32()
    quiet_warnings()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    log(f"device {device} ({device_name(device)}), torch {torch.__version__}, {torch.get_num_threads()} threads")
    for batch in args.batch:
        t0 = time.perf_counter()
        results: list[Result] = []
        for key in args.models:
            log(f"[batch {batch}] {MODELS[key].describe()}")
            results += bench_model(key, batch, args.methods, args, device, log)
        rows = table_rows(results)
        target_lines = targets(results, args.models)
        title = f"{device_name(device)} ({device.type}), batch {batch}"
        print_table(rows, title)
        if min(batch, NAIVE_MAX) < batch:
            print(f"* naive loop timed on {min(batch, NAIVE_MAX)} examples and extrapolated linearly to {batch}.")
        print("Targets:")
        print("\n".join(target_lines))
        log(f"[batch {batch}] done in {time.perf_counter() - t0:.0f} s")
        if not args.no_write:
            key, text = section(device, batch, args, rows, target_lines)
            update_results(args.out, key, text)
            log(f"wrote section '{key}' to {args.out}")


if __name__ == "__main__":
    main()
