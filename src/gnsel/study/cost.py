"""What exact GN costs, per architecture: measured time ratios to one ordinary training epoch.

For each :class:`CostCase` (a model on a data set), :func:`measure_costs` takes the first
``n_examples`` training examples and times, on the same weights and the same examples,

* ``train_epoch``: one epoch of SGD (lr 0.01, momentum 0.9, mean cross-entropy) in shuffled batches
  of ``batch_size``, on a fresh deep copy of the model each time (so GN is always measured on the
  initial weights);
* ``gn_full``: :func:`gnsel.gradient_norm` with ``scope="full"`` (exact, all trainable parameters);
* ``gn_fc``: the same with ``scope="fc"`` (the classifier head);
* ``naive``: the naive per-example loop (:func:`gnsel.gradnorm.naive.naive_sq_norms`), timed on the
  first ``naive_examples`` examples and scaled by ``n / naive_examples`` to the whole set (the loop
  is linear in n); ``naive_examples`` is kept in the frame so reports can say so.

Methods run in interleaved rounds (one call of each per round, after one untimed warm-up round),
so load changes on a shared machine hit them alike, and repeat ``i`` of a method is paired with
repeat ``i`` of ``train_epoch`` for the ratio. Each call is timed with :func:`time.perf_counter`,
with ``torch.cuda.synchronize`` before and after on CUDA. In the same run (not timed) the engine's
per-example squared norms are checked against the naive loop's (``max_rel_diff``).

:func:`cost_summary` reduces the long frame to one row per (case, method) and :func:`plot_costs`
draws the ratios as grouped bars.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn

from ..data import load_dataset
from ..gradnorm.api import GN_BATCH_SIZE, gradient_norm, per_sample_grad_sq_norms, resolve_device
from ..gradnorm.naive import naive_sq_norms
from ..models.registry import create_model
from ..progress import SILENT, Progress
from ..training import TrainConfig, make_optimizer, shuffled_batches, training_loss

__all__ = [
    "FRAME_COLUMNS",
    "METHODS",
    "METHOD_LABELS",
    "SUMMARY_COLUMNS",
    "CostCase",
    "cost_summary",
    "paired_ratios",
    "measure_costs",
    "plot_costs",
]

METHODS: tuple[str, ...] = ("train_epoch", "gn_full", "gn_fc", "naive")
METHOD_LABELS: dict[str, str] = {
    "train_epoch": "one training epoch",
    "gn_full": "exact GN, all parameters",
    "gn_fc": "exact GN, classifier head",
    "naive": "naive per-example loop",
}
FRAME_COLUMNS: tuple[str, ...] = (
    "case", "model", "params", "input_shape", "n_examples", "batch_size", "device", "method", "repeat",
    "seconds", "naive_examples", "max_rel_diff",
)  # fmt: skip
SUMMARY_COLUMNS: tuple[str, ...] = (
    "case", "model", "params", "n_examples", "batch_size", "device", "naive_examples", "max_rel_diff",
    "method", "repeats", "seconds_median", "ratio_to_epoch", "ratio_low", "ratio_high", "per_example_us",
)  # fmt: skip

TRAIN_LR = 0.01
TRAIN_MOMENTUM = 0.9


@dataclass(frozen=True)
class CostCase:
    """One architecture to time: a registry model with its kwargs, on a data set.

    The dict fields make instances unhashable; they are compared by value.
    """

    label: str
    """Name shown in frames and figures, e.g. ``"mlp (width 256)"``."""
    model: str
    model_kwargs: dict = field(default_factory=dict)
    dataset: str = "mnist1d"
    dataset_kwargs: dict = field(default_factory=dict)
    batch_size: int = 128
    """The training batch size of the epoch being timed."""
    n_examples: int = 4000
    """Examples in the timed training epoch and in the GN measurements."""


# ------------------------------------------------------------------------------------------ helpers
def _check_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(run: Callable[[], object], dev: torch.device) -> tuple[float, object]:
    """Seconds ``run()`` takes, with the device synchronised before and after; and its result."""
    _sync(dev)
    t0 = time.perf_counter()
    out = run()
    _sync(dev)
    return time.perf_counter() - t0, out


def _max_rel_diff(engine: Tensor, naive: Tensor) -> float:
    """``max_i |a_i - b_i| / |b_i|`` in float64; denominators below 1e-6 of the mean |b| are raised to it."""
    a, b = engine.detach().double().cpu(), naive.detach().double().cpu()
    floor = max(float(b.abs().mean()) * 1e-6, torch.finfo(torch.float64).tiny)
    return float(((a - b).abs() / b.abs().clamp_min(floor)).max())


@contextlib.contextmanager
def _full_precision() -> Iterator[None]:
    """CUDA matmuls and cuDNN convolutions in full float32 (no TF32) for the duration."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def _state_snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_state(model: nn.Module, snapshot: dict[str, Tensor]) -> bool:
    state = model.state_dict()
    return state.keys() == snapshot.keys() and all(torch.equal(state[k], v) for k, v in snapshot.items())


