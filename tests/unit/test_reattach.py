"""A run outlives its executor: stop() detaches, a new executor on the same data dir
re-attaches (or reads the result of a watchdog that finished meanwhile) and records the
outcome once; grants replayed before the node caught up start nothing.

One in-process state machine stands for the cluster (tests/unit/test_executor.py); two
Executor objects over the same data dir stand for an agent before and after its restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from raftcron.clock import SystemClock
from raftcron.core import commands as c
from raftcron.core.model import JobSpec, run_id
from raftcron.core.state import Ok, Result
from raftcron.executor import rundir
from raftcron.executor.runner import Executor
from tests.helpers import FakeRaft
from tests.unit.test_executor import T0


def executor(raft: FakeRaft, data_dir: Path) -> Executor:
    return Executor(node="a", raft=raft, clock=SystemClock(), data_dir=data_dir)  # type: ignore[arg-type]


def grant(raft: FakeRaft, spec: JobSpec, k: int = 0) -> str:
    if k == 0:
        raft.machine.apply(c.encode(c.PutJob(at_ms=T0, spec=spec)))
    at = T0 + 1000 * (k + 1)
    fire = c.Fire(job=spec.name, scheduled_at_ms=at, node="a", trigger="schedule")
    raft.machine.apply(c.encode(c.Plan(at_ms=at - 1000, fires=(fire,), missed=())))
    return run_id(spec.name, at)


def job(tmp_path: Path, seconds: float, lease_ms: int = 10_000, code: int = 0) -> JobSpec:
    """Appends one line per execution to ``executions`` (outside the data dir)."""
    sink = tmp_path / "executions"
    script = f'echo "$RAFTCRON_RUN_ID $RAFTCRON_FENCE" >> {sink}; sleep {seconds}; exit {code}'
    return JobSpec(
        name="j", schedule="* * * * * *", command=("sh", "-c", script), lease_ms=lease_ms
    )


def executions(tmp_path: Path) -> list[str]:
    sink = tmp_path / "executions"
    return sink.read_text().splitlines() if sink.exists() else []


async def until(what: str, fn: Any, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not fn():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def status(raft: FakeRaft, rid: str) -> str:
    return str(raft.machine.read(lambda s: s.runs[rid].status))


def completes(raft: FakeRaft, rid: str) -> list[c.Complete]:
    return [cmd for cmd in raft.proposed if isinstance(cmd, c.Complete) and cmd.run_id == rid]


async def start_then_stop(raft: FakeRaft, data: Path, tmp_path: Path, rid: str) -> None:
    """The first life of the agent: the job starts, then the agent stops (detaches)."""
    ex = executor(raft, data)
    ex.caught_up()
    await until("the job to start", lambda: executions(tmp_path))
    assert status(raft, rid) == "running"
    await ex.stop()


def test_stop_detaches_and_a_new_executor_reattaches(tmp_path: Path) -> None:
    """SIGTERM-like stop mid-run: nothing is recorded and nothing killed; the next
    executor re-attaches under the same fence, renews at once and records `succeeded`
    exactly once; the run directory is gone afterwards."""
    raft = FakeRaft()
    data = tmp_path / "data"
    rid = grant(raft, job(tmp_path, 1.5))

    async def go() -> None:
        await start_then_stop(raft, data, tmp_path, rid)
        assert completes(raft, rid) == [] and status(raft, rid) == "running"
        (run_dir,) = rundir.RunDirs(data).entries()
        assert (run_dir / "wd.sock").exists()  # the watchdog lives on
        assert run_dir.stat().st_mode & 0o777 == 0o700
        renewals = sum(isinstance(cmd, c.Renew) for cmd in raft.proposed)
        again = executor(raft, data)
        again.caught_up()
        await until("the re-attached run to be recorded", lambda: status(raft, rid) != "running")
        await asyncio.gather(*list(again._tasks))
        assert sum(isinstance(cmd, c.Renew) for cmd in raft.proposed) > renewals
        await again.stop()

    asyncio.run(go())
    run = raft.machine.read(lambda s: s.runs[rid])
    assert (run.status, run.exit_code) == ("succeeded", 0)
    assert len(completes(raft, rid)) == 1
    assert executions(tmp_path) == [f"{rid} {run.fence}"]
    assert rundir.RunDirs(data).entries() == []
    assert oct((data / "runs").stat().st_mode & 0o777) == "0o700"


def test_a_run_that_finished_while_the_agent_was_away_is_recorded(tmp_path: Path) -> None:
    """The job exits (code 3) while no executor is attached: its result waits on disk and
    the next executor records `failed` with that exit code and the output."""
    raft = FakeRaft()
    data = tmp_path / "data"
    rid = grant(raft, job(tmp_path, 0.3, code=3))

    async def go() -> None:
        await start_then_stop(raft, data, tmp_path, rid)
        (run_dir,) = rundir.RunDirs(data).entries()
        await until("the result on disk", lambda: rundir.read_result(run_dir) is not None)
        await until("the watchdog to exit", lambda: not (run_dir / "wd.sock").exists())
        again = executor(raft, data)
        again.caught_up()
        await until("the run to be recorded", lambda: status(raft, rid) != "running")
        await asyncio.gather(*list(again._tasks))
        await again.stop()

    asyncio.run(go())
    run = raft.machine.read(lambda s: s.runs[rid])
    assert (run.status, run.exit_code) == ("failed", 3)
    assert len(completes(raft, rid)) == 1 and len(executions(tmp_path)) == 1
    assert rundir.RunDirs(data).entries() == []


def test_a_result_found_after_the_lease_expired_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The leader expired the run while the agent was away: its `lost` stands. The new
    executor proposes nothing for it (no stale completion), says so in one INFO line, and
    removes the run directory; a watchdog still there is stopped."""
    raft = FakeRaft()
    data = tmp_path / "data"
    rid = grant(raft, job(tmp_path, 60))

    async def go() -> None:
        await start_then_stop(raft, data, tmp_path, rid)
        lease = raft.machine.read(lambda s: s.leases[rid])
        expire = c.Expire(
            at_ms=T0, run_id=rid, fence=lease.fence, reason="lease expired", renewals=lease.renewals
        )
        res = raft.machine.apply(c.encode(expire))
        assert isinstance(res, Ok)
        (run_dir,) = rundir.RunDirs(data).entries()
        proposed = len(raft.proposed)
        again = executor(raft, data)
        with caplog.at_level(logging.INFO, logger="raftcron.executor.runner"):
            again.caught_up()
            await until("the stale run dir to go", lambda: not run_dir.exists())
            await asyncio.gather(*list(again._tasks))
        await again.stop()
        assert raft.proposed[proposed:] == []

    asyncio.run(go())
    assert status(raft, rid) == "lost"
    assert raft.machine.read(lambda s: s.counters.stale_rejections) == 0
    dropped = [r for r in caplog.records if "dropped, not recorded" in r.getMessage()]
    assert len(dropped) == 1 and dropped[0].levelno == logging.INFO
    assert f"run={rid}" in dropped[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


class SwallowsCompletions(FakeRaft):
    """Completions are never answered (the agent stops while one is in flight)."""

    def __init__(self) -> None:
        super().__init__()
        self.swallowed: list[c.Complete] = []

    async def propose(self, cmd: Any, timeout: float) -> Result:  # noqa: ASYNC109 (API)
        if isinstance(cmd, c.Complete) and len(self.swallowed) < 1:
            self.swallowed.append(cmd)
            await asyncio.sleep(3600)
        return await super().propose(cmd, timeout)


@pytest.mark.parametrize("committed", [False, True], ids=["lost-in-flight", "committed-late"])
def test_a_completion_in_flight_at_stop_is_proposed_again_identically(
    tmp_path: Path, committed: bool
) -> None:
    """The agent stops while its completion is in flight. The next executor proposes the
    very same command (same status, fence and finish time), so whichever commits first,
    the other is an idempotent retry: recorded once, never refused as stale."""
    raft = SwallowsCompletions()
    data = tmp_path / "data"
    rid = grant(raft, job(tmp_path, 0.2))

    async def go() -> None:
        ex = executor(raft, data)
        ex.caught_up()
        await until("the completion to be in flight", lambda: raft.swallowed)
        await ex.stop()
        first = raft.swallowed[0]
        if committed:  # it committed after all, before the agent came back
            assert isinstance(raft.machine.apply(c.encode(first)), Ok)
        again = executor(raft, data)
        again.caught_up()
        await until("the run to be recorded", lambda: status(raft, rid) == "succeeded")
        await asyncio.gather(*list(again._tasks))
        await again.stop()
        if not committed:  # and the old proposal commits late: the same command again
            assert isinstance(raft.machine.apply(c.encode(first)), Ok)
        for cmd in completes(raft, rid)[1:]:
            assert cmd == first

    asyncio.run(go())
    assert status(raft, rid) == "succeeded"
    assert raft.machine.read(lambda s: s.counters.stale_rejections) == 0
    assert len(executions(tmp_path)) == 1
    assert rundir.RunDirs(data).entries() == []


def test_replayed_grants_start_nothing_until_caught_up(tmp_path: Path) -> None:
    """Grants seen before the node caught up (a replay of the log at start-up) are
    ignored; once caught up, resume() starts the ones the state still gives this node and
    nothing for the ones that ended meanwhile."""
    raft = FakeRaft()
    data = tmp_path / "data"
    spec = job(tmp_path, 0.0)
    old = grant(raft, spec, 0)
    fence = raft.machine.read(lambda s: s.runs[old].fence)
    raft.machine.apply(c.encode(c.Expire(at_ms=T0, run_id=old, fence=fence, reason="x")))
    live = grant(raft, spec, 1)

    async def go() -> None:
        ex = executor(raft, data)
        for rid in (old, live):  # the replay hands both grants over again
            ex.on_granted(rid, raft.machine.read(lambda s, r=rid: s.runs[r].fence), "a")  # type: ignore[misc]
        await asyncio.sleep(0.2)
        assert raft.proposed == [] and ex.active_count() == 0
        ex.caught_up()
        await until("the live grant to run", lambda: status(raft, live) == "succeeded")
        await asyncio.gather(*list(ex._tasks))
        await ex.stop()

    asyncio.run(go())
    assert [cmd.run_id for cmd in raft.proposed if isinstance(cmd, c.Start)] == [live]
    assert raft.machine.read(lambda s: s.counters.stale_rejections) == 0


def test_an_http_or_lost_watchdog_run_is_recorded_lost_at_once(tmp_path: Path) -> None:
    """A run the state says is running here, with no watchdog to re-attach to (the agent
    stopped before it spawned one; HTTP and embedded runs end with their agent): the
    restarted executor records it `lost` at once, naming why."""
    raft = FakeRaft()
    data = tmp_path / "data"
    rid = grant(raft, job(tmp_path, 0.0))
    fence = raft.machine.read(lambda s: s.runs[rid].fence)
    start = c.Start(at_ms=T0, run_id=rid, fence=fence, node="a", token="old-life")
    assert isinstance(raft.machine.apply(c.encode(start)), Ok)

    async def go() -> None:
        ex = executor(raft, data)
        ex.caught_up()
        await until("the run to be recorded", lambda: status(raft, rid) != "running")
        await asyncio.gather(*list(ex._tasks))
        await ex.stop()

    asyncio.run(go())
    run = raft.machine.read(lambda s: s.runs[rid])
    assert run.status == "lost"
    assert "before the job's watchdog started" in run.reason
    assert executions(tmp_path) == []


def test_the_fork_server_goes_with_the_executor_its_watchdog_stays(tmp_path: Path) -> None:
    """The fork server stops with the executor; the watchdog it forked does not, and the
    next executor (with a fork server of its own) re-attaches to it. (An agent killed
    outright: test_spawner.py, test_a_dead_agent_leaves_its_watchdogs_enforcing_the_deadline.)"""
    raft = FakeRaft()
    data = tmp_path / "data"
    rid = grant(raft, job(tmp_path, 1.0))

    async def go() -> int:
        ex = executor(raft, data)
        ex.caught_up()
        await until("the job to start", lambda: executions(tmp_path))
        assert ex.spawner is not None and ex.spawner.pid is not None
        spawner = ex.spawner.pid
        await ex.stop()
        return spawner

    spawner = asyncio.run(go())
    assert not Path(f"/proc/{spawner}").exists() or _zombie(spawner)
    (run_dir,) = rundir.RunDirs(data).entries()

    async def again() -> None:
        ex = executor(raft, data)
        ex.caught_up()
        await until("the run to be recorded", lambda: status(raft, rid) != "running")
        await asyncio.gather(*list(ex._tasks))
        await ex.stop()

    asyncio.run(again())
    assert status(raft, rid) == "succeeded"
    assert not run_dir.exists()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_run_dir_goes_even_when_a_file_in_it_vanishes_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watchdog unlinks its socket as it exits, perhaps while the directory is being
    removed: the rest of it, and the directory, still go (a unit run once left it)."""
    dirs = rundir.RunDirs(tmp_path)
    path = dirs.root / "7-j@1"
    path.mkdir()
    for name in ("wd.sock", "output", "result.json"):
        (path / name).write_text("x")
    real_unlink = os.unlink

    def racing_unlink(p: Any, *a: Any, **kw: Any) -> None:
        real_unlink(p, *a, **kw)
        if str(p).endswith("wd.sock"):
            raise FileNotFoundError(p)  # as if the watchdog had unlinked it first

    monkeypatch.setattr(os, "unlink", racing_unlink)
    dirs.remove(path)
    assert not path.exists()
    other = dirs.root / "8-j@2"
    other.mkdir()
    (other / "wd.sock").write_text("x")
    dirs.discard(other)
    dirs.settle()
    assert not other.exists()
