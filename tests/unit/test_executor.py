"""The executor against a single in-process state machine (no Raft, no network)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from raftcron.clock import SystemClock
from raftcron.core import commands as c
from raftcron.core.model import JobSpec, run_id
from raftcron.core.state import Result
from raftcron.executor.runner import Executor
from raftcron.raft.node import Machine

T0 = 1_800_000_000_000


class FakeRaft:
    """Commits every proposal at once, in order, on one machine; records the commands."""

    def __init__(self) -> None:
        self.machine = Machine()
        self.proposed: list[Any] = []

    async def propose(self, cmd: Any, timeout: float) -> Result:  # noqa: ASYNC109 (API)
        self.proposed.append(cmd)
        return self.machine.apply(c.encode(cmd))


async def run_one(tmp_path: Path, spec: JobSpec, spawn_delay: float) -> tuple[FakeRaft, str]:
    raft = FakeRaft()
    raft.machine.apply(c.encode(c.PutJob(at_ms=T0, spec=spec)))
    fire = c.Fire(job=spec.name, scheduled_at_ms=T0 + 1000, node="a", trigger="schedule")
    raft.machine.apply(c.encode(c.Plan(at_ms=T0, fires=(fire,), missed=())))
    rid = run_id(spec.name, T0 + 1000)
    ex = Executor(node="a", raft=raft, clock=SystemClock(), data_dir=tmp_path)  # type: ignore[arg-type]
    real_start = ex._start_watchdog

    async def slow_start(ctx: str) -> Any:
        await asyncio.sleep(spawn_delay)  # a loaded machine: the watchdog is slow to start
        return await real_start(ctx)

    ex._start_watchdog = slow_start  # type: ignore[method-assign]
    try:
        ex.on_granted(rid, 1, "a")
        await asyncio.wait_for(asyncio.gather(*list(ex._tasks)), 30)
    finally:
        await ex.stop()
    return raft, rid


def test_a_slow_spawn_does_not_lose_the_lease(tmp_path: Path) -> None:
    """Renewals are paced from the lease's start, not from when the watchdog came up.

    Lease 3 s (local window about 2.8 s, renewal period about 0.9 s, SIGTERM about 2.1 s
    after the start unless renewed), the watchdog takes 1.2 s to start and the job runs
    2.5 s: the first renewal must go out at once, not a period after the watchdog came up,
    or the watchdog stops the job and the run is lost (a chaos-suite finding).
    """
    spec = JobSpec(name="j", schedule="* * * * * *", command=("sleep", "2.5"), lease_ms=3000)
    raft, rid = asyncio.run(run_one(tmp_path, spec, spawn_delay=1.2))
    run = raft.machine.read(lambda s: s.runs[rid])
    assert run.status == "succeeded", (run.status, run.reason)
    assert any(isinstance(cmd, c.Renew) for cmd in raft.proposed)


@pytest.mark.parametrize(("code", "status"), [(0, "succeeded"), (3, "failed")])
def test_a_run_reports_its_exit(tmp_path: Path, code: int, status: str) -> None:
    spec = JobSpec(name="j", schedule="* * * * * *", command=("sh", "-c", f"exit {code}"))
    raft, rid = asyncio.run(run_one(tmp_path, spec, spawn_delay=0.0))
    run = raft.machine.read(lambda s: s.runs[rid])
    assert (run.status, run.exit_code) == (status, code)
