"""Where an every-second run's start time goes: :func:`bench.scale.steady` once on one
tree, with ``RAFTCRON_TRACE_RUNS=1`` (raftcron/executor/runner.py), then each step of the
runs' start timelines (the agents' log lines, their watchdogs' steps included) and the
job's own first timestamp, in ms after the scheduled second.

    PYTHONPATH=. .venv/bin/python -m bench.run_timeline [--tree .] [--seconds 20] [--jobs 5]

Prints, per step, p50 and p90 over the every-second runs of the window (ms after the
scheduled second), ordered by p50, and the p50 of the step-to-step gaps in that order.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Ctx, Sizes
from bench.procs import Registry
from bench.scale import read_starts, steady

LINE = re.compile(r"job=(\S+) run=(\S+) fence=\d+ node=\S+: timeline (\{.*\})")


def timelines(root: Path) -> dict[str, dict[str, float]]:
    """Run id -> step -> ms after its scheduled time, from every agent log under ``root``."""
    out: dict[str, dict[str, float]] = {}
    for log in root.rglob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            m = LINE.search(line)
            if m and m.group(1).startswith("sec"):
                out[m.group(2)] = json.loads(m.group(3))
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", default=".")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--jobs", type=int, default=5, help="every-second jobs")
    args = ap.parse_args()
    tree = str(Path(args.tree).resolve())
    subprocess.run([sys.executable, "-m", "compileall", "-q", tree + "/raftcron"], check=False)
    sizes = dataclasses.replace(
        Sizes.quick(), steady_seconds=args.seconds, every_second_jobs=args.jobs
    )
    reg = Registry()
    with tempfile.TemporaryDirectory(prefix="raftcron-timeline-") as tmp:
        ctx = Ctx(sizes=sizes, tmp=Path(tmp), reg=reg, quick=True)
        try:
            cl = ctx.raftcron("c", env={"PYTHONPATH": tree, "RAFTCRON_TRACE_RUNS": "1"})
            res = steady(ctx, cl, 0)
        finally:
            reg.stop_all()
        lines = timelines(cl.root)
        starts = read_starts(cl.root / "steady-0.txt")
    steps: dict[str, list[float]] = {}
    for rid, marks in lines.items():
        if rid not in starts:
            continue
        sched = int(rid.rpartition("@")[2]) / 1000
        marks = {**marks, "job_first_timestamp": round((starts[rid] - sched) * 1000, 2)}
        for k, v in marks.items():
            steps.setdefault(k, []).append(v)
    les = res.get("lateness_every_second", {})
    print(
        f"finished {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, 1-minute load "
        f"{os.getloadavg()[0]:.2f}; tree {tree}; {len(lines)} traced every-second runs; "
        f"lateness p50 {les.get('p50', 0) * 1000:.1f} ms p99 {les.get('p99', 0) * 1000:.1f} ms"
    )
    order = sorted(steps, key=lambda k: statistics.median(steps[k]))
    print(f"{'step':24} {'n':>4} {'p50 ms':>8} {'p90 ms':>8} {'gap p50':>8}")
    prev = None
    for k in order:
        p50 = statistics.median(steps[k])
        gap = "" if prev is None else f"{p50 - prev:8.2f}"
        print(f"{k:24} {len(steps[k]):4d} {p50:8.2f} {pct(steps[k], 0.9):8.2f} {gap}")
        prev = p50


if __name__ == "__main__":
    main()
