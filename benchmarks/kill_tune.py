"""SIGKILL ``gnsel tune`` at random moments, resume it with ``--resume`` each time, and check what survived.

For each algorithm of ``--algorithms`` one search (``--trials`` trials x ``--epochs`` epochs on a tiny
MNIST-1D space: generated data, no download) runs as its own ``python -m gnsel.cli tune`` process. The
script SIGKILLs that process (``kill -9``: no clean-up of any kind) at a random moment -- the first
kill of a search within its first ``--early`` seconds (Ray starting, trials being set up), the others
mid-search, once the store holds a random number of further epochs, plus a random fraction of a
second (anywhere between two of Tune's events) -- waits for
the Ray processes it had started to go (they share its fate; any left after ``--reap`` seconds are
SIGKILLed by pid), and starts the same command with ``--resume``; each search has a store of its own
(searches over one space with one seed would share runs); ``--kills`` times per search, then
once more without a kill, to the end. A session that ends on its own before its kill is not killed.

At the end of each search it checks, from Tune's experiment state (Ray's public ``ExperimentAnalysis``),
gnsel's store (plain sqlite3) and the selection report (CSV) -- nothing here uses gnsel's own
loaders, so the check holds for any version of gnsel:

* the last session exited 0, or it refused to resume with a one-line ``error:`` and a non-zero exit
  (then the search counts as refused, not lost) -- not hung (``--limit``), not crashed, and with no
  traceback in its output;
* Tune holds exactly ``--trials`` trials, all TERMINATED (none failed, none repeated);
* the selection report counts ``--trials`` trials and 0 failed;
* each trial's run in the store is ``done`` with its epochs exactly ``1..last`` (last = the trial's last
  reported epoch; the full ``--epochs`` for random and tpe), and the store has no failed run and no
  finished run of the search that Tune does not know (a trial run twice).

Reproduce: ``python benchmarks/kill_tune.py --algorithms random,asha,hyperband --kills 4`` (about 10
minutes on 2 cores). ``--src`` runs another checkout's gnsel (e.g. the code before a fix). The exit
status is 0 when no search lost anything (refusals allowed), 1 otherwise; ``--json`` writes the
numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SPACE = {
    "name": "kill-tiny",
    "dataset": "mnist1d",
    "dataset_kwargs": {"num_samples": 1000},
    "fixed": {"n_train": 300, "probe_size": 64, "model_kwargs": {"width": 16}},
    "space": {"lr": {"loguniform": [0.02, 0.2]}, "batch_size": {"choice": [64, 128]}},
}


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def session(cmd: list[str], env: dict[str, str], log: Path, kill: dict | None, store: Path, reap: float,
            limit: float) -> dict:  # fmt: skip
    """Run ``cmd``; SIGKILL it at the moment ``kill`` says unless it ended first. Returns what happened.

    ``kill``: ``{"after": s}`` (seconds after the start: Ray starting, the first trials being set up) or
    ``{"epochs": n, "jitter": s}`` (``s`` seconds after the store first holds ``n`` epoch rows: mid-search,
    anywhere between two of Tune's events); None: let it run to its end. A session still running after
    ``limit`` seconds is SIGKILLed and reported as hung.
    """
    t0 = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        kids: set[int] = set()
        killed, hung, due = False, False, None
        try:
            while True:
                try:
                    proc.wait(timeout=0.05)
                    break
                except subprocess.TimeoutExpired:
                    kids |= descendants(proc.pid)
                    now = time.monotonic()
                    if kill is not None and due is None:
                        if "after" in kill:
                            due = t0 + kill["after"]
                        elif progress(store)["epochs"] >= kill["epochs"]:
                            due = now + kill["jitter"]
                    hung = now - t0 > limit
                    if hung or (due is not None and now >= due):
                        kids |= descendants(proc.pid)
                        os.kill(proc.pid, signal.SIGKILL)
                        proc.wait()
                        killed = not hung
                        break
        finally:
            if proc.poll() is None:
                proc.kill()
    seconds = time.monotonic() - t0
    left = {p for p in kids if alive(p)}
    deadline = time.monotonic() + reap
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = {p for p in left if alive(p)}
    for p in left:  # the Ray processes this session started and that outlived it
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    text = log.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    return {"killed": killed, "hung": hung, "rc": None if killed or hung else proc.returncode, "seconds": round(seconds, 1),
            "reaped": len(left), "last_line": " ".join(lines[errors[-1]:])[:400] if errors else (lines[-1][:300] if lines else ""),
            "tracebacks": text.count("Traceback"), "error_lines": len(errors)}  # fmt: skip


def progress(store: Path) -> dict:
    """How far the search had got: epoch rows and finished runs in its store."""
    if not store.exists():
        return {"epochs": 0, "done": 0}
    with sqlite3.connect(store) as db:
        try:
            epochs = db.execute("SELECT COUNT(*) FROM epochs").fetchone()[0]
            done = db.execute("SELECT COUNT(*) FROM runs WHERE status = 'done'").fetchone()[0]
        except sqlite3.OperationalError:  # no tables yet
            return {"epochs": 0, "done": 0}
    return {"epochs": int(epochs), "done": int(done)}


def check(work: Path, name: str, algorithm: str, trials: int, epochs: int) -> dict:
    """What the search holds now: Tune's trials, the store's runs and the selection report's row."""
    from ray.tune import ExperimentAnalysis  # heavy: ray

    out: dict = {"problems": []}
    path = work / "ray" / name
    try:
        analysis = ExperimentAnalysis(str(path))
    except Exception as err:  # noqa: BLE001 -- reported, not raised
        out["problems"].append(f"Tune state unreadable: {type(err).__name__}: {err}")
        return out
    ts = analysis.trials
    status = [t.status for t in ts]
    out["tune_trials"] = len(ts)
    out["tune_terminated"] = status.count("TERMINATED")
    out["tune_error"] = status.count("ERROR")
    if len(ts) != trials:
        out["problems"].append(f"Tune holds {len(ts)} trials, not {trials}")
    if len({t.trial_id for t in ts}) != len(ts):
        out["problems"].append("a trial id repeats")
    if status.count("TERMINATED") != len(ts):
        out["problems"].append(f"trial statuses {sorted(set(status))}: {status.count('ERROR')} ERROR")
    db = sqlite3.connect(work / f"{name}.sqlite")
    runs = {}
    for rid, st, extra in db.execute("SELECT run_id, status, extra_json FROM runs"):
        e = json.loads(extra) if extra else {}
        runs[rid] = (st, e)
    epochs_of: dict[str, list[int]] = {}
    for rid, ep in db.execute("SELECT run_id, epoch FROM epochs ORDER BY run_id, epoch"):
        epochs_of.setdefault(rid, []).append(int(ep))
    db.close()
    ids = {t.trial_id for t in ts}
    mine = {rid: v for rid, v in runs.items() if v[1].get("search") == name}
    out["store_failed"] = sum(st == "failed" for st, _ in mine.values())
    out["store_unknown_done"] = sum(st == "done" and e.get("trial_id") not in ids for st, e in mine.values())
    if out["store_failed"]:
        out["problems"].append(f"{out['store_failed']} failed runs in the store")
    if out["store_unknown_done"]:
        out["problems"].append(f"{out['store_unknown_done']} finished runs of trials Tune does not hold (repeated)")
    bad_rows = 0
    for t in ts:
        last = t.last_result or {}
        rid, ep = last.get("run_id"), last.get("epoch")
        if rid is None or ep is None:
            out["problems"].append(f"trial {t.trial_id} has no result")
            continue
        if runs.get(rid, ("?",))[0] != "done":
            out["problems"].append(f"trial {t.trial_id}: its run is {runs.get(rid, ('missing',))[0]} in the store")
        if epochs_of.get(rid, []) != list(range(1, int(ep) + 1)):
            bad_rows += 1
        if algorithm in ("random", "tpe", "grid") and int(ep) != epochs:
            out["problems"].append(f"trial {t.trial_id} ended at epoch {ep} of {epochs}")
    out["store_bad_epoch_rows"] = bad_rows
    if bad_rows:
        out["problems"].append(f"{bad_rows} trials whose store epochs are not exactly 1..last")
    sel = work / "ray" / "selection.csv"
    if sel.exists():
        import pandas as pd  # heavy: pandas

        df = pd.read_csv(sel)
        row = df[df["search"] == name]
        if len(row) != 1:
            out["problems"].append("no row in the selection report")
        else:
            out["selection_trials"], out["selection_failed"] = int(row["trials"].item()), int(row["failed"].item())
            if out["selection_trials"] != trials or out["selection_failed"]:
                out["problems"].append(f"selection over {out['selection_trials']} trials, {out['selection_failed']} failed")
    else:
        out["problems"].append("no selection report")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--algorithms", default="random,asha,hyperband")
    ap.add_argument("--kills", type=int, default=4, help="SIGKILLs per search (at most; a session may end first)")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--early", type=float, default=8.0,
                    help="the first kill of a search at a random moment in its first this many seconds (0: none)")
    ap.add_argument("--limit", type=float, default=300.0, help="seconds after which a session counts as hung")
    ap.add_argument("--reap", type=float, default=20.0, help="seconds the killed session's Ray processes get to go")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/gnsel-kill-tune"))
    ap.add_argument("--src", type=Path, default=ROOT / "src", help="the gnsel source tree to run")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    work = args.work.resolve()
    if work.exists():
        import shutil

        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / "space.yaml").write_text(yaml.safe_dump(SPACE))
    env = {**os.environ, "PYTHONPATH": str(args.src.resolve()), "GNSEL_DATA_ROOT": str(work / "data"),
           "COLUMNS": "200"}  # fmt: skip
    sys.path.insert(0, str(args.src.resolve()))
    report = []
    for alg in [a.strip() for a in args.algorithms.split(",") if a.strip()]:
        name = f"kill-{alg}"
        base = [sys.executable, "-m", "gnsel.cli", "tune", "--space", str(work / "space.yaml"), "--algorithm", alg,
                "--objective", "val_loss", "--trials", str(args.trials), "--epochs", str(args.epochs),
                "--storage", str(work / "ray"), "--store", str(work / f"{name}.sqlite"), "--name", name, "--seed", "1"]  # fmt: skip
        sessions, outcome = [], None
        store = work / f"{name}.sqlite"
        total = args.trials * args.epochs if alg in ("random", "tpe", "grid") else args.trials * args.epochs // 2
        for k in range(args.kills + 1):
            done = progress(store)["epochs"]
            if k == args.kills:
                kill = None
            elif k == 0 and args.early:  # during Ray's start or the first trials' set-up
                kill = {"after": rng.uniform(1.0, args.early)}
            else:  # mid-search: after a random number of further epochs, at a random moment between events
                kill = {"epochs": done + rng.randint(1, max(1, (total - done) // 2)), "jitter": rng.uniform(0.0, 0.8)}
            cmd = base + (["--resume"] if k else [])
            s = session(cmd, env, work / f"{name}-{k}.log", kill, store, args.reap, args.limit)
            s["kill"] = kill
            s["progress"] = progress(store)
            sessions.append(s)
            at = f" ({s['progress']['epochs']} epochs, {s['progress']['done']} trials done)"
            print(f"{name} session {k}: " + (f"killed at {s['seconds']} s{at}" if s["killed"] else
                  f"exit {s['rc']} after {s['seconds']} s: {s['last_line'][:160]}"), flush=True)  # fmt: skip
            if not s["killed"]:
                if s["hung"]:
                    outcome = "hung"
                elif s["rc"] == 0:
                    outcome = "finished"
                else:
                    # one error message (gnsel's console may wrap it), no traceback
                    outcome = "refused" if s["error_lines"] == 1 and not s["tracebacks"] else "crashed"
                break
        if outcome is None:
            outcome = "still killed"
        result = {"algorithm": alg, "search": name, "kills": sum(s["killed"] for s in sessions),
                  "sessions": sessions, "outcome": outcome}  # fmt: skip
        if outcome == "finished":
            result.update(check(work, name, alg, args.trials, args.epochs))
            result["ok"] = not result["problems"] and sessions[-1]["tracebacks"] == 0
        else:
            result["problems"] = [f"ended {outcome}: {sessions[-1]['last_line']}"]
            result["ok"] = outcome == "refused"
        report.append(result)
        print(f"{name}: {outcome}, {result['kills']} kills; " + ("; ".join(result["problems"]) or "nothing lost"),
              flush=True)  # fmt: skip
    kills = sum(r["kills"] for r in report)
    lost = [r["search"] for r in report if not r["ok"]]
    print(f"total: {len(report)} searches, {kills} kills, {sum(r['outcome'] == 'finished' for r in report)} finished, "
          f"{sum(r['outcome'] == 'refused' for r in report)} refused, problems in: {', '.join(lost) or 'none'}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
