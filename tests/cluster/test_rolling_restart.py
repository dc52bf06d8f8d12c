"""Rolling restarts keep the promise (issue 12, "What must be shown"), with real agents.

Three rounds of rolling restarts of every node of a 3-node cluster: in each round every
node in turn is stopped with SIGTERM and restarted, then every node in turn is killed
(kill -9) and restarted. Before the next node goes, the one restarted is back: a leader is
established, the node is healthy, has applied what the leader had committed, and its
shutdown drain is lifted. Meanwhile three jobs run, each execution recorded by the chaos
suite's sink (tests/chaos/sink.py), a process outside the cluster:

* ``tick``: every second, holds 0.2 s;
* ``slow``: every 5 s, holds 4 s, ``overlap = "skip"``;
* ``retry``: every 2 s, holds 1 s, ``retries = 2``; its first attempt fails (exit 1)
  when its fence is odd, so retries are granted throughout.

Then the jobs are paused, every node's ledger read, and the chaos checker
(tests/chaos/checker.py) run over the sink's record with one fault window spanning all the
restarts: no fire executed twice (retries aside: distinct attempts), fences in order, no
overlap of ``slow``, every execution granted and every ``succeeded`` run executed, and
every scheduled fire either executed or recorded in a ledger (missed, skipped, lost, ...).
On top of that: no execution of a fire after one that exited 0, and no run ``lost`` whose
execution exited 0. The longest gap between executions of ``tick`` is printed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import defaultdict
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import checker
from tests.chaos.runner import SinkClient
from tests.cluster.harness import Cluster, running, wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
JOB_PY = ROOT / "tests" / "chaos" / "job.py"
ROUNDS = 3
STYLES = (signal.SIGTERM, signal.SIGKILL)
# A restarted agent is back well within the lease: every run re-attaches, none is lost.
CLUSTER = 'shutdown_drain = "2s"\nlease = "15s"\nhistory = 1000000'
# name -> (schedule, overlap, seconds the job holds, retries)
JOBS: dict[str, tuple[str, str, float, int]] = {
    "tick": ("* * * * * *", "allow", 0.2, 0),
    "slow": ("* * * * * */5", "skip", 4.0, 0),
    "retry": ("* * * * * */2", "allow", 1.0, 2),
}


def job_table(name: str, sock: Path) -> dict[str, Any]:
    schedule, overlap, hold, retries = JOBS[name]
    cmd = [sys.executable, "-S", str(JOB_PY), str(sock), f"{hold:g}"]
    table: dict[str, Any] = {
        "name": name,
        "schedule": schedule,
        "command": cmd,
        "overlap": overlap,
    }
    if retries:
        # exit 1 after a clean execution when this is the first attempt and the fence odd
        script = (
            '"$@" || exit $?; [ "$RAFTCRON_ATTEMPT" -gt 1 ] || '
            "[ $((RAFTCRON_FENCE % 2)) -eq 0 ] || exit 1"
        )
        table["command"] = ["sh", "-c", script, "sh", *cmd]
        table["retries"] = retries
        table["retry_backoff"] = "1s"
    return table


def exits_zero(e: checker.Execution) -> bool:
    """Whether this execution's process exited 0 (it wrote, was accepted and ended)."""
    if not (e.clean and e.write_accepted):
        return False
    return not (JOBS[e.job][3] and e.attempt <= 1 and e.fence % 2 == 1)


class Sink:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.sock = root / "sink.sock"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.chaos.sink", str(self.sock), str(root / "sink.jsonl")],
            cwd=ROOT,
        )
        wait_for("the sink", lambda: Path(str(self.sock) + ".ready").exists(), 15)
        self.client = SinkClient(self.sock)

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(10)

    def begins(self) -> list[dict[str, Any]]:
        out = []
        for line in (self.root / "sink.jsonl").read_text().splitlines():
            if line.strip():
                ev = json.loads(line)
                if ev.get("ev") == "begin":
                    out.append(ev)
        return out


