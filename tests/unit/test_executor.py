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
from raftcron.executor.runner import Executor, tell_watchdog
from tests.helpers import FakeRaft

T0 = 1_800_000_000_000


async def run_one(
    tmp_path: Path,
    spec: JobSpec,
    spawn_delay: float,
    raft: FakeRaft | None = None,
    **executor: Any,
) -> tuple[FakeRaft, str]:
    raft = raft or FakeRaft()
    ex = Executor(node="a", raft=raft, clock=SystemClock(), data_dir=tmp_path, **executor)  # type: ignore[arg-type]
    ex.caught_up()  # the grant below is a live one
    raft.machine.apply(c.encode(c.PutJob(at_ms=T0, spec=spec)))
    fire = c.Fire(job=spec.name, scheduled_at_ms=T0 + 1000, node="a", trigger="schedule")
    raft.machine.apply(c.encode(c.Plan(at_ms=T0, fires=(fire,), missed=())))
    rid = run_id(spec.name, T0 + 1000)
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


def test_telling_a_watchdog_that_has_exited_does_not_raise() -> None:
    """A renewal can commit just after the job ended and its watchdog closed its stdin."""

    async def go() -> None:
        proc = await asyncio.create_subprocess_exec("true", stdin=asyncio.subprocess.PIPE)
        await proc.wait()
        assert proc.stdin is not None
        for _ in range(3):  # the first write may still fit the pipe; drain reports the break
            await tell_watchdog(proc.stdin, {"deadline": 1.0}, "job=j run=r fence=1 node=a")

    asyncio.run(go())


class RenewalsBreak(FakeRaft):
    """Every Renew fails with an error no renewal loop expects."""

    async def propose(self, cmd: Any, timeout: float) -> Result:  # noqa: ASYNC109 (API)
        if isinstance(cmd, c.Renew):
            raise ConnectionResetError("Connection lost")
        return await super().propose(cmd, timeout)


def test_a_run_is_recorded_even_if_its_renewals_fail(tmp_path: Path) -> None:
    """The renewal task's end must not keep the completion from being proposed (it did:
    the run stayed running and the leader expired it as lost although it succeeded)."""
    spec = JobSpec(name="j", schedule="* * * * * *", command=("sleep", "1.2"), lease_ms=3000)
    raft, rid = asyncio.run(run_one(tmp_path, spec, spawn_delay=0.0, raft=RenewalsBreak()))
    run = raft.machine.read(lambda s: s.runs[rid])
    assert (run.status, run.exit_code) == ("succeeded", 0)
