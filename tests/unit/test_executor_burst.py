"""A burst of grants on one node: bounded start phase, queued runs kept alive, never lost,
never started twice or without their fenced start (one in-process state machine, with a
leader-like lease expiry: ``t_commit + D`` after the grant or the last renewal)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from raftcron.clock import SystemClock
from raftcron.core import commands as c
from raftcron.core.model import JobSpec, run_id
from raftcron.core.state import Ok, Result
from raftcron.executor.runner import Executor
from raftcron.raft.node import Machine

T0 = 1_800_000_000_000


class ExpiringRaft:
    """Commits every proposal at once on one machine and, like the leader, expires a lease
    ``D`` after its grant or last committed start/renewal. Records (time, command)."""

    def __init__(self) -> None:
        self.machine = Machine()
        self.proposed: list[tuple[float, Any]] = []
        self.seen: dict[str, tuple[float, int, int]] = {}  # rid -> (mono, fence, lease_ms)
        self.expired: list[str] = []

    async def propose(self, cmd: Any, timeout: float) -> Result:  # noqa: ASYNC109 (API)
        self.proposed.append((time.monotonic(), cmd))
        res = self.machine.apply(c.encode(cmd))
        if isinstance(cmd, c.Start | c.Renew) and isinstance(res, Ok):
            self.touch(cmd.run_id)
        return res

    def touch(self, rid: str) -> None:
        lease = self.machine.read(lambda s: s.leases.get(rid))
        if lease is not None:
            self.seen[rid] = (time.monotonic(), lease.fence, lease.lease_ms)

    async def expiry_loop(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            for rid, (mono, fence, lease_ms) in list(self.seen.items()):
                live = self.machine.read(lambda s, r=rid: r in s.leases)  # type: ignore[misc]
                if not live:
                    del self.seen[rid]
                elif now > mono + lease_ms / 1000:
                    renewals = self.machine.read(lambda s, r=rid: s.leases[r].renewals)  # type: ignore[misc]
                    expire = c.Expire(
                        at_ms=T0, run_id=rid, fence=fence, reason="expired", renewals=renewals
                    )
                    self.machine.apply(c.encode(expire))
                    self.expired.append(rid)
                    del self.seen[rid]

    def starts(self, rid: str) -> list[float]:
        return [t for t, cmd in self.proposed if isinstance(cmd, c.Start) and cmd.run_id == rid]


def grant_all(raft: ExpiringRaft, specs: list[JobSpec]) -> list[str]:
    for spec in specs:
        raft.machine.apply(c.encode(c.PutJob(at_ms=T0, spec=spec)))
    fires = tuple(
        c.Fire(job=s.name, scheduled_at_ms=T0 + 1000, node="a", trigger="schedule") for s in specs
    )
    res = raft.machine.apply(c.encode(c.Plan(at_ms=T0, fires=fires, missed=())))
    assert isinstance(res, Ok)
    rids = [run_id(s.name, T0 + 1000) for s in specs]
    for rid in rids:
        raft.touch(rid)
    return rids


async def burst(
    tmp_path: Path,
    specs: list[JobSpec],
    *,
    max_starting: int,
    spawn_delay: float,
    during: Any = None,
) -> tuple[ExpiringRaft, list[str], int]:
    """Grant every spec's fire to node a at once; the most watchdog spawns seen at once."""
    raft = ExpiringRaft()
    ex = Executor(
        node="a",
        raft=raft,  # type: ignore[arg-type]
        clock=SystemClock(),
        data_dir=tmp_path,
        max_starting=max_starting,
    )
    ex.caught_up()  # the grants below are live ones
    rids = grant_all(raft, specs)
    real_start = ex._start_watchdog
    spawning = 0
    most = 0

    async def slow_start(ctx: str) -> Any:
        nonlocal spawning, most
        spawning += 1
        most = max(most, spawning)
        try:
            await asyncio.sleep(spawn_delay)  # a loaded machine: each watchdog is slow
            return await real_start(ctx)
        finally:
            spawning -= 1

    expiry = asyncio.get_running_loop().create_task(raft.expiry_loop())
    ex._start_watchdog = slow_start  # type: ignore[method-assign]
    try:
        for rid in rids:
            ex.on_granted(rid, raft.machine.read(lambda s, r=rid: s.runs[r].fence), "a")  # type: ignore[misc]
        if during is not None:
            await during(raft, ex, rids)
        await asyncio.wait_for(asyncio.gather(*list(ex._tasks)), 60)
    finally:
        await ex.stop()
        expiry.cancel()
    return raft, rids, most


