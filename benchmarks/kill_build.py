"""Kill `gnsel zoo build` with SIGKILL at random moments, rebuild at once, and check the store (issue #13).

    python benchmarks/kill_build.py --kills 12                     # in-process builds (--workers 1)
    python benchmarks/kill_build.py --kills 12 --workers 2         # Ray builds: SIGKILL the driver only, so its
                                                                   # workers live on for seconds (stale writers)
    python benchmarks/kill_build.py --kills 3 --workers 2 --target worker   # SIGKILL a Ray worker mid-run:
                                                                   # the run is retried, the build exits 0

A tiny grid (``--runs`` MLPs on MNIST-1D, ``--epochs`` each, no stopping criterion) is built into a fresh store
under ``--out``. ``--target driver`` (default): each cycle starts ``gnsel zoo build`` in a new session, waits a
random time drawn uniformly from [``--min-wait``, ``--max-wait``] seconds, SIGKILLs the build's process (only
it: Ray workers it started keep running until they notice) and starts the next build at once; a build that
finished before its kill time is not a kill: its store is checked and the next cycle uses a fresh store (a new
*round*). After the kills one build runs to completion (it must exit 0). ``--target group`` kills the whole
session instead. ``--target worker`` SIGKILLs one ``ray::run_one`` worker of the build (found by session, so
no one else's process is touched) and lets the build finish: it must exit 0 with every run done.

After every kill, every ``done`` run must have all its epochs (the bug of issue #13 was a ``done`` run with a
hole). At the end of each round every run must be ``done`` with epochs 0..stop exactly once, checkpoints at 0
and at the stop epoch and no temporary files. Prints a JSON summary (kills, rounds, runs, restarts: attempts
beyond the first, i.e. trainings thrown away, and every problem found); exits 1 if there was any problem.
Processes left by killed builds are SIGKILLed by pid at the end, once their session is known to be dead.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from gnsel.store import Store


def grid(runs: int, epochs: int) -> dict:
    """``runs`` MLPs of different widths on MNIST-1D, ``epochs`` each (every epoch trained)."""
    return {
        "dataset": "mnist1d",
        "dataset_kwargs": {"num_samples": 2000},
        "models": {"mlp": {"width": [16 + 8 * k for k in range(runs)]}},
        "train": {"lr": 0.05, "epochs": epochs, "batch_size": 16, "probe_size": 32, "n_train": 1200, "stop_loss": None},
    }


def session_pids(sid: int) -> list[int]:
    """Live processes of session ``sid`` (started by this script: each build is a session of its own)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            out.append(int(entry.name))
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def check(store_path: Path, complete: bool) -> list[str]:
    """Problems of the store: a done run with missing or extra epochs (always); when ``complete``, also any run
    not done, a missing checkpoint, or a temporary file left."""
    problems: list[str] = []
    if not store_path.exists():
        return ["no store"] if complete else []
    store = Store(store_path, mode="r")
    runs = store.runs_frame()
    epochs = store.epochs_frame()
    by_run = epochs.groupby("run_id")["epoch"].apply(list).to_dict() if len(epochs) else {}
    for _, run in runs.iterrows():
        rid, status = run["run_id"], run["status"]
        eps = sorted(by_run.get(rid, []))
        if status == "done":
            stop = int(json.loads(run["extra_json"])["stop_epoch"])
            if eps != list(range(stop + 1)):
                problems.append(f"{rid}: done with epochs {eps} (expected 0..{stop})")
            if complete:
                ckpts = store.checkpoint_epochs(rid)
                if ckpts != sorted({0, stop}):
                    problems.append(f"{rid}: checkpoints {ckpts} (expected 0 and {stop})")
                folder = store._checkpoint_dir(rid, None)
                temps = [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] if folder.is_dir() else []
                if temps:
                    problems.append(f"{rid}: temporary files {temps}")
        elif complete:
            problems.append(f"{rid}: {status} after a complete build")
        if len(eps) != len(set(eps)):
            problems.append(f"{rid}: duplicate epochs")
    store.close()
    return problems