def _dataset_key(case: CostCase) -> tuple[str, str]:
    return case.dataset, json.dumps(case.dataset_kwargs, sort_keys=True, default=repr)


# ------------------------------------------------------------------------------------------ measuring
class _Runner:
    """Runs and times one method on one case's model and examples (all already on ``dev``)."""

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, batch_size: int, k: int, gn_batch_size: int,
                 dev: torch.device, seed: int):  # fmt: skip
        self.model, self.x, self.y, self.batch_size = model, x, y, batch_size
        self.k, self.gn_batch_size, self.dev = k, gn_batch_size, dev
        self.gen = torch.Generator().manual_seed(seed)  # the training epochs' batch order
        self.train_cfg = TrainConfig(optimizer="sgd", lr=TRAIN_LR, momentum=TRAIN_MOMENTUM, weight_decay=0.0)

    def __call__(self, method: str) -> tuple[float, object]:
        """(seconds for all n examples, the method's result)."""
        if method == "train_epoch":
            return self._train_epoch()
        if method in ("gn_full", "gn_fc"):
            scope = "full" if method == "gn_full" else "fc"
            return _timed(self._gn(scope), self.dev)
        if method == "naive":
            xk, yk = self.x[: self.k], self.y[: self.k]
            seconds, res = _timed(lambda: naive_sq_norms(self.model, xk, yk, scope="full"), self.dev)
            return seconds * len(self.y) / self.k, res
        raise ValueError(f"unknown method {method!r}; choices: {', '.join(METHODS)}")

    def _gn(self, scope: str) -> Callable[[], object]:
        return lambda: gradient_norm(
            self.model, (self.x, self.y), scope=scope, batch_size=self.gn_batch_size, device=self.dev
        )

    def _train_epoch(self) -> tuple[float, None]:
        """One SGD epoch on a fresh deep copy (copy and optimiser set-up not timed)."""
        net = copy.deepcopy(self.model).train()
        opt = make_optimizer(self.train_cfg, net.parameters())

        def epoch() -> None:
            for xb, yb in shuffled_batches(self.x, self.y, self.batch_size, self.gen):
                loss = training_loss(net(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        seconds, _ = _timed(epoch, self.dev)
        return seconds, None


def measure_costs(
    cases: Sequence[CostCase],
    *,
    device: str | torch.device = "auto",
    repeats: int = 5,
    naive_examples: int = 256,
    gn_batch_size: int = GN_BATCH_SIZE,
    seed: int = 0,
    progress: Progress = SILENT,
) -> pd.DataFrame:
    """Time one training epoch, exact GN, fc GN and the naive per-example loop on the same examples, per case.

    Returns a long frame with one row per (case, method, repeat) and the columns
    :data:`FRAME_COLUMNS`: ``seconds`` is the whole-set time (for ``naive`` extrapolated from its
    first ``naive_examples`` examples), ``repeat`` counts from 1, ``params`` is the trainable
    parameter count, ``input_shape`` one example's shape (``"3x32x32"``) and ``max_rel_diff`` the largest relative difference between the engine's and
    the naive loop's per-example squared norms on those examples. ``seed`` fixes the data split,
    the model's initial weights and the training epoch's batch order. The models are left unchanged.
    """
    repeats = _check_int("repeats", repeats)
    naive_examples = _check_int("naive_examples", naive_examples)
    gn_batch_size = _check_int("gn_batch_size", gn_batch_size)
    cases = list(cases)
    if not cases:
        raise ValueError("cases is empty: give at least one CostCase")
    for case in cases:
        if not isinstance(case, CostCase):
            raise TypeError(f"cases must be CostCase instances, got {type(case).__name__}")
        _check_int(f"n_examples of case {case.label!r}", case.n_examples)
        _check_int(f"batch_size of case {case.label!r}", case.batch_size)
    dev = resolve_device(device)
    say = progress.log
    data_cache: dict[tuple[str, str], tuple[Tensor, Tensor, int, tuple[int, ...]]] = {}
    rows: list[dict] = []
    for case in cases:
        key = _dataset_key(case)
        if key not in data_cache:
            splits = load_dataset(case.dataset, seed=seed, **case.dataset_kwargs)
            x_all, y_all = splits.train.tensors
            data_cache[key] = (x_all, y_all, splits.num_classes, splits.input_shape)
        x_all, y_all, num_classes, input_shape = data_cache[key]
        n = case.n_examples
        if len(y_all) < n:
            raise ValueError(
                f"case {case.label!r}: dataset {case.dataset!r} has only {len(y_all)} training examples, "
                f"fewer than n_examples={n}"
            )
        x, y = x_all[:n].to(dev), y_all[:n].to(dev)
        k = min(naive_examples, n)
        xk, yk = x[:k], y[:k]
        with torch.random.fork_rng(devices=[]):  # seeded weights, without touching the caller's RNG
            torch.manual_seed(seed)
            model = create_model(case.model, num_classes=num_classes, input_shape=input_shape, **case.model_kwargs)
        model = model.to(dev)
        n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        before = _state_snapshot(model)
        run = _Runner(model, x, y, case.batch_size, k, gn_batch_size, dev, seed)
        times: dict[str, list[float]] = {m: [] for m in METHODS}
        say(f"cost: {case.label}: warm-up")
        for method in METHODS:
            run(method)
        for r in range(1, repeats + 1):
            for method in METHODS:
                say(f"cost: {case.label}: {method} {r}/{repeats}")
                seconds, _ = run(method)
                times[method].append(seconds)
        with _full_precision():  # the check compares the arithmetic, not TF32's rounding of it
            engine_sq = per_sample_grad_sq_norms(model, xk, yk, scope="full")
            naive_sq = naive_sq_norms(model, xk, yk, scope="full").sq
        rel = _max_rel_diff(engine_sq, naive_sq)
        if not _same_state(model, before):
            raise RuntimeError(f"case {case.label!r}: the model changed while its costs were measured")
        for method in METHODS:
            for r, seconds in enumerate(times[method], start=1):
                rows.append({
                    "case": case.label, "model": case.model, "params": n_params,
                    "input_shape": "x".join(map(str, input_shape)), "n_examples": n,
                    "batch_size": case.batch_size, "device": str(dev), "method": method, "repeat": r,
                    "seconds": float(seconds), "naive_examples": k, "max_rel_diff": rel,
                })  # fmt: skip
        del run
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return pd.DataFrame(rows, columns=list(FRAME_COLUMNS))


# ------------------------------------------------------------------------------------------ summary
def _ordered(values: Sequence[str], first: Sequence[str]) -> list[str]:
    present = list(dict.fromkeys(values))
    return [v for v in first if v in present] + [v for v in present if v not in first]


def paired_ratios(frame: pd.DataFrame, numerator: str, denominator: str) -> pd.DataFrame:
    """Per case and round, seconds of ``numerator`` over seconds of ``denominator`` timed in the same round.

    ``frame`` is a :func:`~gnsel.study.cost.measure_costs` long frame; rounds where either method is
    missing are dropped. Columns ``case, repeat, ratio``; cases keep their order.
    """
    missing = [c for c in ("case", "method", "repeat", "seconds") if c not in frame.columns]
    if missing:
        raise ValueError(f"not a measure_costs frame: missing column(s) {missing}")
    sec = frame.pivot_table(index=["case", "repeat"], columns="method", values="seconds", aggfunc="median", sort=False)
    for m in (numerator, denominator):
        if m not in sec.columns:
            raise ValueError(f"the frame has no {m!r} rows to take ratios of")
    out = (sec[numerator] / sec[denominator]).dropna().rename("ratio").reset_index()
    order = {c: i for i, c in enumerate(dict.fromkeys(frame["case"]))}
    return out.sort_values(["case", "repeat"], key=lambda s: s.map(order) if s.name == "case" else s,
                           kind="stable").reset_index(drop=True)  # fmt: skip


def cost_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per case and method: median seconds, ratio to one training epoch with a [min, max] interval over repeats.

    Repeat ``i`` of a method is divided by repeat ``i`` of ``train_epoch``; ``ratio_to_epoch`` is the
    median of these ratios and ``ratio_low``/``ratio_high`` their min/max (``train_epoch`` itself is
    exactly 1). ``per_example_us`` = median seconds / n_examples * 1e6. Cases keep their order,
    methods follow :data:`METHODS`. Columns: :data:`SUMMARY_COLUMNS`.
    """
    missing = [c for c in ("case", "method", "repeat", "seconds", "n_examples") if c not in frame.columns]
    if missing:
        raise ValueError(f"not a measure_costs frame: missing column(s) {missing}")
    rows: list[dict] = []
    for case in dict.fromkeys(frame["case"]):
        part = frame[frame["case"] == case]
        if not (part["method"] == "train_epoch").any():
            raise ValueError(f"case {case!r} has no train_epoch rows to take ratios against")
        first = part.iloc[0]
        for method in _ordered(part["method"].tolist(), METHODS):
            sec = part[part["method"] == method].groupby("repeat")["seconds"].median()
            ratios = paired_ratios(part, method, "train_epoch")["ratio"]
            median = float(sec.median())
            row = {c: first[c] for c in SUMMARY_COLUMNS[:8] if c in part.columns}
            row.update({
                "case": case, "method": method, "repeats": len(sec), "seconds_median": median,
                "ratio_to_epoch": float(ratios.median()) if len(ratios) else float("nan"),
                "ratio_low": float(ratios.min()) if len(ratios) else float("nan"),
                "ratio_high": float(ratios.max()) if len(ratios) else float("nan"),
                "per_example_us": median / float(first["n_examples"]) * 1e6,
            })  # fmt: skip
            rows.append(row)
    out = pd.DataFrame(rows)
    return out[[c for c in SUMMARY_COLUMNS if c in out.columns]].reset_index(drop=True)


# ------------------------------------------------------------------------------------------ figure
def _ratio_text(v: float) -> str:
    if v >= 10:
        return f"{v:.0f}x"
    if v >= 1:
        return f"{v:.1f}x"
    return f"{v:.2f}x"


def plot_costs(summary: pd.DataFrame, path: str | Path) -> Path:
    """Grouped bars (log y) of each method's cost relative to one training epoch, per architecture, with interval whiskers.

    One group per case, one bar per method other than ``train_epoch`` (drawn as the dashed line at 1),
    whiskers from ``ratio_low`` to ``ratio_high``. Written as a PNG at ``path``; returns the path.
    """
    need = ["case", "method", "ratio_to_epoch", "ratio_low", "ratio_high"]
    missing = [c for c in need if c not in summary.columns]
    if missing:
        raise ValueError(f"not a cost_summary frame: missing column(s) {missing}")
    data = summary[summary["method"] != "train_epoch"]
    if data.empty:
        raise ValueError("nothing to plot: the summary has no method other than train_epoch")
    cases = list(dict.fromkeys(summary["case"]))
    methods = _ordered(data["method"].tolist(), METHODS)
    colours = {"gn_full": "tab:blue", "gn_fc": "tab:green", "naive": "tab:red"}
    width = 0.8 / len(methods)
    fig = Figure(figsize=(8.0, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    top = 1.0
    for j, method in enumerate(methods):
        part = data[data["method"] == method].set_index("case").reindex(cases)
        xs = np.arange(len(cases)) + (j - (len(methods) - 1) / 2) * width
        val = part["ratio_to_epoch"].to_numpy(float)
        low = np.clip(val - part["ratio_low"].to_numpy(float), 0, None)
        high = np.clip(part["ratio_high"].to_numpy(float) - val, 0, None)
        label = METHOD_LABELS.get(method, method)
        if method == "naive" and "naive_examples" in part.columns:
            ks = sorted({int(v) for v in part["naive_examples"].dropna()})
            if ks:
                label += f" (timed on {'/'.join(map(str, ks))} examples, scaled)"
        ax.bar(xs, val, width, yerr=np.vstack([low, high]), capsize=3, label=label,
               color=colours.get(method), alpha=0.85, error_kw={"elinewidth": 1})  # fmt: skip
        for xi, v, h in zip(xs, val, val + high):
            if np.isfinite(v):
                ax.text(xi, h * 1.12, _ratio_text(v), ha="center", va="bottom", fontsize=7)
                top = max(top, h)
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label=METHOD_LABELS["train_epoch"])
    ax.set_yscale("log")
    ax.set_ylim(top=top * 3)
    ticks = []
    for case in cases:
        row = summary[summary["case"] == case].iloc[0]
        ticks.append(f"{case}\n{int(row['params']):,} params" if "params" in summary.columns else str(case))
    ax.set_xticks(np.arange(len(cases)))
    ax.set_xticklabels(ticks, fontsize=8)
    ax.set_ylabel("cost / one training epoch")
    def values(col: str) -> str:
        return "/".join(str(v) for v in dict.fromkeys(summary[col].tolist())) if col in summary.columns else ""

    bits = [f"{values('n_examples')} examples" if "n_examples" in summary.columns else "",
            f"batch {values('batch_size')}" if "batch_size" in summary.columns else "", values("device")]  # fmt: skip
    detail = ", ".join(b for b in bits if b)
    ax.set_title("Cost of gradient norms relative to one training epoch" + (f" ({detail})" if detail else ""),
                 fontsize=9)  # fmt: skip
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=2, frameon=False)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, format="png", dpi=120, bbox_inches="tight")
    return out

