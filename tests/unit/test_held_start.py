"""The held watchdog (docs/design.md, "The run lifecycle"): a process run's watchdog comes
up while its fenced Start commits and starts the job only on the go, which the executor
sends only once the Start has committed. A Start that is refused or never commits, a stop
request, or an agent that stops while the watchdog holds the job: the job never starts.

One in-process state machine stands for the cluster (tests/unit/test_reattach.py); its
Start can be held back, refused or dropped here.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from raftcron.core import commands as c
from raftcron.core.results import Reject, Rejected, Result
from raftcron.executor import rundir
from raftcron.executor import runner as runner_mod
from raftcron.executor import watchdog as wd
from raftcron.raft.node import ProposalError
from tests.helpers import FakeRaft
from tests.unit.test_executor import T0
from tests.unit.test_reattach import completes, executions, executor, grant, job, status, until


class HeldStart(FakeRaft):
    """Every Start waits for ``release`` before it commits (``refuse``: is refused as a
    stale fence; ``drop``: never commits, each proposal times out)."""

    def __init__(self, *, refuse: bool = False, drop: bool = False) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.refuse = refuse
        self.drop = drop
        self.starts = 0

    async def propose(self, cmd: Any, timeout: float) -> Result:  # noqa: ASYNC109 (API)
        if isinstance(cmd, c.Start):
            self.starts += 1
            if self.drop:
                await asyncio.sleep(min(timeout, 0.2))
                raise ProposalError("timeout", "start not committed")
            await self.release.wait()
            if self.refuse:
                self.proposed.append(cmd)
                return Rejected(Reject.STALE_FENCE, "fence 1 is not the lease's")
        return await super().propose(cmd, timeout)


def held_socket(data: Path) -> Path | None:
    """The socket of the (one) run directory's watchdog, once it listens."""
    for path in rundir.RunDirs(data).entries():
        if (path / wd.SOCKET_NAME).exists():
            return path / wd.SOCKET_NAME
    return None


def record_go(monkeypatch: pytest.MonkeyPatch, raft: FakeRaft, rid: str) -> list[str]:
    """The run's ledger status at every go the executor sends."""
    seen: list[str] = []
    real = runner_mod._Watchdog.go

    async def go(self: runner_mod._Watchdog, deadline: float) -> None:
        seen.append(status(raft, rid))
        await real(self, deadline)

    monkeypatch.setattr(runner_mod._Watchdog, "go", go)
    return seen


