"""Before/after for the grant path (issue 17 item 2): :func:`bench.scale.steady` on several
source trees side by side, interleaved as in ``bench/spawner_ab.py``, every agent with
``RAFTCRON_TRACE_RUNS=1``; per window, the p50 over its every-second runs of when the
executor's loop ran the grant (``granted``, ms after the scheduled second), of a few
steps of the grant path (``bench/run_timeline.py``: the leader's loop woke, its replica
applied the plan, the executing follower's tick that applied it began) and of the job's
own first timestamp.

    git archive OLD | tar -x -C /tmp/old
    PYTHONPATH=. .venv/bin/python -m bench.grant_ab old=/tmp/old new=. [--rounds 4]
        [--seconds 15] [--jobs 5]

Both trees must trace the leader and the replicas (a tree without those lines gives only
``granted`` and ``job``). Prints each window, then per tree the median over rounds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Ctx, Sizes
from bench.procs import Registry, log
from bench.run_timeline import grant_path, traced
from bench.scale import read_starts, steady

# (label, where the run executed, step): "granted" over every run; the rest as named
STEPS = (
    ("granted", None, "granted"),
    ("woke", None, "L.woke"),
    ("L.applied", None, "L.applied"),
    ("X.commit_tick", "follower", "X.commit_tick"),
    ("granted@f", "follower", "granted"),
    ("granted@L", "leader", "granted"),
)


def window(root: Path, seen: set[str]) -> dict[str, float]:
    """The p50s of the runs traced since the last call (``seen``: run ids already used)."""
    runs, plans, entries = traced(root)
    new = {rid: v for rid, v in runs.items() if rid not in seen}
    seen.update(new)
    starts = read_starts(root / "steady-0.txt")
    path = grant_path(new, plans, entries)
    out: dict[str, float] = {}
    for label, where, step in STEPS:
        xs = [
            x
            for w, steps in path.items()
            if where is None or w == where
            for x in steps.get(step, [])
        ]
        if label == "granted" and not xs:
            xs = [m["granted"] for _, m in new.values() if "granted" in m]
        if xs:
            out[label] = statistics.median(xs)
    job = [
        (starts[rid] - int(rid.rpartition("@")[2]) / 1000) * 1000 for rid in new if rid in starts
    ]
    if job:
        out["job"] = statistics.median(job)
    out["runs"] = len(new)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("trees", nargs="+", help="name=path")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--jobs", type=int, default=5, help="every-second jobs")
    args = ap.parse_args()
    trees = {n: str(Path(p).resolve()) for n, p in (a.split("=", 1) for a in args.trees)}
    for t in trees.values():
        subprocess.run([sys.executable, "-m", "compileall", "-q", t + "/raftcron"], check=False)
    sizes = dataclasses.replace(
        Sizes.quick(), steady_seconds=args.seconds, every_second_jobs=args.jobs
    )
    reg = Registry()
    out: dict[str, list[dict[str, float]]] = {n: [] for n in trees}
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="raftcron-grant-ab-") as tmp:
        ctx = Ctx(sizes=sizes, tmp=Path(tmp), reg=reg, quick=True)
        try:
            clusters = {
                n: ctx.raftcron("c-" + n, env={"PYTHONPATH": t, "RAFTCRON_TRACE_RUNS": "1"})
                for n, t in trees.items()
            }
            seen: dict[str, set[str]] = {n: set() for n in trees}
            for r in range(args.rounds):
                order = list(clusters) if r % 2 == 0 else list(reversed(clusters))
                for name in order:
                    loads.append(os.getloadavg()[0])
                    steady(ctx, clusters[name], 0)
                    res = window(clusters[name].root, seen[name])
                    out[name].append(res)
                    print(
                        f"round {r + 1} {name} (load {loads[-1]:.2f}): "
                        + ", ".join(f"{k} {v:.2f}" for k, v in res.items() if k != "runs")
                        + f" ({res['runs']:.0f} runs)",
                        flush=True,
                    )
        finally:
            reg.stop_all()
    log("done")
    print("finished", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), end=", ")
    print(f"1-minute load before the windows: {min(loads):.2f}-{max(loads):.2f}")
    summary = {
        name: {
            k: round(statistics.median(w[k] for w in ws if k in w), 2)
            for k in ["job", *(label for label, _, _ in STEPS)]
            if any(k in w for w in ws)
        }
        for name, ws in out.items()
    }
    print("medians over rounds of the per-window p50s (ms after the scheduled second):")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
