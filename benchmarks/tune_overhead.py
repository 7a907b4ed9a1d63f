"""What Ray Tune costs per trial on this machine, against the trials' own training time.

A random search of ``--trials`` trials of ``--epochs`` epochs on MNIST-1D (MLP, the space below) runs
through ``gnsel.tune.live.run_search`` (Ray started beforehand, its start timed apart):

* one trial at a time: overhead per trial = (wall time of the search - sum of the trials' epoch
  compute: training, evaluation and GN measurement) / trials; the part spent outside the trial
  actors = (wall - sum of Tune's ``time_total_s``) / trials;
* the same with two trials at a time (``--cpus``), wall time only;
* the GN objective ``val_loss+0.1*gn_fc`` one at a time (its probe-set measurement is trial compute);
* the same search with Tune's default experiment-state saving, to price gnsel's exact resume;
* the baseline: the same configurations trained in this process one after the other
  (``gnsel.training.TrainingRun``, no Ray).

Reproduce: ``python benchmarks/tune_overhead.py`` (appends a section to benchmarks/RESULTS_TUNE.md).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import tempfile
import time
from pathlib import Path

import torch

SPACE = {
    "dataset": "mnist1d",
    "fixed": {"model": "mlp", "probe_size": 512},
    "space": {
        "lr": {"loguniform": [0.01, 0.2]},
        "batch_size": {"choice": [64, 128]},
        "model_kwargs.width": {"choice": [64, 256]},
    },
}
RESULTS = Path(__file__).resolve().parent / "RESULTS_TUNE.md"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def search(tmp: Path, name: str, objective: str, trials: int, epochs: int, concurrent: int) -> dict:
    from gnsel.tune.live import run_search

    res = run_search(
        SPACE, algorithm="random", objective=objective, trials=trials, epochs=epochs, storage=tmp / "ray",
        store=tmp / "tune.sqlite", name=name, seed=0, max_concurrent=concurrent,
    )  # fmt: skip
    rows = [row for r in res.records for row in r.rows]
    compute = sum(row["train_seconds"] + row["eval_seconds"] + row["measure_seconds"] for row in rows)
    inside = sum(r.last["time_total_s"] for r in res.records if r.last)
    extra = sorted(  # per trial: time in its actor beyond its epochs' compute (start-up, checkpoints, reports)
        r.last["time_total_s"] - sum(row["train_seconds"] + row["eval_seconds"] + row["measure_seconds"] for row in r.rows)
        for r in res.records if r.last
    )  # fmt: skip
    return {"res": res, "wall": res.wall_seconds, "compute": compute, "inside": inside, "extra": extra,
            "gn": sum(row["measure_seconds"] for row in rows), "trials": len(res.records)}  # fmt: skip


def baseline(res, epochs: int) -> float:
    from gnsel.tune.space import load_space
    from gnsel.training import TrainingRun

    sp = load_space(SPACE)
    t0 = time.perf_counter()
    for r in res.records:
        cfg = sp.resolve(r.config, epochs=epochs, measure_gn=False, trajectory_gn=False)
        t = TrainingRun(cfg, gn_scopes=())
        while t.epoch < cfg.epochs:
            t.step_epoch()
    return time.perf_counter() - t0


def write_section(title: str, body: str) -> None:
    start, end = f"<!-- tune_overhead: {title} -->", f"<!-- /tune_overhead: {title} -->"
    text = RESULTS.read_text() if RESULTS.exists() else (
        "# gnsel tune: Ray Tune overhead\n\nWritten by `benchmarks/tune_overhead.py`; one section per machine.\n"
    )  # fmt: skip
    section = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs given to Ray (and trials run at once in the parallel row)")
    ap.add_argument("--no-write", action="store_true", help="Print only; do not touch RESULTS_TUNE.md.")
    args = ap.parse_args()
    import ray

    torch.set_num_threads(1)
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - t0
    out = []
    with tempfile.TemporaryDirectory(prefix="gnsel-tune-bench-") as d:
        tmp = Path(d)
        serial = search(tmp, "serial", "val_loss", args.trials, args.epochs, 1)
        parallel = search(tmp, "parallel", "val_loss", args.trials, args.epochs, args.cpus)
        gn = search(tmp, "gn", "val_loss+0.1*gn_fc", args.trials, args.epochs, 1)
        import gnsel.tune.live as live
        from gnsel.tune.algorithms import get_algorithm

        random_search, env = get_algorithm("random"), live._TUNE_ENV
        plan_of = type(random_search).live

        def lax_plan(*a, **kw):  # Tune's own default: two checkpoints kept per trial
            plan = plan_of(random_search, *a, **kw)
            plan.keep_checkpoints = 2
            return plan

        random_search.live, live._TUNE_ENV = lax_plan, {"RAY_AIR_NEW_OUTPUT": "0"}  # Tune's own defaults
        try:
            lax = search(tmp, "lax", "val_loss", args.trials, args.epochs, 1)
        finally:
            del random_search.live
            live._TUNE_ENV = env
        base = baseline(serial["res"], args.epochs)
    ray.shutdown()
    n = args.trials
    table = [
        "| run | trials at once | wall s | trial compute s | GN s | in trial actors s | overhead / trial s "
        "| outside actors / trial s | in actor beyond compute, per trial: median / max s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r, conc in (("random, val_loss", serial, 1), (f"random, val_loss", parallel, args.cpus),
                           ("random, val_loss+0.1*gn_fc", gn, 1),
                           ("random, val_loss, Tune's default state saving", lax, 1)):  # fmt: skip
        over = (r["wall"] - r["compute"] / conc) / (n / conc)
        outside = (r["wall"] - r["inside"] / conc) / (n / conc)
        table.append(
            f"| {label} | {conc} | {r['wall']:.1f} | {r['compute']:.2f} | {r['gn']:.2f} | {r['inside']:.1f} "
            f"| {over:.2f} | {outside:.2f} | {r['extra'][len(r['extra']) // 2]:.2f} / {r['extra'][-1]:.2f} |"
        )
    table.append(f"| same configs in this process (TrainingRun, no Ray) | 1 | {base:.1f} | | | | - | - | - |")
    body = (
        f"## {cpu_name()}, {args.cpus} CPUs for Ray\n\n"
        f"`python benchmarks/tune_overhead.py`, ray {ray.__version__}, torch {torch.__version__}, 1 thread per trial, "
        f"{datetime.date.today()}, load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (a shared "
        f"machine: other jobs ran). Random search, {n} trials of "
        f"{args.epochs} epochs, MNIST-1D (7200 train, 800 val, 2000 test), MLP width 64/256, batch 64/128; Ray start "
        f"{ray_start:.1f} s (not counted).\n\n" + "\n".join(table) + "\n\n"
        "Overhead / trial = (wall - trial compute / trials at once) / (trials / trials at once); trial compute is "
        "each epoch's training, evaluation and GN measurement. In trial actors = Tune's `time_total_s` (build, "
        "epochs, checkpoints, reports); its part beyond the epochs' compute is small for most trials and large for "
        "the few that start a new trial actor (importing torch and gnsel: `reuse_actors` keeps the others); Tune may start that actor while the "
        "previous trial still runs, so the time outside actors can come out negative. gnsel saves the experiment state at every step and keeps one checkpoint "
        "per trial, which makes Tune wait for the state on storage after every checkpoint (so a killed search "
        "resumes exactly); the last run row uses Tune's defaults instead (state every >= 10 s, 2 checkpoints).\n"
    )  # fmt: skip
    print(body)
    if not args.no_write:
        write_section(f"{cpu_name()} | {args.cpus} CPUs", body)
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