def test_a_burst_longer_than_the_lease_loses_nothing(tmp_path: Path) -> None:
    """Eight runs granted at once, lease 3 s, two start slots, each watchdog over 1.2 s to
    come up: the last ones wait 3.6 s or more for a slot, longer than the lease. Their
    queued leases are renewed, so none is expired, each starts exactly once, and at most
    two watchdogs are coming up at any moment."""
    specs = [
        JobSpec(name=f"j{i}", schedule="* * * * * *", command=("true",), lease_ms=3000)
        for i in range(8)
    ]
    raft, rids, most = asyncio.run(burst(tmp_path, specs, max_starting=2, spawn_delay=1.2))
    assert most <= 2
    assert raft.expired == []
    for rid in rids:
        run = raft.machine.read(lambda s, r=rid: s.runs[r])  # type: ignore[misc]
        assert run.status == "succeeded", (rid, run.status, run.reason)
        assert len(raft.starts(rid)) == 1
    # the later runs were renewed while they waited (before their start)
    last = rids[-1]
    first_start = raft.starts(last)[0]
    queued = [t for t, cmd in raft.proposed if isinstance(cmd, c.Renew) and cmd.run_id == last]
    assert any(t < first_start for t in queued), "the queued run was never renewed"


def test_a_queued_run_whose_lease_is_gone_never_starts(tmp_path: Path) -> None:
    """The leader expires a run while it waits for a slot (e.g. this node was cut off):
    its next renewal is refused as stale and it never proposes a start, let alone runs."""
    specs = [
        JobSpec(name=f"j{i}", schedule="* * * * * *", command=("true",), lease_ms=3000)
        for i in range(3)
    ]

    async def expire_last(raft: ExpiringRaft, ex: Executor, rids: list[str]) -> None:
        await asyncio.sleep(0.1)
        assert ex.queued_count() >= 1
        fence = raft.machine.read(lambda s: s.runs[rids[-1]].fence)
        res = raft.machine.apply(
            c.encode(c.Expire(at_ms=T0, run_id=rids[-1], fence=fence, reason="cut off"))
        )
        assert isinstance(res, Ok)

    raft, rids, _ = asyncio.run(
        burst(tmp_path, specs, max_starting=1, spawn_delay=1.5, during=expire_last)
    )
    assert raft.starts(rids[-1]) == []
    assert raft.machine.read(lambda s: s.runs[rids[-1]].status) == "lost"
    for rid in rids[:-1]:
        assert raft.machine.read(lambda s, r=rid: s.runs[r].status) == "succeeded"  # type: ignore[misc]


def test_a_stop_request_lets_a_queued_run_skip_the_queue(tmp_path: Path) -> None:
    """A run asked to stop while queued needs no slot: it commits its start, records
    ``killed`` and never spawns, while the others still wait for theirs."""
    specs = [
        JobSpec(name=f"j{i}", schedule="* * * * * *", command=("true",), lease_ms=10_000)
        for i in range(3)
    ]

    async def kill_last(raft: ExpiringRaft, ex: Executor, rids: list[str]) -> None:
        await asyncio.sleep(0.1)
        res = raft.machine.apply(c.encode(c.Kill(at_ms=T0, run_id=rids[-1], reason="stop it")))
        assert isinstance(res, Ok)
        ex.on_kill(rids[-1])

    raft, rids, _ = asyncio.run(
        burst(tmp_path, specs, max_starting=1, spawn_delay=1.0, during=kill_last)
    )
    # not behind the two 1 s spawns: its end was committed before the second run's start
    order = [
        (type(cmd).__name__, cmd.run_id)
        for _, cmd in raft.proposed
        if isinstance(cmd, c.Start | c.Complete)
    ]
    assert order.index(("Complete", rids[-1])) < order.index(("Start", rids[1])), order
    assert raft.machine.read(lambda s: s.runs[rids[-1]].status) == "killed"
    for rid in rids[:-1]:
        assert raft.machine.read(lambda s, r=rid: s.runs[r].status) == "succeeded"  # type: ignore[misc]
