"""The executor's spawn path alone, without Raft: N runs of ``true`` granted at once to one
in-process ``Executor`` whose proposals commit at once (one state machine, no network, no
fsync), compared with the floor (``bench/floor.py``: one supervisor forking ``true``).

    .venv/bin/python -m bench.spawn_path [--runs 500] [--max-starting 8]

Prints one JSON line: the wall time and rate, and the CPU per run of this process (the
agent's part: the executor, its asyncio loop, the commits) and of its children (the
watchdog fork server, the watchdogs and the jobs), from ``getrusage``; then the floor's
rate and CPU per spawn measured right after, on one core. Issue 17: tells whether a
burst's start rate is bound by the commits or by the spawn path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.procs import _stat
from raftcron.clock import SystemClock
from raftcron.core import commands as c
from raftcron.core.model import JobSpec
from raftcron.core.results import Result
from raftcron.executor.runner import Executor
from raftcron.raft.node import Machine

T0 = 1_800_000_000_000


class InstantRaft:
    """Commits every proposal at once on one machine (the executor's only peer)."""

    def __init__(self) -> None:
        self.machine = Machine()

    async def propose(self, cmd: Any, timeout: float) -> Result:  # noqa: ASYNC109 (API)
        return self.machine.apply(c.encode(cmd))


def _faults(pid: int) -> tuple[int, int]:
    """(minor faults, reaped children's minor faults) of ``pid``."""
    with open(f"/proc/{pid}/stat") as f:
        raw = f.read()
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[7]), int(fields[8])  # fields 10 and 11 of proc(5)


def _cpu(who: int) -> float:
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


async def _burst(n: int, max_starting: int, data: Path) -> dict[str, Any]:
    raft = InstantRaft()
    ex = Executor(
        node="a",
        raft=raft,  # type: ignore[arg-type]
        clock=SystemClock(),
        data_dir=data,
        max_starting=max_starting,
    )
    ex.caught_up()
    for i in range(n):
        spec = JobSpec(name=f"j{i}", schedule="* * * * * *", command=("true",), lease_ms=60_000)
        raft.machine.apply(c.encode(c.PutJob(at_ms=T0, spec=spec)))
    fires = tuple(
        c.Fire(job=f"j{i}", scheduled_at_ms=T0 + 1000, node="a", trigger="schedule")
        for i in range(n)
    )
    res = raft.machine.apply(c.encode(c.Plan(at_ms=T0, fires=fires)))
    granted = res.value.granted  # type: ignore[union-attr]
    self0, kids0 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    for rid, fence, node in granted:
        ex.on_granted(rid, fence, node)
    await asyncio.gather(*list(ex._tasks))
    wall = time.monotonic() - t0
    server = _stat(ex.spawner.pid) if ex.spawner is not None and ex.spawner.pid else None
    faults = _faults(ex.spawner.pid) if ex.spawner is not None and ex.spawner.pid else None
    await ex.stop()  # the fork server exits: its CPU (and its children's) is reaped now
    self1, kids1 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    statuses: dict[str, int] = {}
    for rid, _, _ in granted:
        st = raft.machine.read(lambda s, r=rid: s.runs[r].status)  # type: ignore[misc]
        statuses[st] = statuses.get(st, 0) + 1
    return {
        "runs": n,
        "max_starting": max_starting,
        "wall_s": wall,
        "runs_per_s": n / wall,
        "agent_cpu_ms_per_run": 1000 * (self1 - self0) / n,
        "children_cpu_ms_per_run": 1000 * (kids1 - kids0) / n,
        # the fork server's own CPU, and its reaped watchdogs' (with their jobs)
        "server_cpu_ms_per_run": None if server is None else 1000 * server[1] / n,
        "watchdogs_cpu_ms_per_run": None if server is None else 1000 * server[2] / n,
        # minor page faults of the fork server, and of its reaped watchdogs (and jobs)
        "server_faults_per_run": None if faults is None else faults[0] / n,
        "watchdog_faults_per_run": None if faults is None else faults[1] / n,
        "statuses": statuses,
    }


def _floor(seconds: float) -> dict[str, Any]:
    from bench.floor import spawn_worker

    k0 = _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN)
    w = spawn_worker(seconds)
    k1 = _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN)
    return {
        "floor_per_s_one_core": w["per_s"],
        "floor_cpu_ms_per_spawn": 1000 * (k1 - k0) / w["spawns"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--max-starting", type=int, default=8)
    ap.add_argument("--floor", type=float, default=3.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="raftcron-spawn-") as d:
        out = asyncio.run(_burst(args.runs, args.max_starting, Path(d)))
    out.update(_floor(args.floor))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
