"""Where an every-second run's start time goes: :func:`bench.scale.steady` once on one
tree, with ``RAFTCRON_TRACE_RUNS=1`` (raftcron/executor/runner.py), then each step of the
runs' start timelines (the agents' log lines, their watchdogs' steps included) and the
job's own first timestamp, in ms after the scheduled second.

    PYTHONPATH=. .venv/bin/python -m bench.run_timeline [--tree .] [--seconds 20] [--jobs 5]

Prints, per step, p50 and p90 over the every-second runs of the window (ms after the
scheduled second), ordered by p50, and the p50 of the step-to-step gaps in that order.

First the grant path, for a tree whose leader and replicas trace too (the ``plan trace``
lines of raftcron/scheduler/leader.py, the ``raft trace`` lines of raftcron/raft/node.py),
joined by run id: once for the runs whose executor is a follower, once for those the
leader ran itself. ``L.``: the leader's scheduler loop (``woke``: the loop resumed from its
wait, ``refreshed``: the heap updated, ``read``: the plan's state reads done, ``planned``,
``proposed``, ``committed``: the proposal's result is back on the loop) and its replica
(``picked``: the start of the tick that took the proposal off pysyncobj's queue,
``appended``: appended and sent, ``durable``: its fsync done, ``commit_tick``: the start of
the tick that applied it, ``applied``: the apply began, ``apply_done``: it returned, the
loop told, ``ae_sent``: the first AppendEntries after it left, with the new commit index,
``tick_done``: that tick's work done, before its poll). ``X.``: the executor's replica when
it is a follower (``received``: the AppendEntries read, ``durable``: fsynced and acked,
``commit_tick``: the start of the tick that applied it, ``applied``, ``apply_done``,
``tick_done``); ``O.``: the other follower's. ``granted``: the executor's loop ran the
grant (raftcron/executor/runner.py). Then the leader's waits: how late it woke after the
due second and after the delay it slept for, and how many of those wake-ups were its
timer's.
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

LINE = re.compile(r"job=(\S+) run=(\S+) fence=\d+ node=(\S+): timeline (\{.*\})")
PLAN = re.compile(r"\[(\S+)\] \S+: plan trace: now_ms=\d+ (\{.*\})")
ENTRY = re.compile(r"\[(\S+)\] \S+: raft trace: plan entry \d+ applied: (\{.*\})")
LOOP_STEPS = ("woke", "refreshed", "read", "planned", "proposed", "committed")
ENTRY_STEPS = (
    "picked",
    "appended",
    "received",
    "durable",
    "commit_tick",
    "applied",
    "apply_done",
    "ae_sent",
    "tick_done",
)

Marks = dict[str, float]


def traced(
    root: Path,
) -> tuple[dict[str, tuple[str, Marks]], dict[str, tuple[str, Marks]], dict[str, dict[str, Marks]]]:
    """From every agent log under ``root``: every-second run id -> (its executor, its start
    timeline in ms after the scheduled second); run id -> (the leader, its plan's marks);
    run id -> node -> that replica's marks of the plan entry (wall seconds)."""
    runs: dict[str, tuple[str, Marks]] = {}
    plans: dict[str, tuple[str, Marks]] = {}
    entries: dict[str, dict[str, Marks]] = {}
    for log in root.rglob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if m := LINE.search(line):
                if m.group(1).startswith("sec"):
                    runs[m.group(2)] = (m.group(3), json.loads(m.group(4)))
            elif m := PLAN.search(line):
                doc = json.loads(m.group(2))
                for rid in doc.pop("granted"):
                    plans[rid] = (m.group(1), doc)
            elif m := ENTRY.search(line):
                doc = json.loads(m.group(2))
                for rid, _ in doc.pop("granted"):
                    entries.setdefault(rid, {})[m.group(1)] = doc
    return runs, plans, entries


def timelines(root: Path) -> dict[str, Marks]:
    """Run id -> step -> ms after its scheduled time, from every agent log under ``root``."""
    return {rid: marks for rid, (_, marks) in traced(root)[0].items()}


def grant_path(
    runs: dict[str, tuple[str, Marks]],
    plans: dict[str, tuple[str, Marks]],
    entries: dict[str, dict[str, Marks]],
) -> dict[str, dict[str, list[float]]]:
    """``"follower"`` / ``"leader"`` (where the run executed) -> step -> ms after the
    scheduled second, one value per run."""
    out: dict[str, dict[str, list[float]]] = {}
    for rid, (executor, marks) in runs.items():
        if rid not in plans or "granted" not in marks:
            continue
        leader, lmarks = plans[rid]
        sched = int(rid.rpartition("@")[2]) / 1000
        steps = {f"L.{k}": lmarks[k] for k in LOOP_STEPS if k in lmarks}
        for node, emarks in entries.get(rid, {}).items():
            tag = "L" if node == leader else "X" if node == executor else "O"
            steps.update({f"{tag}.{k}": emarks[k] for k in ENTRY_STEPS if k in emarks})
        into = out.setdefault("leader" if executor == leader else "follower", {})
        for k, v in steps.items():
            into.setdefault(k, []).append((v - sched) * 1000)
        into.setdefault("granted", []).append(marks["granted"])
    return out


def waits(plans: dict[str, tuple[str, Marks]]) -> str:
    """The leader's timer: how late it woke after the due second, and after the delay it
    slept for; how many of the traced plans followed a timer's wake-up."""
    late: list[float] = []
    over: list[float] = []
    timer = 0
    seen: set[int] = set()
    for rid, (_, m) in plans.items():
        if id(m) in seen or "wait_began" not in m:
            continue
        seen.add(id(m))
        sched = int(rid.rpartition("@")[2]) / 1000
        late.append((m["woke"] - sched) * 1000)
        over.append((m["woke"] - m["wait_began"] - m["wait_delay_s"]) * 1000)
        timer += m["wait_timer"] == 1.0
    if not late:
        return "leader waits: none traced"
    return (
        f"leader waits: {len(late)} plans, {timer} after a timer wake-up; woke after the due "
        f"second p50 {statistics.median(late):.2f} p90 {pct(late, 0.9):.2f} ms; after its "
        f"delay p50 {statistics.median(over):.2f} p90 {pct(over, 0.9):.2f} ms"
    )


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def table(steps: dict[str, list[float]]) -> None:
    order = sorted(steps, key=lambda k: statistics.median(steps[k]))
    print(f"{'step':24} {'n':>4} {'p50 ms':>8} {'p90 ms':>8} {'gap p50':>8}")
    prev = None
    for k in order:
        p50 = statistics.median(steps[k])
        gap = "" if prev is None else f"{p50 - prev:8.2f}"
        print(f"{k:24} {len(steps[k]):4d} {p50:8.2f} {pct(steps[k], 0.9):8.2f} {gap}")
        prev = p50


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
        runs, plans, entries = traced(cl.root)
        starts = read_starts(cl.root / "steady-0.txt")
    steps: dict[str, list[float]] = {}
    for rid, (_, marks) in runs.items():
        if rid not in starts:
            continue
        sched = int(rid.rpartition("@")[2]) / 1000
        marks = {**marks, "job_first_timestamp": round((starts[rid] - sched) * 1000, 2)}
        for k, v in marks.items():
            steps.setdefault(k, []).append(v)
    les = res.get("lateness_every_second", {})
    print(
        f"finished {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, 1-minute load "
        f"{os.getloadavg()[0]:.2f}; tree {tree}; {len(runs)} traced every-second runs; "
        f"lateness p50 {les.get('p50', 0) * 1000:.1f} ms p99 {les.get('p99', 0) * 1000:.1f} ms"
    )
    for where, path in sorted(grant_path(runs, plans, entries).items(), reverse=True):
        print(f"grant path, runs executed on {'a follower' if where == 'follower' else where}:")
        table(path)
    print(waits(plans))
    print("start timeline:")
    table(steps)


if __name__ == "__main__":
    main()