def test_the_watchdog_is_up_while_the_start_commits_and_the_go_follows_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the Start is held back the watchdog is up and listening and the job has not
    run; the go goes out only once the ledger says running; the run succeeds once."""
    raft = HeldStart()
    data = tmp_path / "data"
    rid = grant(raft, job(tmp_path, 0.0))
    gos = record_go(monkeypatch, raft, rid)

    async def go() -> None:
        ex = executor(raft, data)
        ex.caught_up()
        await until("the held watchdog to listen", lambda: held_socket(data) is not None)
        await asyncio.sleep(0.5)
        assert executions(tmp_path) == [] and gos == []
        assert status(raft, rid) == "claimed" and raft.starts == 1
        raft.release.set()
        await until("the run to be recorded", lambda: status(raft, rid) == "succeeded")
        await asyncio.gather(*list(ex._tasks))
        await ex.stop()

    asyncio.run(go())
    assert gos == ["running"]
    assert len(executions(tmp_path)) == 1 and len(completes(raft, rid)) == 1
    assert rundir.RunDirs(data).entries() == []


@pytest.mark.parametrize("how", ["refused", "never_commits"])
def test_a_start_that_does_not_commit_never_starts_the_held_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """The Start is refused (stale fence) or never commits within the lease: no go, the
    held watchdog is dismissed and exits without starting the job, its run directory
    goes, and nothing is recorded for the run by this node (as before the hold)."""
    raft = HeldStart(refuse=how == "refused", drop=how == "never_commits")
    data = tmp_path / "data"
    rid = grant(raft, job(tmp_path, 0.0, lease_ms=2000))
    gos = record_go(monkeypatch, raft, rid)

    async def go() -> None:
        ex = executor(raft, data)
        ex.caught_up()
        await until("the held watchdog to listen", lambda: held_socket(data) is not None)
        raft.release.set()
        await asyncio.wait_for(asyncio.gather(*list(ex._tasks)), 30)
        await ex.stop()
        await asyncio.sleep(0.3)  # a job started by mistake would have written by now

    asyncio.run(go())
    assert gos == [] and executions(tmp_path) == []
    assert completes(raft, rid) == [] and status(raft, rid) == "claimed"
    assert rundir.RunDirs(data).entries() == []


def test_a_stop_request_while_held_never_starts_the_job(tmp_path: Path) -> None:
    """A kill that commits while the Start is in flight: the Start commits, the held
    watchdog is dismissed, and the run is recorded killed without ever running."""
    raft = HeldStart()
    data = tmp_path / "data"
    rid = grant(raft, job(tmp_path, 0.0))

    async def go() -> None:
        ex = executor(raft, data)
        ex.caught_up()
        await until("the held watchdog to listen", lambda: held_socket(data) is not None)
        kill = c.Kill(at_ms=T0, run_id=rid, reason="killed on request")
        raft.machine.apply(c.encode(kill))
        ex.on_kill(rid)
        raft.release.set()
        await until("the run to be recorded", lambda: status(raft, rid) == "killed")
        await asyncio.gather(*list(ex._tasks))
        await ex.stop()

    asyncio.run(go())
    assert executions(tmp_path) == []
    assert rundir.RunDirs(data).entries() == []


@pytest.mark.parametrize("committed", [True, False], ids=["start-committed", "start-lost"])
def test_an_agent_restart_while_held_never_starts_the_held_job(
    tmp_path: Path, committed: bool
) -> None:
    """The agent stops while its watchdog holds the job (the Start in flight). EOF on its
    stdin: it exits without starting the job. If the Start committed after all, the next
    executor finds the run running, re-attaches to nothing and records it ``lost``
    (never started), as a run whose watchdog never came up; if it did not, the run is
    still granted and the next executor starts it afresh, once."""
    raft = HeldStart()
    data = tmp_path / "data"
    rid = grant(raft, job(tmp_path, 0.0))

    async def go() -> None:
        ex = executor(raft, data)
        ex.caught_up()
        await until("the held watchdog to listen", lambda: held_socket(data) is not None)
        (run_dir,) = rundir.RunDirs(data).entries()
        fence = raft.machine.read(lambda s: s.runs[rid].fence)
        start = c.Start(at_ms=T0, run_id=rid, fence=fence, node="a", token="in-flight")
        await ex.stop()
        await until("the held watchdog to exit", lambda: not (run_dir / wd.SOCKET_NAME).exists())
        await asyncio.sleep(0.3)
        assert executions(tmp_path) == []
        result = rundir.read_result(run_dir)
        assert result is not None and result["outcome"] == "not_started"
        if committed:  # the Start in flight commits after all
            raft.machine.apply(c.encode(start))
            assert status(raft, rid) == "running"
        raft.release.set()
        again = executor(raft, data)
        again.caught_up()
        want = "lost" if committed else "succeeded"
        await until("the run to be recorded", lambda: status(raft, rid) == want)
        await asyncio.gather(*list(again._tasks))
        await again.stop()

    asyncio.run(go())
    run = raft.machine.read(lambda s: s.runs[rid])
    if committed:
        assert executions(tmp_path) == []
        assert "never started" in run.reason
    else:
        assert executions(tmp_path) == [f"{rid} {run.fence}"]
    assert len(completes(raft, rid)) == 1
    assert rundir.RunDirs(data).entries() == []


# The last watchdog of protocol 1 (release 0.3.0, main at 76536f0), read from the
# repository's history as the rolling-upgrade test reads its old release: a rolling
# upgrade's new agent re-attaches to such watchdogs.
WATCHDOG_V1_COMMIT = "76536f0"


def watchdog_v1(tmp_path: Path) -> Path:
    root = Path(__file__).resolve().parents[2]
    old = subprocess.run(
        ["git", "-C", str(root), "show", f"{WATCHDOG_V1_COMMIT}:raftcron/executor/watchdog.py"],
        capture_output=True,
        check=True,
    ).stdout
    path = tmp_path / "watchdog_v1.py"
    path.write_bytes(old)
    return path


def test_a_new_agent_reattaches_to_a_watchdog_of_version_1(tmp_path: Path) -> None:
    """An agent before the hold started the run (its watchdog speaks only version 1 and
    started the job at once), then was upgraded: the new executor re-attaches (protocol
    1) and records the outcome once."""
    raft = FakeRaft()
    data = tmp_path / "data"
    spec = job(tmp_path, 1.0)
    rid = grant(raft, spec)
    fence = raft.machine.read(lambda s: s.runs[rid].fence)
    raft.machine.apply(
        c.encode(c.Start(at_ms=T0, run_id=rid, fence=fence, node="a", token="old-agent"))
    )
    run = raft.machine.read(lambda s: s.runs[rid])
    run_dir = rundir.RunDirs(data).create(run)
    old = subprocess.Popen(
        [sys.executable, "-I", "-S", str(watchdog_v1(tmp_path))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    v1_spec = {
        "version": 1,
        "run_dir": str(run_dir),
        "run": rid,
        "fence": fence,
        "job": "j",
        "node": "a",
        "argv": list(spec.command),
        "env": {"PATH": os.environ["PATH"], "RAFTCRON_RUN_ID": rid, "RAFTCRON_FENCE": str(fence)},
        "cwd": None,
        "deadline": time.monotonic() + 10,
        "timeout": None,
        "grace": 1.0,
        "lease_grace": 0.5,
    }
    out, _ = old.communicate(json.dumps(v1_spec).encode() + b"\n", timeout=30)
    assert json.loads(out)["version"] == 1

    async def go() -> None:
        again = executor(raft, data)
        again.caught_up()
        await until("the run to be recorded", lambda: status(raft, rid) != "running")
        await asyncio.gather(*list(again._tasks))
        await again.stop()

    asyncio.run(go())
    assert old.wait(30) == 0
    assert status(raft, rid) == "succeeded"
    assert executions(tmp_path) == [f"{rid} {fence}"]
    assert len(completes(raft, rid)) == 1
    assert rundir.RunDirs(data).entries() == []