def attempts(store_path: Path) -> list[int]:
    store = Store(store_path, mode="r")
    out = [int(a) for a in store.runs_frame()["attempts"]]
    store.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=12)
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--target", choices=("driver", "group", "worker"), default="driver")
    ap.add_argument("--min-wait", type=float, default=0.3)
    ap.add_argument("--max-wait", type=float, default=12.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("gnsel-out/kill-build"))
    ap.add_argument("--timeout", type=float, default=900.0, help="Seconds a final build may take.")
    args = ap.parse_args()
    if args.target == "worker" and args.workers < 2:
        ap.error("--target worker needs Ray workers: --workers 2 or more")

    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    grid_file = args.out / "grid.yaml"
    grid_file.write_text(yaml.safe_dump(grid(args.runs, args.epochs)))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("GNSEL_DATA_ROOT", str(args.out / "data"))
    sessions: list[int] = []
    rounds: list[dict] = []
    problems: list[str] = []
    kills = 0
    t0 = time.time()

    def new_store() -> Path:
        path = args.out / f"round{len(rounds)}.sqlite"
        for p in args.out.glob(f"{path.name}*"):
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
        return path

    def start(store_path: Path) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "gnsel.cli", "zoo", "build", "--grid", str(grid_file), "--store",
               str(store_path), "--workers", str(args.workers)]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)
        sessions.append(proc.pid)
        return proc

    def close_round(store_path: Path, rc: int, stderr: str, kills_in_round: int) -> None:
        found = check(store_path, complete=True)
        if rc != 0:
            found.append(f"final build exited {rc}: {stderr.strip().splitlines()[-1:] }")
        tries = attempts(store_path)
        rounds.append({"store": store_path.name, "kills": kills_in_round, "runs": len(tries),
                       "restarts": sum(a - 1 for a in tries), "problems": found})  # fmt: skip
        problems.extend(f"{store_path.name}: {p}" for p in found)

    store_path = new_store()
    in_round = 0
    while kills < args.kills:
        proc = start(store_path)
        wait = rng.uniform(args.min_wait, args.max_wait)
        try:
            rc = proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            rc = None
        if rc is None and args.target == "worker":
            victims = [p for p in session_pids(proc.pid) if cmdline(p).startswith("ray::run_one")]
            if victims:
                os.kill(rng.choice(victims), signal.SIGKILL)
                kills += 1
                in_round += 1
            _, err = proc.communicate(timeout=args.timeout)
            close_round(store_path, proc.returncode, err.decode(errors="replace"), in_round)
            store_path, in_round = new_store(), 0
            continue
        if rc is None:
            if args.target == "group":
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stderr.close()
            kills += 1
            in_round += 1
            problems.extend(f"{store_path.name} after kill {kills}: {p}" for p in check(store_path, complete=False))
            continue
        close_round(store_path, rc, proc.stderr.read().decode(errors="replace"), in_round)  # it finished first
        store_path, in_round = new_store(), 0
    if args.target != "worker":
        proc = start(store_path)
        _, err = proc.communicate(timeout=args.timeout)
        close_round(store_path, proc.returncode, err.decode(errors="replace"), in_round)
    time.sleep(1.0)
    leftovers = [p for sid in sessions for p in session_pids(sid)]
    for pid in leftovers:  # Ray processes of killed builds: ours, by pid
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    summary = {
        "kills": kills, "target": args.target, "workers": args.workers, "rounds": len(rounds),
        "runs_checked": sum(r["runs"] for r in rounds), "restarts": sum(r["restarts"] for r in rounds),
        "leftover_processes_killed": len(leftovers), "seconds": round(time.time() - t0, 1),
        "problems": problems, "per_round": rounds,
    }  # fmt: skip
    print(json.dumps(summary, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