def caught_up(cl: Cluster, node: str) -> bool:
    """``node`` is healthy, its shutdown drain is lifted, and it has applied everything
    the established leader had committed a moment ago."""
    leader = cl.leader()
    if leader is None:
        return False
    commit = cl.status(leader)["commit_index"]
    if cl.request(node, "GET", "/health")[0] != 200:
        return False
    st = cl.status(node)
    me = next(m for m in st["members"] if m["self"])
    return bool(st["last_applied"] >= commit and me["drain"] is None)


def restart(cl: Cluster, node: str, sig: int) -> None:
    proc = cl.members[node].proc
    assert proc is not None
    proc.send_signal(sig)
    proc.wait(60)  # SIGTERM: after at most the 2 s shutdown drain
    cl.start(node)
    cl.wait_leader(60)
    wait_for(f"{node} back and caught up", lambda: caught_up(cl, node), 90, interval=0.2)


def test_three_rounds_of_rolling_restarts(tmp_path: Path) -> None:
    sink = Sink(tmp_path)
    cl = Cluster(tmp_path, [job_table(n, sink.sock) for n in JOBS], extra_cluster=CLUSTER)
    try:
        with running(cl):
            wait_for(
                "every job to run",
                lambda: {b["job"] for b in sink.begins()} >= set(JOBS),
                60,
            )
            start_t = time.monotonic()
            window = {"id": 1, "name": "restart-rolling", "kind": "kill"}
            sink.client.event(ev="nemesis", phase="start", nodes=list(cl.members), **window)
            t0 = time.monotonic()
            for rnd in range(1, ROUNDS + 1):
                for sig in STYLES:
                    for node in cl.members:
                        restart(cl, node, sig)
                print(f"round {rnd}: done at {time.monotonic() - t0:.0f}s")
            last = time.monotonic()

            def all_ran_again() -> bool:
                return {b["job"] for b in sink.begins() if b["t"] > last + 1} >= set(JOBS)

            wait_for("every job to run after the last restart", all_ran_again, 60)
            sink.client.event(ev="nemesis", phase="end", nodes=list(cl.members), **window)
            end_t = time.monotonic()
            ledgers = cl.quiesce(JOBS)
    finally:
        sink.close()
    report, tl = checker.check_record(
        tmp_path,
        name="rolling-restart",
        jobs={
            n: {"schedule": s, "overlap": o, "timezone": "UTC", "retries": r}
            for n, (s, o, _, r) in JOBS.items()
        },
        start_t=start_t,
        end_t=end_t,
        ledgers=ledgers,
    )
    print(report.line())

    # No execution of a fire after one of it exited 0 (a retry of a success, finding 1).
    by_fire: dict[tuple[str, int], list[checker.Execution]] = defaultdict(list)
    for e in tl.executions:
        by_fire[(e.job, e.scheduled_at_ms)].append(e)
    again = [
        f"{e.describe()} began after {first.describe()} exited 0"
        for execs in by_fire.values()
        for first in execs
        if exits_zero(first)
        for e in execs
        if e is not first and e.begin_t >= first.begin_t
    ]
    # No run recorded lost whose execution exited 0.
    lost = {r.id: r for runs in tl.ledgers.values() for r in runs if r.status == "lost"}
    lost_ok = [e.describe() for e in tl.executions if e.run_id in lost and exits_zero(e)]

    ticks = sorted(
        e.begin_t for e in tl.executions if e.job == "tick" and start_t <= e.begin_t <= end_t
    )
    gap = max(b - a for a, b in pairwise(ticks))
    statuses: dict[str, int] = defaultdict(int)
    for r in tl.ledgers["a"]:
        statuses[f"{r.job}:{r.status}"] += r.count
    print(
        f"rolling restarts: {ROUNDS} rounds x {len(STYLES)} styles x 3 nodes in "
        f"{last - t0:.0f}s, {len(tl.executions)} executions; longest gap between "
        f"executions of the every-second job: {gap:.2f}s; ledger: {dict(sorted(statuses.items()))}"
    )
    assert report.violations == [], "\n".join(map(str, report.violations))
    assert again == [], again
    assert lost_ok == [], lost_ok
    assert report.expected_fires > 0 and len(ticks) > 0
