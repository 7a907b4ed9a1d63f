"""What the zoo's measurements cost, and how fast `gnsel zoo build` trains on this machine.

1. Trajectory GN: a training step with `GradNormCollector` (exact per-example norms of the step's
   mini-batch) against the same plain step, per model and batch size (median of many steps).
2. Per-epoch measurement: GN full and fc on the probe set against one plain training epoch.
3. Throughput of `zoo build` (runs per minute) with one and with two Ray workers on the same grid.

Reproduce: `python benchmarks/zoo_speed.py` (writes a section of benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gradnorm_speed import device_name, update_results  # noqa: E402

import gnsel  # noqa: E402
from gnsel.training import TrainConfig, build, probe_set  # noqa: E402
from gnsel.zoo import build_zoo, load_grid  # noqa: E402


def _median_ms(fn, repeats: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return 1e3 * times[len(times) // 2]


def step_costs(models: list[tuple[str, dict]], batches: list[int], repeats: int) -> list[list[str]]:
    """Plain training step against a step with trajectory GN, and probe measurement against an epoch."""
    rows = []
    for name, kwargs in models:
        cfg = TrainConfig(model=name, model_kwargs=kwargs, n_train=4000, probe_size=512, device="cpu")
        model, splits = build(cfg)
        model.train()
        x_all, y_all = splits.train.tensors
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        collector = gnsel.GradNormCollector(model, batch_stats="constant")
        probe = probe_set(splits, cfg)
        for b in batches:
            x, y = x_all[:b], y_all[:b]

            def plain() -> None:
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                opt.step()

            def with_gn() -> None:
                opt.zero_grad(set_to_none=True)
                with collector.batch(b):
                    collector.backward(F.cross_entropy(model(x), y))
                opt.step()

            t_plain = _median_ms(plain, repeats)
            t_gn = _median_ms(with_gn, repeats)
            steps = -(-len(y_all) // b)
            t_epoch = t_plain * steps
            t_probe = _median_ms(lambda: (gnsel.gradient_norm(model, probe, scope="full", device="cpu"),
                                          gnsel.gradient_norm(model, probe, scope="fc", device="cpu")), max(5, repeats // 10))
            rows.append([f"{name} {kwargs}", str(b), f"{t_plain:.3f}", f"{t_gn:.3f}", f"{t_gn / t_plain:.2f}x",
                         f"{t_epoch:.1f}", f"{t_probe:.1f}", f"{t_probe / t_epoch:.3f}x"])
            print(" | ".join(rows[-1]), flush=True)
        collector.close()
    return rows


def build_throughput(grid: dict, workers: list[int]) -> list[list[str]]:
    """Runs per minute of `zoo build` on the same grid with each number of Ray workers."""
    rows = []
    configs = load_grid(grid).configs
    for w in workers:
        tmp = Path(tempfile.mkdtemp())
        try:
            t = time.perf_counter()
            summary = build_zoo(configs, tmp / "zoo.sqlite", workers=w, use_ray=True)
            seconds = time.perf_counter() - t
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        rows.append([str(w), str(len(configs)), f"{seconds:.1f}", f"{60 * summary.done / seconds:.1f}"])
        print(" | ".join(rows[-1]), flush=True)
    return rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "RESULTS.md")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    models = [("mlp", {"width": 256}), ("cnn1d", {"channels": 32}), ("cnn1d", {"channels": 32, "batch_norm": True})]
    steps = step_costs(models, args.batches, args.repeats)
    grid = {"dataset": "mnist1d", "models": {"mlp": {"width": [32, 128]}, "cnn1d": {"channels": [8, 16]}},
            "train": {"lr": [0.05, 0.1], "epochs": 5, "n_train": 2000, "probe_size": 256}}
    builds = build_throughput(grid, args.workers)
    dev = torch.device("cpu")
    key = f"Zoo costs - {device_name(dev)}"
    text = "\n".join([
        f"<!-- gradnorm_speed: {key} -->",
        f"## {key}",
        "",
        f"`python benchmarks/zoo_speed.py`, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{time.strftime('%Y-%m-%d')}. MNIST-1D; a training step is SGD on one mini-batch (train mode).",
        "",
        "Trajectory GN per step, and GN full+fc on the 512-example probe set per epoch (n_train 4000):",
        "",
        _table(["model", "batch", "plain step ms", "step with trajectory GN ms", "ratio",
                "plain epoch ms", "probe GN ms", "probe / epoch"], steps),
        "",
        "`zoo build` throughput (8 runs of 5 epochs, Ray workers):",
        "",
        _table(["workers", "runs", "seconds", "runs per minute"], builds),
        f"<!-- /gradnorm_speed: {key} -->",
        "",
    ])
    print(text)
    if not args.no_write:
        update_results(args.out, key, text)


if __name__ == "__main__":
    main()
